"""ASHA on the primary objective per epoch: the one rung rule every executor uses.

The rule is Ray's asynchronous successive halving (``ASHAScheduler``'s ``_Bracket``, one
bracket, ``stop_last_trials=False``), written once here so that the Ray adapter, the
in-process executor and the dry-run plan agree:

- rungs at epochs grace x rf^k below the study's epochs (:func:`rung_epochs`); a trial that
  reached its last epoch is never stopped, so it always gets its full-fidelity verdict;
- at the highest rung its epoch reached and it has not reported at yet, a trial is stopped
  when its value is below the (1 - 1/rf) percentile of the values recorded there before it,
  then its value is recorded (stopped or not);
- baselines (``kind: baseline``) are comparisons trained to full fidelity under the same
  protocol as the found trials: never stopped, and kept out of the rungs (a strong baseline
  must not raise the cutoff the found trials are stopped against).

Every decision that records a value is appended to ``rungs.jsonl`` in the run directory
(one line, ``{"epoch", "trial", "value", "stop", "cutoff"}``), and a resumed search seeds
its rungs from that log (the same cutoffs go on). ``rungs.json`` is the snapshot a user
reads, rewritten at most once every SAVE_EVERY_S seconds and when the session ends
(rewriting it at every decision cost O(trials) each: a sixth of the driver's time at
2,000 surrogate trials in benchmarks/driver_scale.py)::

    {"metric": "accuracy", "mode": "max", "grace_epochs": 1, "reduction_factor": 2,
     "max_epochs": 4,
     "rungs": [{"epoch": 1, "cutoff": 0.61, "trials": {"3": 0.58, "4": 0.66}}, ...],
     "stopped": [{"trial": 3, "epoch": 1, "value": 0.58, "cutoff": 0.61}]}

(trial = Optuna trial number). Ray-free.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np

from ..run.rundir import RunDir

#: the longest rungs.json lags the rung log while a search runs (seconds)
SAVE_EVERY_S = 1.0


def rung_epochs(epochs: int, grace: int, reduction_factor: float) -> list[float]:
    """The epochs at which ASHA may stop a trial: grace x rf^k below ``epochs``."""
    count = int(math.log(epochs / grace) / math.log(reduction_factor) + 1)
    return [grace * reduction_factor ** k for k in range(count)
            if grace * reduction_factor ** k < epochs]


class AshaRule:
    """The rungs of one search and the stop decision; saved to ``rungs.json`` if ``run``."""

    def __init__(self, *, metric: str, mode: str, epochs: int, grace: int,
                 reduction_factor: float, run: RunDir | None = None):
        self.metric, self.mode, self.epochs = metric, mode, int(epochs)
        self.rf = float(reduction_factor)
        self._sign = 1.0 if mode == "max" else -1.0
        self._run = run
        self.rungs: dict[float, dict[int, float]] = {
            m: {} for m in rung_epochs(epochs, grace, reduction_factor)}
        self.stopped: list[dict[str, Any]] = []
        self._header = {"metric": metric, "mode": mode, "grace_epochs": grace,
                        "reduction_factor": reduction_factor, "max_epochs": epochs}
        self._saved_at = -math.inf
        if run is not None:
            self._restore()
            self.save()

    @classmethod
    def for_study(cls, study: Any, run: RunDir | None = None) -> AshaRule | None:
        """The study's ASHA (None when its fidelity has no scheduler or one epoch)."""
        if study.fidelity.scheduler != "asha" or study.training.epochs <= 1:
            return None
        primary = study.primary
        return cls(metric=primary.metric,
                   mode="max" if primary.direction == "maximize" else "min",
                   epochs=study.training.epochs, grace=study.fidelity.grace_epochs,
                   reduction_factor=study.fidelity.reduction_factor, run=run)

    def cutoff(self, recorded: dict[int, float]) -> float | None:
        if not recorded:
            return None
        return float(np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100))

    def decide(self, config: dict[str, Any], report: dict[str, Any]) -> bool:
        """Stop the trial whose ``config`` (``number``, ``kind``) sent this per-epoch
        ``report``? Final reports, baselines, and epochs at or past the last never stop."""
        if report.get("final") or config.get("kind") == "baseline":
            return False
        epoch, value = int(report.get("epoch", 0)), report.get(self.metric)
        if epoch >= self.epochs or value is None or not math.isfinite(float(value)):
            return False
        number = int(config.get("number", -1))
        for milestone in sorted(self.rungs, reverse=True):
            recorded = self.rungs[milestone]
            if epoch >= milestone and number in recorded:
                return False  # already judged at this (or a higher) rung
            if epoch < milestone:
                continue
            cutoff = self.cutoff(recorded)
            stop = cutoff is not None and self._sign * float(value) < cutoff
            self._record({"epoch": float(milestone), "trial": number, "reported_epoch": epoch,
                          "value": float(value), "stop": stop,
                          "cutoff": None if cutoff is None else self._sign * cutoff})
            if self._run is not None and time.monotonic() - self._saved_at >= SAVE_EVERY_S:
                self.save()
            return stop
        return False

    def _record(self, decision: dict[str, Any], *, log: bool = True) -> None:
        """Apply one rung-log line (values in the metric's own units) and, unless it was
        read from the log, append it there."""
        self.rungs[float(decision["epoch"])][int(decision["trial"])] = (
            self._sign * float(decision["value"]))
        if decision["stop"]:
            self.stopped.append({"trial": int(decision["trial"]),
                                 "epoch": int(decision["reported_epoch"]),
                                 "value": float(decision["value"]),
                                 "cutoff": decision["cutoff"]})
        if log and self._run is not None:
            self._run.log_rung(decision)

    def to_dict(self) -> dict[str, Any]:
        rungs = []
        for milestone, recorded in sorted(self.rungs.items()):
            cutoff = self.cutoff(recorded)
            rungs.append({"epoch": float(milestone),
                          "cutoff": None if cutoff is None else self._sign * cutoff,
                          "trials": {str(n): self._sign * v for n, v in recorded.items()}})
        return {**self._header, "rungs": rungs, "stopped": list(self.stopped)}

    def _restore(self) -> None:
        """The rungs of earlier sessions: the rung log, or (a run from before the log) the
        snapshot, carried into the log as it is read."""
        log = self._run.read_rung_log()
        if log:
            for decision in log:
                if float(decision["epoch"]) in self.rungs:
                    self._record(decision, log=False)
            return
        try:
            old = json.loads((self._run / "rungs.json").read_text())
        except (OSError, ValueError):
            return
        if old.get("metric") != self.metric or old.get("mode") != self.mode:
            return
        stops = {}  # (rung, trial) -> the stop, at the highest rung its epoch reached
        for s in old.get("stopped", []):
            milestone = max(m for m in self.rungs if m <= s["epoch"])
            stops[(milestone, int(s["trial"]))] = {
                "epoch": milestone, "trial": int(s["trial"]), "reported_epoch": s["epoch"],
                "value": s["value"], "stop": True, "cutoff": s["cutoff"]}
        for rung in old.get("rungs", []):
            milestone = float(rung["epoch"])
            if milestone in self.rungs:
                for number, value in rung.get("trials", {}).items():
                    self._record(stops.get((milestone, int(number))) or {
                        "epoch": milestone, "trial": int(number),
                        "reported_epoch": int(milestone), "value": value, "stop": False,
                        "cutoff": None})

    def save(self) -> None:
        """Rewrite rungs.json (the snapshot) now."""
        if self._run is not None:
            self._run.write_rungs(self.to_dict())
            self._saved_at = time.monotonic()
