"""nas.evaluate.train: schedule, determinism, learning, divergence, early stop, precision."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from nas.evaluate.data import DataBundle, load_data
from nas.evaluate.train import (
    Diverged,
    evaluate,
    lr_factor,
    seed_everything,
    steps_per_epoch,
    train,
)
from nas.study import DataConfig, SyntheticConfig, TrainingConfig

SYN = DataConfig(dataset="synthetic", synthetic=SyntheticConfig(
    channels=1, size=(6, 6), classes=4, train=128, val=64, signal=1.5))
CFG = TrainingConfig(epochs=3, batch_size=32, lr=0.05)


@pytest.fixture(scope="module")
def data() -> DataBundle:
    return load_data(SYN)


def small_net(seed: int = 0, classes: int = 4) -> nn.Module:
    seed_everything(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Dropout(0.1), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(32, classes))


# --------------------------------------------------------------------------- schedule
def test_cosine_schedule_runs_from_one_to_zero():
    f = [lr_factor(CFG, s, 10, 4) for s in range(40)]
    assert f[0] == 1.0 and f[20] == pytest.approx(0.5)
    assert f[39] == pytest.approx(0.5 * (1 + math.cos(math.pi * 39 / 40)))
    assert all(a >= b for a, b in zip(f, f[1:], strict=False))


def test_warmup_is_linear_then_schedule_starts_at_one():
    cfg = dataclasses.replace(CFG, warmup_epochs=1, schedule="cosine")
    f = [lr_factor(cfg, s, 10, 4) for s in range(12)]
    assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert f[10] == 1.0 and f[11] < 1.0


def test_step_and_constant_schedules():
    step = dataclasses.replace(CFG, schedule="step", milestones=(0.5, 0.75), gamma=0.1)
    assert [lr_factor(step, s, 10, 4) for s in (0, 19, 20, 29, 30, 39)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    const = dataclasses.replace(CFG, schedule="constant")
    assert {lr_factor(const, s, 10, 4) for s in range(40)} == {1.0}


def test_steps_per_epoch_drops_the_last_partial_batch_and_honours_the_cap():
    assert steps_per_epoch(100, CFG) == 3
    assert steps_per_epoch(10, CFG) == 1  # fewer examples than a batch: one batch
    assert steps_per_epoch(100, dataclasses.replace(CFG, max_steps_per_epoch=2)) == 2


# --------------------------------------------------------------------------- training
def test_training_is_deterministic_with_a_seed(data):
    a, b, c = (small_net(0), small_net(0), small_net(0))
    ra = train(a, data, CFG, device="cpu", seed=5)
    rb = train(b, data, CFG, device="cpu", seed=5)
    rc = train(c, data, CFG, device="cpu", seed=6)
    strip = [{k: v for k, v in h.items() if not k.endswith("epoch_s")} for h in ra.history]
    assert strip == [{k: v for k, v in h.items() if not k.endswith("epoch_s")} for h in rb.history]
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert [h["train_loss"] for h in rc.history] != [h["train_loss"] for h in ra.history]


def test_training_learns_the_synthetic_signal(data):
    cfg = dataclasses.replace(CFG, epochs=6)
    r = train(small_net(), data, cfg, device="cpu")
    assert r.epochs_done == 6 and not r.stopped
    assert r.history[-1]["accuracy"] > 0.6  # chance is 0.25
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert [h["epoch"] for h in r.history] == [1, 2, 3, 4, 5, 6]
    assert r.history[-1]["steps"] == 4 and r.history[-1]["lr"] == pytest.approx(0.0)


def test_adamw_step_schedule_and_label_smoothing_train(data):
    cfg = dataclasses.replace(CFG, optimizer="adamw", lr=0.03, schedule="step",
                              label_smoothing=0.1, warmup_epochs=1, weight_decay=0.01)
    r = train(small_net(), data, cfg, device="cpu")
    assert r.history[-1]["accuracy"] > 0.6
    # label smoothing puts a floor under the loss: uniform mass 0.1 over 4 classes
    assert r.history[-1]["train_loss"] > 0.1


def test_huge_lr_diverges(data):
    cfg = dataclasses.replace(CFG, lr=1e30, momentum=0.0, weight_decay=0.0)
    with pytest.raises(Diverged) as err:
        train(small_net(), data, cfg, device="cpu")
    assert err.value.epoch == 1 and not math.isfinite(err.value.loss)


def test_on_epoch_sees_metrics_and_can_stop(data):
    seen = []

    def on_epoch(epoch, metrics):
        seen.append((epoch, sorted(metrics)))
        return epoch == 2

    r = train(small_net(), data, dataclasses.replace(CFG, epochs=5), device="cpu",
              on_epoch=on_epoch)
    assert r.epochs_done == 2 and r.stopped
    assert [e for e, _ in seen] == [1, 2]
    assert {"accuracy", "train_loss", "epoch", "val_loss"} <= set(seen[0][1])


def test_stop_on_the_last_epoch_is_not_early(data):
    r = train(small_net(), data, dataclasses.replace(CFG, epochs=2), device="cpu",
              on_epoch=lambda e, m: True if e == 2 else None)
    assert r.epochs_done == 2 and not r.stopped


def test_max_steps_per_epoch(data):
    r = train(small_net(), data, dataclasses.replace(CFG, max_steps_per_epoch=1, epochs=2),
              device="cpu")
    assert [h["steps"] for h in r.history] == [1, 1]


def test_bf16_and_channels_last_on_cpu_when_asked(data):
    cfg = dataclasses.replace(CFG, precision="bf16", channels_last=True, epochs=1)
    r = train(small_net(), data, cfg, device="cpu")
    assert (r.precision, r.channels_last) == ("bf16", True)
    assert math.isfinite(r.history[0]["train_loss"])
    auto = train(small_net(), data, dataclasses.replace(CFG, epochs=1), device="cpu")
    assert (auto.precision, auto.channels_last) == ("fp32", False)


class ConstantClass(nn.Module):
    """Always predicts class ``c``."""

    def __init__(self, c: int, classes: int = 4):
        super().__init__()
        self.c, self.classes = c, classes

    def forward(self, x):
        out = torch.zeros(len(x), self.classes)
        out[:, self.c] = 10.0
        return out


def test_evaluate_counts_correct_predictions(data):
    labels = data.val.y
    for c in range(4):
        acc, loss = evaluate(ConstantClass(c), data.val, device=torch.device("cpu"),
                             batch_size=7)
        assert acc == pytest.approx(float((labels == c).float().mean()))
        assert loss > 0
