"""A trial an executor is running, as the search core follows it: one Optuna trial,
possibly several attempts (Ray retries a dead worker once), its learning curve so far and
the wall time the ledger will charge."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna


@dataclass
class LiveTrial:
    trial: optuna.trial.Trial
    number: int
    hash: str
    spec: dict[str, Any]
    kind: str
    slot: str  # the executor's trial id
    admission: dict[str, Any]  # the budget policy's verdict that started it
    attempt: int = 1
    attempt_start: float | None = None  # the core's clock when the attempt started
    attempt_wall: float = 0.0  # trial_wall_s of the attempt's latest report
    epochs: int = 0
    curve: list[float] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)
    pre_training_s: float | None = None  # time before the first epoch (see absorb)
    stopped: bool = False  # ASHA stopped it

    def restart(self, now: float) -> None:
        """A new attempt started (the first, or a retry on a new worker)."""
        self.attempt_start = now
        self.attempt_wall, self.epochs, self.curve = 0.0, 0, []
        self.pre_training_s = None

    def absorb(self, result: dict[str, Any], primary: str) -> None:
        """Take in one report: its wall time, and a new epoch's values."""
        if "trial_wall_s" in result:
            self.attempt_wall = float(result["trial_wall_s"])
        if "epoch" not in result or result.get("final"):
            return
        epoch = int(result["epoch"])
        if epoch <= self.epochs:
            return
        self.epochs = epoch
        value = result.get(primary)
        if value is not None and math.isfinite(float(value)):
            self.curve.append(float(value))
        self.last = {k: result[k] for k in ("accuracy", "train_loss", "val_loss")
                     if k in result}
        if epoch == 1 and "epoch_s" in result and "trial_wall_s" in result:
            # what preceded training: the checks, the model build (and a cold worker's
            # data loading); a trial ASHA stops never tells its check_s
            self.pre_training_s = max(0.0, float(result["trial_wall_s"])
                                      - float(result["epoch_s"]))

    def wall(self, now: float) -> float:
        """The attempt's wall time: its own last report, or (if it never reported, e.g.
        its worker died first) the time since it started."""
        seen = now - self.attempt_start if self.attempt_start else 0.0
        return max(self.attempt_wall, seen if self.attempt_wall == 0.0 else 0.0)
