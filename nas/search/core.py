"""The search core, Ray-free: propose a candidate, follow its attempts, tell the outcome.

An executor (the in-process one, :mod:`nas.search.local`, or the Ray adapter,
:mod:`nas.search.ray_adapter`) drives it with its own trial ids ("slots"):

- :meth:`SearchCore.propose`: before each trial the budget policy (:func:`nas.budget.admit`)
  decides start / wait / finished; then ``study.ask()`` -> the candidate
  (:func:`nas.search.propose.candidate`) -> its canonical hash. An architecture already
  evaluated is never trained again: the new trial is told at once with the cached state,
  values and constraints and ``user_attrs["duplicate_of"]``; one whose twin is running
  waits for it and is told the same. Returns the trial's config, :data:`WAIT` or
  :data:`FINISHED`;
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
from .history import COPIED, History
from .hopeless import MIN_VERDICTS, hopeless
from .live import LiveTrial
from .outcome import COMPLETE, constraint_values, objective_values, plain, worker_died
from .propose import candidate, enqueue_after_duplicate, random_draw_seed

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
        # (trial, kind, streak) of the last duplicate: its neighbour is queued before the
        # next ask
        self._after_duplicate: tuple[optuna.trial.Trial, str, int] | None = None
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
        for streak in range(1, MAX_DUPLICATE_STREAK + 1):
            admission = self.admission()
            if admission["decision"] == "finished":
                self.stop_reason = "budget"
                return FINISHED
            if admission["decision"] == "wait":
                return WAIT
            if self._after_duplicate is not None:  # queued only now: nothing left WAITING
                self._queue_after_duplicate(*self._after_duplicate)
                self._after_duplicate = None
            trial = self.optuna.ask()
            spec, kind, problem = candidate(trial, self.study)
            if problem is not None:
                self._tell(trial, TrialState.FAIL, {"status": "invalid", "message": problem})
                continue
            h = spec.hash()
            if h in self.history.done:
                self._tell_duplicate(trial, h, self.history.done[h])
                self._after_duplicate = (trial, kind, streak)
                continue
            if h in self._running_hashes:
                trial.set_user_attr("hash", h)
                self._waiting_dups.setdefault(h, []).append(trial)
                self._after_duplicate = (trial, kind, streak)
                continue
            spec_dict = spec.to_dict()
            self._live[slot] = LiveTrial(trial=trial, number=trial.number, hash=h,
                                     spec=spec_dict, kind=kind, slot=slot,
                                     admission=admission)
            self._running_hashes[h] = slot
            # One write now (each is a storage commit); the rest is told with the result.
            trial.set_user_attr("hash", h)
            return {"spec": spec_dict, "number": trial.number, "seed": self.seed,
                    "kind": kind}
        self.stop_reason = "space exhausted"
        why = hopeless(self.history.records.values(), self.study.constraints, minimum=1)
        if why is not None:  # exhausted without one feasible candidate: say which limit
            self.stop_reason, self.stop_detail = "constraints", why
        return FINISHED

    def _queue_after_duplicate(self, trial: optuna.trial.Trial, kind: str,
                               streak: int) -> None:
        """Queue what the next ask takes after a known architecture (see
        ``propose.enqueue_after_duplicate``), when that ask is about to happen, so that
        a search ending here leaves none waiting."""
        if kind != "search":  # a baseline twin: the sampler's turn comes next
            return
        self._random_draws += 1
        enqueue_after_duplicate(self.optuna, self.study, trial, streak, random_draw_seed(
            self.seed, self.history.told, self._random_draws))

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
            self._finish_interrupted(live, wall)  # not the candidate's fault: run it later
        elif outcome:
            self._finish_outcome(live, json.loads(outcome), wall)  # both executors: JSON
        elif live.stopped:
            self._finish_stopped(live, wall)
        else:  # ended without a verdict: the search itself was stopped
            self._finish_interrupted(live, wall)

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
        e.g. ``kill -9``) are charged from their logs, told FAIL and re-enqueued. Only
        safe while holding the run's lock (no other driver is telling them)."""
        n = 0
        for t in self.optuna.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            trial = optuna.trial.Trial(self.optuna, t._trial_id)
            events = self.run.read_log(t.number)
            starts = [e for e in events if e.get("event") == "start"]
            attrs: dict[str, Any] = {"hash": t.user_attrs.get("hash")}
            if starts:
                wall = max(0.0, float(events[-1]["t"]) - float(starts[-1]["t"]))
                attrs["wall_s"] = wall
                self.ledger.append(LedgerEntry.make(
                    t.number, int(starts[-1].get("attempt", 1)), "interrupted", wall,
                    self.devices, session=int(starts[-1].get("session", self.session)),
                    executor_id=starts[-1].get("executor_id"), hash=attrs["hash"]))
            # A trial asked but never handed out (the driver died between the ask and the
            # write of its params) has no params in the database: re-run what was queued
            # for it (a neighbour, a baseline, a retry) if anything, else nothing.
            self._interrupt(trial, t.number, attrs,
                            params=t.params or t.system_attrs.get("fixed_params") or {})
            n += 1
        return n

    def close_session(self) -> None:
        """At the end of a session: trials still running were cut off by the stop."""
        for slot in list(self._live):
            live = self._live.pop(slot)
            self._finish_interrupted(live, live.wall(self.clock()))
        for h in list(self._waiting_dups):
            for trial in self._waiting_dups.pop(h):
                self._interrupt(trial, trial.number, {"hash": h})

    def snapshot(self) -> dict[str, Any]:
        """What the live display shows."""
        spent, c = self.spent(), self.history.counts
        return {"told": self.history.told, "running": self.running,
                "complete": c["complete"], "infeasible": c["infeasible"],
                "failed": c["failed"], "stopped": c["stopped"], "duplicate": c["duplicate"],
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

    def _finish_interrupted(self, live: LiveTrial, wall: float) -> None:
        self._running_hashes.pop(live.hash, None)
        if live.attempt_start is not None:  # it ran: charge what it used
            self._charge(live, "interrupted", wall)
        self._interrupt(live.trial, live.number, {"hash": live.hash, "wall_s": wall,
                                                   "kind": live.kind, "spec": live.spec})
        for trial in self._waiting_dups.pop(live.hash, []):
            self._interrupt(trial, trial.number, {"hash": live.hash})

    def _interrupt(self, trial: optuna.trial.Trial, number: int, attrs: dict[str, Any],
                   params: dict[str, Any] | None = None) -> None:
        """FAIL an interrupted trial and enqueue the same candidate again (``params``,
        default the trial's): a baseline (its spec is carried), or a candidate with
        params; one without any was never sampled, so there is nothing to re-run."""
        params = dict(trial.params if params is None else params)
        carried = {k: v for k, v in trial.user_attrs.items()
                   if k in ("kind", "baseline", "spec", "baseline_error")}
        retry = bool(params) or carried.get("kind") == "baseline"
        attrs = {**attrs, "status": "interrupted", "interrupted": True,
                 "message": "interrupted: the search stopped while it ran; " + (
                     "re-enqueued" if retry else "never handed out, nothing to re-run")}
        self._tell(trial, TrialState.FAIL, attrs)
        if not retry:
            return
        marks = {"retry_of": number}
        if carried.get("kind") == "baseline":
            marks.update(carried)
        self.optuna.enqueue_trial(params, user_attrs=marks)

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
