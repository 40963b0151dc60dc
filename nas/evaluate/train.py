"""Proxy training: a few epochs of SGD/AdamW with a warmup + cosine/step/constant schedule,
reporting validation accuracy and training loss after every epoch.

``train(model, data, cfg, ...)`` is deterministic for a given seed on the CPU (model
initialisation is the caller's: seed with :func:`seed_everything` before building). On
CUDA it trains under bf16 autocast with channels_last memory when the study says
``auto``, and under ``torch.compile`` when the study says ``compile: true``. A NaN or
infinite loss raises :class:`Diverged` so the trial stops at once
instead of training garbage for the rest of its epochs. ``on_epoch(epoch, metrics)``
is called after each epoch; returning True stops training (what ASHA asks).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from ..errors import UserError
from ..study import TrainingConfig
from .data import DataBundle, batches

#: on CUDA the loss is checked for NaN every this many steps (a check syncs the device).
CUDA_CHECK_EVERY = 25

OnEpoch = Callable[[int, dict[str, Any]], Any]
#: ``on_step(epoch, step, steps_per_epoch)`` after every optimizer step (no device sync).
OnStep = Callable[[int, int, int], Any]


class Checkpointer(Protocol):
    """Optional hook of :func:`train` for long runs that must survive a kill
    (``nas train``, :mod:`nas.results.fulltrain`). ``parts`` holds the live training
    state: model, optimizer, scheduler, generator (data order and augmentation) and
    history (the per-epoch metrics list)."""

    def restore(self, parts: dict[str, Any]) -> int:
        """Load a saved state into ``parts``; return the last epoch done (0 = none)."""

    def save(self, epoch: int, parts: dict[str, Any]) -> None:
        """Persist ``parts`` after ``epoch``."""


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int, loss: float):
        self.epoch, self.step, self.loss = epoch, step, loss
        super().__init__(f"training loss is {loss} at epoch {epoch}, step {step}")


@dataclass
class TrainResult:
    epochs_done: int
    stopped: bool  # on_epoch asked to stop before the last epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    precision: str = "fp32"
    channels_last: bool = False
    train_s: float = 0.0

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


# --------------------------------------------------------------------------- setup
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" = the first CUDA device when there is one, else the CPU. A device this
    machine does not have is the user's mistake (UserError), not a driver traceback."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"--device: {str(device)!r} is not a device; allowed: auto, cpu, "
                        "cuda, cuda:N") from None
    if dev.type == "cuda":
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if have == 0:
            raise UserError(f"--device {device}: this machine has no CUDA device (PyTorch "
                            f"sees none); use --device cpu or auto")
        if dev.index is not None and dev.index >= have:
            raise UserError(f"--device {device}: this machine has {have} CUDA device(s) "
                            f"(cuda:0..cuda:{have - 1})")
    elif dev.type != "cpu":
        raise UserError(f"--device: {str(device)!r} is not supported; allowed: auto, cpu, "
                        "cuda, cuda:N")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" = bf16 autocast on CUDA, fp32 elsewhere."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def resolve_channels_last(value: bool | str, device: torch.device) -> bool:
    return device.type == "cuda" if value == "auto" else bool(value)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for torch
        pass
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, cfg: TrainingConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.momentum, 0.999),
                                 weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def lr_factor(cfg: TrainingConfig, step: int, steps_per_epoch: int, epochs: int) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based): linear warmup
    over ``warmup_epochs``, then cosine to zero / step decay / constant."""
    total = max(1, steps_per_epoch * epochs)
    warm = round(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    if cfg.schedule == "constant":
        return 1.0
    progress = (step - warm) / max(1, total - warm)
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if cfg.schedule == "step":
        return cfg.gamma ** sum(progress >= m for m in cfg.milestones)
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def steps_per_epoch(n_train: int, cfg: TrainingConfig) -> int:
    steps = n_train // cfg.batch_size if n_train >= cfg.batch_size else 1
    return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps


# --------------------------------------------------------------------------- loops
def evaluate(model: nn.Module, data: Any, *, device: torch.device, batch_size: int,
             precision: str = "fp32", channels_last: bool = False,
             workers: int = 0) -> tuple[float, float]:
    """(top-1 accuracy in [0, 1], mean cross-entropy) over a whole split."""
    model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    with torch.no_grad(), _autocast(device, precision):
        for xb, yb in batches(data, batch_size, device=device, workers=workers):
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            logits = model(xb).float()
            loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
            n += len(yb)
    return correct / max(1, n), loss_sum / max(1, n)


def train(model: nn.Module, data: DataBundle, cfg: TrainingConfig, *,
          device: str | torch.device = "auto", seed: int = 0, epochs: int | None = None,
          on_epoch: OnEpoch | None = None, on_step: OnStep | None = None,
          workers: int = 0, checkpoint: Checkpointer | None = None) -> TrainResult:
    """Train ``model`` on ``data.train`` for ``epochs`` (default cfg.epochs), evaluating
    on ``data.val`` after each epoch. Raises Diverged on a non-finite loss.
    ``checkpoint``: resume from its saved state, and save after every epoch."""
    device = resolve_device(device)
    precision = resolve_precision(cfg.precision, device)
    channels_last = resolve_channels_last(cfg.channels_last, device)
    epochs = cfg.epochs if epochs is None else epochs
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    # The compiled wrapper shares the parameters; checkpoints keep the plain module.
    step_model = torch.compile(model) if cfg.compile else model
    optimizer = make_optimizer(model, cfg)
    per_epoch = steps_per_epoch(len(data.train), cfg)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(cfg, s, per_epoch, epochs))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    order = torch.Generator().manual_seed(seed)  # data order and augmentation
    torch.manual_seed(seed + 1)  # dropout and other in-training randomness
    check_every = CUDA_CHECK_EVERY if device.type == "cuda" else 1

    result = TrainResult(0, False, precision=precision, channels_last=channels_last)
    start = time.perf_counter()
    parts = {"model": model, "optimizer": optimizer, "scheduler": schedule,
             "generator": order, "history": result.history}
    first = 1 + (checkpoint.restore(parts) if checkpoint is not None else 0)
    result.epochs_done = first - 1
    for epoch in range(first, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        steps = 0
        for xb, yb in batches(data.train, cfg.batch_size, shuffle=True, generator=order,
                              device=device, drop_last=True, workers=workers):
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with _autocast(device, precision):
                loss = criterion(step_model(xb).float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach()
            steps += 1
            if steps % check_every == 0:
                _check_finite(loss_sum, epoch, steps)
            if on_step is not None:
                on_step(epoch, steps, per_epoch)
            if cfg.max_steps_per_epoch and steps >= cfg.max_steps_per_epoch:
                break
        _check_finite(loss_sum, epoch, steps)
        train_epoch_s = time.perf_counter() - t0  # _check_finite synchronised the device
        accuracy, val_loss = evaluate(model, data.val, device=device,
                                      batch_size=cfg.eval_batch_size, precision=precision,
                                      channels_last=channels_last, workers=workers)
        metrics = {"epoch": epoch, "accuracy": accuracy, "val_loss": val_loss,
                   "train_loss": float(loss_sum) / max(1, steps),
                   "lr": optimizer.param_groups[0]["lr"], "steps": steps,
                   "train_epoch_s": train_epoch_s, "epoch_s": time.perf_counter() - t0}
        result.history.append(metrics)
        result.epochs_done = epoch
        stop = on_epoch is not None and on_epoch(epoch, dict(metrics)) is True
        if checkpoint is not None:
            checkpoint.save(epoch, parts)
        if stop:
            result.stopped = epoch < epochs
            break
    result.train_s = time.perf_counter() - start
    return result


def _check_finite(loss_sum: torch.Tensor, epoch: int, step: int) -> None:
    # The running sum is non-finite as soon as any step's loss was.
    value = float(loss_sum)
    if not math.isfinite(value):
        raise Diverged(epoch, step, value)


def _autocast(device: torch.device, precision: str):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=precision == "bf16")
