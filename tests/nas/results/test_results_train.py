"""``nas train``: full-length training with a checkpoint after every epoch, a real
SIGKILL of the training process after its first checkpoint, and a resume that ends where
an uninterrupted run ends (same epochs, same history, same weights)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from nas.errors import UserError
from nas.results.fulltrain import CHECKPOINT, full_train

EPOCHS = 5
STUDY = {
    "version": 1, "name": "train-test",
    "data": {"dataset": "synthetic", "synthetic": {
        "channels": 1, "size": [8, 8], "classes": 4, "train": 384, "val": 64, "signal": 2.0}},
    "training": {"epochs": 2, "batch_size": 32, "optimizer": "sgd", "lr": 0.05,
                 "momentum": 0.9, "max_steps_per_epoch": 2},
    "objectives": [{"metric": "accuracy", "direction": "maximize"}],
    "fidelity": {"scheduler": "none"},
    "space": {"input": {"channels": 1, "size": [8, 8]}, "classes": 4,
              "stem": {"kind": "conv", "channels": 8},
              "stages": [{"channels": 16, "depth": 1, "stride": 2, "blocks": ["basic"]}]},
}
# Written for 3x32x32 / 10 classes: `nas train` adapts input and classes to the study.
SPEC = {"version": 1, "name": "train-test-net", "input": {"channels": 3, "size": [32, 32]},
        "classes": 10, "stem": {"kind": "conv", "channels": 16},
        "stages": [{"channels": 16, "stride": 1, "blocks": [{"type": "basic"}]},
                   {"channels": 32, "stride": 2, "blocks": [{"type": "basic"}]}],
        "head": {"dropout": 0.1}}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train")
    study, spec = root / "study.yaml", root / "spec.yaml"
    study.write_text(yaml.safe_dump(STUDY))
    spec.write_text(yaml.safe_dump(SPEC))
    return {"root": root, "study": study, "spec": spec}


def _cmd(files: dict[str, Path], out: Path) -> list[str]:
    return [sys.executable, "-m", "nas.cli", "train", str(files["spec"]), "--study",
            str(files["study"]), "--epochs", str(EPOCHS), "--out", str(out)]


def _env() -> dict[str, str]:
    # One thread in every run: CPU results are then bit-for-bit reproducible.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _checkpoint_epoch(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001 - not written yet
        return 0


def test_killed_training_resumes_from_its_checkpoint(files):
    killed_dir, clean_dir = files["root"] / "killed", files["root"] / "clean"
    proc = subprocess.Popen(_cmd(files, killed_dir), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    ckpt = killed_dir / CHECKPOINT
    while proc.poll() is None and _checkpoint_epoch(ckpt) < 1:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed_dir / "metrics.json").exists()

    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    saved = int(state["epoch"])
    assert 1 <= saved < EPOCHS
    assert {"model", "optimizer", "scheduler", "rng", "history"} <= set(state)
    assert len(state["history"]) == saved
    assert state["scheduler"]["last_epoch"] == saved * (384 // 32)  # whole epochs of steps

    resumed = subprocess.run(_cmd(files, killed_dir), env=_env(), capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"after epoch {saved}" in resumed.stderr
    metrics = json.loads((killed_dir / "metrics.json").read_text())
    assert json.loads(resumed.stdout)["epochs_done"] == EPOCHS
    assert metrics["epochs_done"] == EPOCHS
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, EPOCHS + 1))
    assert metrics["resumed_from"] == [saved]

    clean = subprocess.run(_cmd(files, clean_dir), env=_env(), capture_output=True,
                           text=True)
    assert clean.returncode == 0, clean.stderr
    reference = json.loads((clean_dir / "metrics.json").read_text())
    assert reference["resumed_from"] == []
    # Restored model, optimizer, schedule and RNG states: the same run as without a kill.
    for a, b in zip(metrics["history"], reference["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["accuracy"] == b["accuracy"]
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9)
    w1 = torch.load(killed_dir / "model.pt", weights_only=True)
    w2 = torch.load(clean_dir / "model.pt", weights_only=True)
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def one_epoch(files) -> tuple[Path, dict]:
    out = files["root"] / "one-epoch"
    with open(os.devnull, "w") as devnull:
        metrics = full_train(files["spec"], files["study"], out_dir=out, epochs=1,
                             stream=devnull)
    return out, metrics


def test_training_uses_whole_epochs_and_adapts_the_spec(one_epoch):
    out, m = one_epoch
    # The study's max_steps_per_epoch (2) is a proxy shortcut: full training ignores it.
    assert m["history"][0]["steps"] == 384 // 32 > 2
    spec = yaml.safe_load((out / "spec.yaml").read_text())
    assert spec["input"] == {"channels": 1, "size": [8, 8]} and spec["classes"] == 4
    weights = torch.load(out / "model.pt", weights_only=True)
    assert weights["head.fc.weight"].shape == (4, 32)
    assert sum(v.numel() for k, v in weights.items()
               if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
               ) == m["params"]


def test_a_foreign_checkpoint_is_refused(files, one_epoch):
    out, _ = one_epoch
    with pytest.raises(UserError, match="belongs to another training run.*seed"):
        full_train(files["spec"], files["study"], out_dir=out, epochs=1, seed=1,
                   stream=sys.stderr)
    with pytest.raises(UserError, match="belongs to another training run.*epochs"):
        full_train(files["spec"], files["study"], out_dir=out, epochs=2, stream=sys.stderr)


def test_progress_says_what_trains_and_reports_within_an_epoch(files):
    out = files["root"] / "progress"
    cmd = [sys.executable, "-m", "nas.cli", "train", str(files["spec"]), "--study",
           str(files["study"]), "--epochs", "2", "--log-interval", "5", "--out", str(out)]
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    # Before the first step: the network, its data and the length of the training.
    assert lines[0].startswith("training train-test-net (")
    assert "on train-test (384 training / 64 validation images): 2 epochs of 12 steps" \
        in lines[0]
    # Within each epoch of 12 steps: steps 5 and 10, not the last (the epoch line has it).
    steps = [ln.split("  ")[:2] for ln in lines if "  step " in ln]
    assert steps == [["epoch 1/2", "step 5/12"], ["epoch 1/2", "step 10/12"],
                     ["epoch 2/2", "step 5/12"], ["epoch 2/2", "step 10/12"]]
    assert sum(ln.startswith("epoch ") and "accuracy" in ln for ln in lines) == 2

    quiet = subprocess.run([*cmd[:-2], "--log-interval", "-1", "--out", str(out)],
                           env=_env(), capture_output=True, text=True)
    assert quiet.returncode == 2
    assert quiet.stderr.strip().splitlines()[-1] == (
        "nas train: error: argument --log-interval: -1 is negative")
