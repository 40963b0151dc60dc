"""ASHA on the primary objective per epoch, recording its rungs and what it stopped.

Ray's ASHAScheduler with ``time_attr="asha_epoch"`` (reported by the trainable on every
epoch but the last, see nas.search.trainable), ``grace_period`` and ``reduction_factor`` from the
study's ``fidelity``, ``max_t`` the study's epochs, and ``stop_last_trials=False``: a trial
that reached its last epoch is never stopped. Baselines (``kind: baseline``) are
comparisons: they train to the study's full fidelity under the same protocol as the found
trials, so ASHA never stops them and their values stay out of the rungs (a strong baseline
must not raise the cutoff the found trials are stopped against). After every decision
that changed something it writes ``rungs.json`` in the run directory::

    {"metric": "accuracy", "mode": "max", "grace_epochs": 1, "reduction_factor": 2,
     "rungs": [{"epoch": 1, "cutoff": 0.61, "trials": {"3": 0.58, "4": 0.66}}, ...],
     "stopped": [{"trial": 3, "epoch": 1, "value": 0.58, "cutoff": 0.61}]}

(trial = Optuna trial number). Imported only inside run_search: it needs Ray.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from ..run.rundir import RunDir


class RecordingASHA(ASHAScheduler):
    """ASHAScheduler that tells the searcher which trials it stopped and saves rungs."""

    def __init__(self, *, metric: str, mode: str, epochs: int, grace: int,
                 reduction_factor: float, run: RunDir, searcher: Any):
        super().__init__(time_attr="asha_epoch", metric=metric, mode=mode, max_t=epochs,
                         grace_period=grace, reduction_factor=reduction_factor,
                         stop_last_trials=False)
        self._run = run
        self._searcher = searcher
        self._numbers: dict[str, int] = {}
        self._stopped: list[dict[str, Any]] = []
        self._header = {"metric": metric, "mode": mode, "grace_epochs": grace,
                        "reduction_factor": reduction_factor, "max_epochs": epochs}
        self._restore()
        self._save()

    def _restore(self) -> None:
        """Seed the rungs with the values earlier sessions of this run recorded, so a
        resumed search keeps stopping against the same cutoffs."""
        import json

        try:
            old = json.loads((self._run / "rungs.json").read_text())
        except (OSError, ValueError):
            return
        if old.get("metric") != self._metric or old.get("mode") != self._mode:
            return
        self._stopped = list(old.get("stopped", []))
        sign = 1.0 if self._mode == "max" else -1.0
        by_epoch = {float(r["epoch"]): r.get("trials", {}) for r in old.get("rungs", [])}
        for bracket in self._brackets:
            for milestone, recorded in bracket._rungs:
                for number, value in by_epoch.get(float(milestone), {}).items():
                    key = f"earlier-{number}"
                    recorded[key] = sign * float(value)
                    self._numbers[key] = int(number)

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        self._numbers[trial.trial_id] = int(trial.config.get("number", -1))

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        if _is_baseline(trial):
            return TrialScheduler.CONTINUE
        bracket = self._trial_info.get(trial.trial_id)
        cutoffs = ({m: bracket.cutoff(rec) for m, rec in bracket._rungs}
                   if bracket is not None else {})
        action = super().on_trial_result(tune_controller, trial, result)
        if "asha_epoch" not in result:
            return action
        if action == TrialScheduler.STOP:
            epoch = int(result["asha_epoch"])
            cutoff = next((c for m, c in sorted(cutoffs.items(), reverse=True)
                           if epoch >= m), None)
            self._searcher.asha_stopped.add(trial.trial_id)
            self._stopped.append({"trial": self._numbers.get(trial.trial_id), "epoch": epoch,
                                  "value": float(result[self._metric]),
                                  "cutoff": None if cutoff is None else float(cutoff)})
        self._save()
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict[str, Any]) -> None:
        if _is_baseline(trial):
            self._trial_info.pop(trial.trial_id, None)
            return
        super().on_trial_complete(tune_controller, trial, result)

    def rungs(self) -> dict[str, Any]:
        sign = 1.0 if self._mode == "max" else -1.0
        rungs = []
        for bracket in self._brackets:
            for milestone, recorded in sorted(bracket._rungs):
                cutoff = bracket.cutoff(recorded)
                rungs.append({
                    "epoch": float(milestone),
                    "cutoff": None if cutoff is None else sign * float(cutoff),
                    "trials": {str(self._numbers.get(t, t)): sign * float(v)
                               for t, v in recorded.items()}})
        return {**self._header, "rungs": rungs, "stopped": list(self._stopped)}

    def _save(self) -> None:
        self._run.write_rungs(self.rungs())


def _is_baseline(trial: Any) -> bool:
    return (getattr(trial, "config", None) or {}).get("kind") == "baseline"
