"""The search core, Ray-free: propose a candidate, follow its attempts, tell the outcome.

An executor (the in-process one, :mod:`nas.search.local`, or the Ray adapter,
:mod:`nas.search.ray_adapter`) drives it with its own trial ids ("slots"):

- :meth:`SearchCore.propose`: before each trial the budget policy (:func:`nas.budget.admit`)
  decides start / wait / finished; then ``study.ask()`` -> the candidate
  (:func:`nas.search.propose.candidate`) -> its canonical hash. An architecture already
  evaluated (or running) is never trained again: the same trial is sampled again as the
  proposal's neighbour (:func:`nas.search.propose.after_duplicate`), so a repeat costs
  no storage trial, only a count (``duplicates_skipped``). A baseline whose twin is
  known is told at once as its duplicate (``user_attrs["duplicate_of"]``, the cached
  state, values and constraints), or when the running twin ends. Returns the trial's
  config, :data:`WAIT` or :data:`FINISHED`;
- :meth:`started`, :meth:`reported` (one per epoch), :meth:`stopped` (ASHA's verdict),
  :meth:`failed` (a worker died or raised; Ray may retry) and :meth:`finished` (the final
  report, with the outcome) follow one trial; every attempt is charged to the ledger;
- :meth:`recover` (session start: trials a dead driver left RUNNING) and
  :meth:`close_session` (session end: trials still running) fail the trials that were cut
  off and enqueue the same candidates again (``retry_of``), so the next session re-runs them.

How each outcome is told is :mod:`nas.search.outcome`; what earlier trials say (dedup,
costs, the front) is :mod:`nas.search.history`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from ..budget import Budget, admit, expected_cost
from ..run.ledger import Ledger, LedgerEntry
from ..run.rundir import RunDir
from ..study import Study
from . import interrupts
from .history import COPIED, History
from .hopeless import MIN_VERDICTS, hopeless
from .live import LiveTrial
from .outcome import COMPLETE, constraint_values, objective_values, plain, worker_died
from .propose import after_duplicate, candidate, random_draw_seed, spec_of_params

#: propose() says: ask again when a running trial has ended.
WAIT = None
#: propose() says: the search is over (budget, space, constraints or a fatal error).
FINISHED = "FINISHED"
#: consecutive duplicates after which the space is taken as exhausted.
MAX_DUPLICATE_STREAK = 100


class SearchCore:
    """Proposes specs from ``study.space`` through ``optuna_study`` and tells results."""

    def __init__(self, study: Study, optuna_study: optuna.Study, *, run: RunDir,
                 ledger: Ledger, budget: Budget, seed: int, session: int, devices: float,
                 wall_before: float = 0.0, clock: Callable[[], float] = time.time):
        if not hasattr(optuna_study._storage, "discard_params"):
            raise TypeError("SearchCore needs the driver's storage "
                            "(nas.run.sole_writer.driver_storage): it re-samples a trial "
                            "in place of a duplicate")
        self.study = study
        self.optuna = optuna_study
        self.run = run
        self.ledger = ledger
        self.budget = budget
        self.seed = seed
        self.session = session
        self.devices = float(devices)
        self.wall_before = wall_before
        self.clock = clock
        self.session_start = clock()
        self.primary = study.primary.metric
        self.single = len(study.objectives) == 1
        self.stop_reason: str | None = None
        self.stop_detail: str | None = None  # why, when stop_reason alone does not say
        self.fatal: str | None = None  # a study error a worker met (nas.search.trainable)
        self._hopeless_after: int | None = None
        self._feasible_judged = False  # some judged candidate met every constraint
        self._live: dict[str, LiveTrial] = {}
        self._running_hashes: dict[str, str] = {}  # hash -> slot
        self._waiting_dups: dict[str, list[optuna.trial.Trial]] = {}
        self._random_draws = 0
        self.history = History([o.direction for o in study.objectives])
        self.history.load(self.optuna.get_trials(deepcopy=False))

    # ------------------------------------------------------------------ budget
    @property
    def running(self) -> int:
        return len(self._live) + sum(len(v) for v in self._waiting_dups.values())

    def spent(self) -> float:
        """Budget spent so far in base units (device or wall seconds, or trials)."""
        return self.budget.spent(device_s=self.ledger.spent_device_s(),
                                 wall_s=self.wall_before + (self.clock() - self.session_start),
                                 told=self.history.told)

    def expected(self) -> float | None:
        """Expected cost of the next trial in the budget's base unit."""
        epochs = self.study.training.epochs
        extrapolated = [live.attempt_wall / live.epochs * epochs
                        for live in self._live.values() if live.epochs > 0]
        wall = expected_cost(self.history.trained_walls, self.history.all_walls,
                             extrapolated)
        if wall is None or self.budget.kind == "trials":
            return None if wall is None else 1.0
        return wall * (self.devices if self.budget.kind == "device" else 1.0)

    def admission(self) -> dict[str, Any]:
        """The budget policy's inputs and verdict now (kept on each started trial as
        ``user_attrs["admission"]``, base units: seconds or trials)."""
        state = {"spent": self.spent(), "expected": self.expected(),
                 "running": self.running, "told": self.history.told,
                 "limit": self.budget.limit}
        state["decision"] = admit(self.budget, spent=state["spent"],
                                  running=state["running"], expected=state["expected"],
                                  told=state["told"])
        return state

    # ------------------------------------------------------------------ proposing
    def propose(self, slot: str) -> dict[str, Any] | str | None:
        """The config of the next trial to run in ``slot``, or WAIT, or FINISHED."""
        try:
            return self._propose(slot)
        finally:  # what a worker will run, or a twin waits with, is in the database first
            flush = getattr(self.optuna._storage, "flush", None)
            if flush is not None:
                flush()

    def _propose(self, slot: str) -> dict[str, Any] | str | None:
        if self.stop_reason is not None:
            return FINISHED
        if self._hopeless_after is None:  # a space smaller than MIN_VERDICTS: all of it
            self._hopeless_after = min(MIN_VERDICTS, self.study.space.size())
        if not self._feasible_judged:
            why = hopeless(self.history.records.values(), self.study.constraints,
                           minimum=self._hopeless_after)
            if why is not None:
                self.stop_reason, self.stop_detail = "constraints", why
                return FINISHED
            # one judged candidate that met the constraints keeps the search hopeful for
            # good: stop re-reading every record per proposal (4 ms at 10,000 trials)
            self._feasible_judged = hopeless(self.history.records.values(),
                                             self.study.constraints, minimum=0) is None
        while True:
            admission = self.admission()
            if admission["decision"] == "finished":
                self.stop_reason = "budget"
                return FINISHED
            if admission["decision"] == "wait":
                return WAIT
            config = self._settle(self.optuna.ask(), slot, admission)
            if config is not None:
                return config
            # the trial was told at once (an invalid candidate, a baseline twin): ask again

    def _settle(self, trial: optuna.trial.Trial, slot: str,
                admission: dict[str, Any]) -> dict[str, Any] | str | None:
        """Start ``trial`` in ``slot``, or tell it at once (None: ask another). A search
        candidate already evaluated, or running, is replaced IN THE SAME TRIAL by its
        neighbour (see ``propose.after_duplicate``): a repeat costs no storage trial,
        only the count ``duplicates_skipped`` on the trial that ran instead."""
        skipped = 0
        while True:
            spec, kind, problem = candidate(trial, self.study)
            if problem is not None:
                self._tell(trial, TrialState.FAIL, {"status": "invalid", "message": problem,
                                                    "duplicates_skipped": skipped})
                return None
            h = spec.hash()
            twin = self._twin(h)
            if twin is None:
                break
            if kind != "search":  # a baseline twin is shown, as a trial of its own
                self._park_duplicate(trial, h)
                return None
            # Replacements are checked without the trial (spec_of_params) until one is new
            # or needs the sampler; only that one is given to the trial and sampled.
            params, marks = trial.params, None
            while twin is not None:
                skipped += 1
                if skipped >= MAX_DUPLICATE_STREAK:
                    if marks is not None:  # the trial told as the duplicate it now is
                        trial = self._resample(trial, params, marks)
                        candidate(trial, self.study)
                    return self._exhausted(trial, h, skipped)
                self._random_draws += 1
                params, marks = after_duplicate(self.study, params, skipped, random_draw_seed(
                    self.seed, self.history.told, self._random_draws), twin)
                built = spec_of_params(self.study, params)
                if built is None:
                    break
                spec, params = built
                h = spec.hash()
                twin = self._twin(h)
            trial = self._resample(trial, params, marks)
        spec_dict = spec.to_dict()
        self._live[slot] = LiveTrial(trial=trial, number=trial.number, hash=h,
                                     spec=spec_dict, kind=kind, slot=slot,
                                     admission=admission)
        self._running_hashes[h] = slot
        # One write now (the storage buffers it); the rest is told with the result.
        trial.set_user_attr("hash", h)
        if skipped:
            trial.set_user_attr("duplicates_skipped", skipped)
        return {"spec": spec_dict, "number": trial.number, "seed": self.seed,
                "kind": kind}

    def _twin(self, h: str) -> int | None:
        """The number of the trial that evaluated, or is running, architecture ``h``."""
        twin = self.history.done.get(h)
        if twin is None and h in self._running_hashes:
            twin = self._live[self._running_hashes[h]].number
        return twin

    def _resample(self, trial: optuna.trial.Trial, params: dict[str, Any],
                  marks: dict[str, Any]) -> optuna.trial.Trial:
        """The same trial, its params forgotten, to be sampled as ``params`` (what the
        storage holds of it is only its row: nothing is handed out before propose ends)."""
        storage = self.optuna._storage
        storage.discard_params(trial._trial_id)
        storage.set_trial_system_attr(trial._trial_id, "fixed_params", params)
        for key, value in marks.items():
            storage.set_trial_user_attr(trial._trial_id, key, value)
        return optuna.trial.Trial(self.optuna, trial._trial_id)

    def _park_duplicate(self, trial: optuna.trial.Trial, h: str) -> None:
        """A baseline whose architecture is evaluated, or running: told as a duplicate of
        its twin now, or when the twin ends."""
        if h in self.history.done:
            self._tell_duplicate(trial, h, self.history.done[h])
            return
        trial.set_user_attr("hash", h)
        self._waiting_dups.setdefault(h, []).append(trial)

    def _exhausted(self, trial: optuna.trial.Trial, h: str, skipped: int) -> str:
        """MAX_DUPLICATE_STREAK proposals in a row were known architectures: the space is
        taken as exhausted. The last proposal is told as the duplicate it is (a known
        twin's, or waits for the running one)."""
        trial.set_user_attr("duplicates_skipped", skipped - 1)
        self._park_duplicate(trial, h)
        self.stop_reason = "space exhausted"
        why = hopeless(self.history.records.values(), self.study.constraints, minimum=1)
        if why is not None:  # exhausted without one feasible candidate: say which limit
            self.stop_reason, self.stop_detail = "constraints", why
        return FINISHED

    # ------------------------------------------------------------------ following a trial
    def started(self, slot: str) -> None:
        """An attempt of the trial in ``slot`` started on a worker."""
        live = self._live.get(slot)
        if live is None:
            return
        live.restart(self.clock())
        self.run.log_event(live.number, {"event": "start", "attempt": live.attempt,
                                         "executor_id": slot, "session": self.session})

    def reported(self, slot: str, result: dict[str, Any]) -> None:
        """A per-epoch report (``epoch``, the metrics, ``trial_wall_s``)."""
        live = self._live.get(slot)
        if live is None:
            return
        live.absorb(result, self.primary)
        event = {k: v for k, v in result.items() if k in (
            "epoch", "trial_wall_s", "accuracy", "train_loss", "val_loss", "final")}
        self.run.log_event(live.number, {"event": "result", "attempt": live.attempt,
                                         **event})

    def stopped(self, slot: str) -> None:
        """ASHA stopped the trial in ``slot``; its end (finished) is told PRUNED."""
        if slot in self._live:
            self._live[slot].stopped = True

    def finished(self, slot: str, result: dict[str, Any] | None) -> None:
        """The trial in ``slot`` ended: its final report (``outcome``, or ``fatal``), or
        None / a plain report when it ended without a verdict (stopped, or cut off)."""
        live = self._live.pop(slot, None)
        if live is None:
            return
        if result:
            live.absorb(result, self.primary)
        wall = live.wall(self.clock())
        outcome = result.get("outcome") if result else None
        if result and result.get("fatal"):
            self.fatal = str(result["fatal"])
            self.stop_reason = "error"
            # not the candidate's fault: run it later
            interrupts.finish_interrupted(self, live, wall)
        elif outcome:
            self._finish_outcome(live, json.loads(outcome), wall)  # both executors: JSON
        elif live.stopped:
            self._finish_stopped(live, wall)
        else:  # ended without a verdict: the search itself was stopped
            interrupts.finish_interrupted(self, live, wall)

    def failed(self, slot: str, message: str, *, final: bool) -> None:
        """A worker failed (its process died, or the trial raised). Charge the attempt;
        if it is the last one the executor allows, tell Optuna FAIL."""
        live = self._live.get(slot)
        if live is None:
            return
        wall = live.wall(self.clock())
        status = "worker_died" if worker_died(message) else "worker_error"
        self._charge(live, status, wall)
        self.run.log_event(live.number, {"event": "failure", "attempt": live.attempt,
                                         "message": message, "final": final})
        if not final:
            live.attempt += 1
            return
        del self._live[slot]
        self._running_hashes.pop(live.hash, None)
        text = f"{status.replace('_', ' ')} ({live.attempt} attempts): {message}"
        self._tell(live.trial, TrialState.FAIL, self._attrs(live, status, wall, text))
        self._resolve_waiting(live.hash, live.number)

    # ------------------------------------------------------------------ sessions
    def recover(self) -> int:
        """At the start of a session: trials an earlier driver left RUNNING (it died,
        e.g. ``kill -9``) are charged, failed and re-enqueued (:mod:`.interrupts`)."""
        return interrupts.recover(self)

    def close_session(self) -> None:
        """At the end of a session: trials still running were cut off by the stop."""
        interrupts.close_session(self)

    def snapshot(self) -> dict[str, Any]:
        """What the live display shows."""
        spent, c = self.spent(), self.history.counts
        return {"told": self.history.told, "running": self.running,
                "complete": c["complete"], "infeasible": c["infeasible"],
                "failed": c["failed"], "stopped": c["stopped"],
                "duplicate": c["duplicate"] + c["duplicates_skipped"],
                "spent": spent, "left": self.budget.left(spent),
                "best": self.history.best, "front": len(self.history.front)}

    # ------------------------------------------------------------------ finishing
    def _charge(self, live: LiveTrial, status: str, wall: float) -> None:
        self.ledger.append(LedgerEntry.make(
            live.number, live.attempt, status, wall, self.devices, session=self.session,
            executor_id=live.slot, hash=live.hash))

    def _finish_outcome(self, live: LiveTrial, out: dict[str, Any], wall: float) -> None:
        status = out["status"]
        self._running_hashes.pop(live.hash, None)
        self._charge(live, status, wall)
        attrs = self._attrs(live, status, wall, out.get("message", ""))
        attrs.update(metrics=plain(out.get("metrics", {})),
                     violations=plain(out.get("violations", {})),
                     check_s=float(out.get("check_s", 0.0)),
                     epochs_done=int(out.get("epochs_done", 0)),
                     provenance=plain(out.get("provenance", {})),
                     curve=[float(h[self.primary]) for h in out.get("history", [])
                            if self.primary in h])
        if out.get("protocol"):
            attrs["protocol"] = plain(out["protocol"])
        if live.pre_training_s is not None:
            attrs["pre_training_s"] = live.pre_training_s
        if status in COMPLETE:
            values, attrs["placeholders"] = objective_values(self.study.objectives, out)
            self._tell(live.trial, TrialState.COMPLETE, attrs, values,
                       constraint_values(self.study.constraints, out))
        elif status == "stopped":
            self._tell(live.trial, TrialState.PRUNED, attrs)
        else:  # diverged, error
            self._tell(live.trial, TrialState.FAIL, attrs)
        self._resolve_waiting(live.hash, live.number)

    def _finish_stopped(self, live: LiveTrial, wall: float) -> None:
        self._running_hashes.pop(live.hash, None)
        self._charge(live, "stopped", wall)
        attrs = self._attrs(live, "stopped", wall,
                            f"stopped by ASHA after epoch {live.epochs}")
        attrs.update(metrics=dict(live.last), epochs_done=live.epochs, curve=live.curve)
        if live.pre_training_s is not None:
            attrs["pre_training_s"] = live.pre_training_s
        self._tell(live.trial, TrialState.PRUNED, attrs)
        self._resolve_waiting(live.hash, live.number)

    def _tell_duplicate(self, trial: optuna.trial.Trial, h: str, original: int) -> None:
        state, values, constraints, src = self.history.records[original]
        attrs = {"hash": h, "duplicate_of": original, "status": "duplicate",
                 "original_status": src.get("status"), "device_s": 0.0,
                 "kind": trial.user_attrs.get("kind", "search")}
        attrs.update({k: v for k, v in src.items() if k in COPIED})
        if state == TrialState.COMPLETE:
            self._tell(trial, state, attrs, list(values), dict(constraints))
        else:
            self._tell(trial, TrialState.PRUNED if state == TrialState.PRUNED
                       else TrialState.FAIL, attrs)

    def _resolve_waiting(self, h: str, original: int) -> None:
        for trial in self._waiting_dups.pop(h, []):
            self._tell_duplicate(trial, h, original)

    def _tell(self, trial: optuna.trial.Trial, state: TrialState, attrs: dict[str, Any],
              values: list[float] | None = None,
              constraints: dict[str, float] | None = None) -> None:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        for key, value in (constraints or {}).items():
            trial.set_constraint(key, value)
        # Learning curves as intermediate values (optuna-dashboard draws them) where
        # Optuna allows it: trial.report raises for a multi-objective study.
        if state in (TrialState.PRUNED, TrialState.COMPLETE) and self.single:
            for step, value in enumerate(attrs.get("curve") or [], start=1):
                trial.report(value, step)
        merged = {**trial.user_attrs, **attrs}
        self.optuna.tell(trial, values if state == TrialState.COMPLETE else None,
                         state=state)
        self.history.note(trial.number, state, values, constraints or {}, merged)

    def _attrs(self, live: LiveTrial, status: str, wall: float, message: str = "") -> dict:
        out = {"status": status, "kind": live.kind, "spec": live.spec,
               "wall_s": float(wall), "devices": self.devices,
               "device_s": self.ledger.device_s(live.number),
               "attempts": live.attempt, "seed": self.seed, "session": self.session,
               "executor_id": live.slot, "admission": live.admission}
        if message:
            out["message"] = message
        return out
