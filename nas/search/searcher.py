"""A Ray Tune Searcher that owns an Optuna study: Optuna proposes, Ray runs, we tell.

Ray's own OptunaSearch passes only objective values back (no constraints, no user
attributes) and keeps an in-memory study; this one keeps the study in the run's storage
and tells Optuna everything a result page needs. Imported only inside ``nas.search.driver``
functions (it subclasses a Ray class), so ``import nas`` does not load Ray.

Per suggestion: ``study.ask()`` -> the spec (``space.sample(trial)``; an enqueued baseline
or retry carries its spec or params) -> its canonical hash. An architecture whose hash was
already evaluated is never trained again: the new trial is told at once with the cached
state, values and constraints and ``user_attrs["duplicate_of"]``; one whose twin is still
running waits for it and is told the same. Before each suggestion the budget policy
(:func:`nas.budget.admit`) decides: start, wait, or ``Searcher.FINISHED``.

How results are told (``user_attrs["status"]`` keeps the detail, see :mod:`nas.run.states`):

- ok: COMPLETE with the objective values and constraints;
- infeasible / oom: COMPLETE with constraints > 0 so NSGA-II / TPE rank it below every
  feasible trial; objective values never measured are placeholders (accuracy 0, an
  unmeasured minimised metric +inf) listed in ``user_attrs["placeholders"]``;
- stopped by ASHA: PRUNED (a low-fidelity accuracy must not enter the Pareto front); the
  last epoch's values are kept in user_attrs (``metrics``, ``curve``, ``epochs_done``);
  single-objective studies get the curve of every trained trial (stopped or complete) as
  intermediate values too (optuna-dashboard draws those; Optuna refuses ``trial.report``
  in a multi-objective study, so there the curve is in ``user_attrs["curve"]`` only);
- diverged (NaN loss), error, a worker that died twice: FAIL with ``message``;
- interrupted (the driver stopped mid-trial): FAIL with ``interrupted: true``, re-enqueued
  with the same params (``retry_of``) so the next session runs it again.

Constraints are set with ``trial.set_constraint`` (Optuna 5), one per study constraint,
as the RELATIVE amount over the limit, ``(value - limit) / limit`` (<= 0 feasible), so that
violations of params (millions) and latency (ms) weigh alike in constrained domination;
plus ``oom`` (1 when the candidate ran out of memory, else 0). Absolute violations are in
``user_attrs["violations"]``.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from ..budget import Budget, admit, expected_cost
from ..run.ledger import Ledger, LedgerEntry
from ..run.rundir import RunDir
from ..run.states import Front
from ..study import Study
from .hopeless import MIN_VERDICTS, hopeless

#: consecutive duplicates after which the space is taken as exhausted.
MAX_DUPLICATE_STREAK = 100
#: consecutive duplicates after which the next candidate is drawn uniformly at random.
#: A model-based sampler (TPE above all) can collapse onto the architectures it already
#: likes and propose them again and again; those trials cost nothing, but without this
#: the search would stop as "space exhausted" in a space of millions.
RANDOM_AFTER_DUPLICATES = 10
#: statuses that mean the candidate was trained (its cost predicts a trained trial's).
TRAINED = ("ok", "stopped", "diverged")
#: user attributes a duplicate copies from the trial that evaluated its architecture.
_COPIED = ("metrics", "violations", "epochs_done", "placeholders", "spec", "curve", "kind")


@dataclass
class _Live:
    """A trial Ray is running (one Optuna trial; possibly several attempts)."""

    trial: optuna.trial.Trial
    number: int
    hash: str
    spec: dict[str, Any]
    kind: str
    ray_trial_id: str = ""
    admission: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    attempt_start: float | None = None  # time.time() when the worker started the attempt
    attempt_wall: float = 0.0  # trial_wall_s of the attempt's latest report
    epochs: int = 0
    curve: list[float] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)
    pre_training_s: float | None = None  # time before the first epoch (see _absorb)
    messages: list[str] = field(default_factory=list)


def make_sampler(name: str, seed: int, options: dict[str, Any] | None = None):
    """The Optuna sampler a study names (nsga2, tpe, random, gp)."""
    options = dict(options or {})
    samplers = optuna.samplers
    if name == "nsga2":
        return samplers.NSGAIISampler(seed=seed, **options)
    if name == "tpe":
        return samplers.TPESampler(seed=seed, **options)
    if name == "random":
        return samplers.RandomSampler(seed=seed, **options)
    if name == "gp":
        return samplers.GPSampler(seed=seed, **options)
    raise ValueError(f"unknown sampler {name!r}")


def random_draw_seed(seed: int, told: int, draws: int) -> int:
    """A 32-bit seed for the fallback's random draw, distinct per (search seed, trials
    told, draws so far). Hashed with NumPy's SeedSequence rather than mixed by
    arithmetic: every valid search seed (0 .. 2**32 - 1) gives a valid sampler seed."""
    return int(np.random.SeedSequence([seed, told, draws]).generate_state(1)[0])


class NasSearcher(Searcher):
    """Suggests specs from ``study.space`` through ``optuna_study`` and tells results."""

    def __init__(self, study: Study, optuna_study: optuna.Study, *, run: RunDir,
                 ledger: Ledger, budget: Budget, seed: int, session: int, devices: float,
                 wall_before: float = 0.0):
        super().__init__(metric=None, mode=None)
        self.study = study
        self.optuna = optuna_study
        self.run = run
        self.ledger = ledger
        self.budget = budget
        self.seed = seed
        self.session = session
        self.devices = float(devices)
        self.wall_before = wall_before
        self.session_start = time.time()
        self.directions = [o.direction for o in study.objectives]
        self.primary = study.primary.metric
        self.single = len(study.objectives) == 1
        self.stop_reason: str | None = None
        self.fatal: str | None = None  # a study error a worker met (nas.search.trainable)
        self.stop_detail: str | None = None  # why, when stop_reason alone does not say
        self._hopeless_after: int | None = None
        self.asha_stopped: set[str] = set()  # Ray trial ids ASHA stopped (nas.search.asha)
        self._live: dict[str, _Live] = {}
        self._running_hashes: dict[str, str] = {}  # hash -> Ray trial id
        self._waiting_dups: dict[str, list[optuna.trial.Trial]] = {}
        self._done: dict[str, int] = {}  # hash -> number of the trial that evaluated it
        self._records: dict[int, tuple] = {}  # number -> (state, values, constraints, attrs)
        self._told = 0
        self._random_draws = 0  # candidates queued by _enqueue_random
        self._trained_walls: list[float] = []
        self._all_walls: list[float] = []
        self.counts: Counter[str] = Counter()
        self.front = Front(self.directions)
        self.best: tuple[int, float] | None = None
        self._load_history()

    # ------------------------------------------------------------------ history
    def _load_history(self) -> None:
        for t in self.optuna.get_trials(deepcopy=False):
            if not t.state.is_finished():
                continue
            self._note_finished(t.number, t.state, t.values, t.constraints, t.user_attrs)

    def _note_finished(self, number: int, state: TrialState, values: Any,
                       constraints: dict[str, float], attrs: dict[str, Any]) -> None:
        """Update counters, dedup map, cost history and the front for a told trial."""
        status = attrs.get("status")
        if status == "interrupted":
            self.counts["interrupted"] += 1
            return
        self._told += 1
        h = attrs.get("hash")
        if h and attrs.get("duplicate_of") is None and h not in self._done:
            self._done[h] = number
            self._records[number] = (state, values, dict(constraints),
                                     {k: attrs[k] for k in (*_COPIED, "status") if k in attrs})
        if attrs.get("duplicate_of") is not None:
            self.counts["duplicate"] += 1
            return
        if "wall_s" in attrs and status not in (None, "invalid"):
            self._all_walls.append(float(attrs["wall_s"]))
            if status in TRAINED:
                self._trained_walls.append(float(attrs["wall_s"]))
        feasible = all(v <= 0 for v in constraints.values())
        if state == TrialState.COMPLETE:
            self.counts["complete" if feasible else "infeasible"] += 1
            if feasible and values is not None:
                self.front.add(number, values, baseline=attrs.get("kind") == "baseline")
                best = self.front.best()  # found trials only; a baseline may beat them
                self.best = (best[0], best[1][0]) if best else None
        elif state == TrialState.PRUNED:
            self.counts["stopped"] += 1
        else:
            self.counts["failed"] += 1

    # ------------------------------------------------------------------ budget
    @property
    def running(self) -> int:
        return len(self._live) + sum(len(v) for v in self._waiting_dups.values())

    @property
    def told(self) -> int:
        return self._told

    def spent(self) -> float:
        """Budget spent so far in base units (device or wall seconds, or trials)."""
        if self.budget.kind == "device":
            return self.ledger.spent_device_s()
        if self.budget.kind == "wall":
            return self.wall_before + (time.time() - self.session_start)
        return float(self._told)

    def expected(self) -> float | None:
        """Expected cost of the next trial in the budget's base unit."""
        extrapolated = []
        epochs = self.study.training.epochs
        for live in self._live.values():
            if live.epochs > 0:
                extrapolated.append(live.attempt_wall / live.epochs * epochs)
        wall = expected_cost(self._trained_walls, self._all_walls, extrapolated)
        if wall is None or self.budget.kind == "trials":
            return None if wall is None else 1.0
        return wall * (self.devices if self.budget.kind == "device" else 1.0)

    def admission(self) -> dict[str, Any]:
        """The budget policy's inputs and verdict now (kept on each started trial as
        ``user_attrs["admission"]``, base units: seconds or trials)."""
        state = {"spent": self.spent(), "expected": self.expected(),
                 "running": self.running, "told": self._told, "limit": self.budget.limit}
        state["decision"] = admit(self.budget, spent=state["spent"],
                                  running=state["running"], expected=state["expected"],
                                  told=state["told"])
        return state

    # ------------------------------------------------------------------ Ray Searcher API
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space comes from the study, not from Tune's param_space

    def save(self, checkpoint_path: str) -> None:
        pass  # the state is the Optuna storage + ledger, persisted as trials finish

    def restore(self, checkpoint_path: str) -> None:
        pass

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.stop_reason is not None:
            return Searcher.FINISHED
        if self._hopeless_after is None:  # a space smaller than MIN_VERDICTS: all of it
            self._hopeless_after = min(MIN_VERDICTS, self.study.space.size())
        why = hopeless(self._records.values(), self.study.constraints,
                       minimum=self._hopeless_after)
        if why is not None:
            self.stop_reason, self.stop_detail = "constraints", why
            return Searcher.FINISHED
        for streak in range(MAX_DUPLICATE_STREAK):
            if streak and streak % RANDOM_AFTER_DUPLICATES == 0:
                self._enqueue_random()
            admission = self.admission()
            if admission["decision"] == "finished":
                self.stop_reason = "budget"
                return Searcher.FINISHED
            if admission["decision"] == "wait":
                return None
            trial = self.optuna.ask()
            spec, kind, problem = self._materialize(trial)
            if problem is not None:
                self._tell_invalid(trial, problem)
                continue
            h = spec.hash()
            if h in self._done:
                self._tell_duplicate(trial, h, self._done[h])
                continue
            if h in self._running_hashes:
                trial.set_user_attr("hash", h)
                self._waiting_dups.setdefault(h, []).append(trial)
                continue
            spec_dict = spec.to_dict()
            live = _Live(trial=trial, number=trial.number, hash=h, spec=spec_dict, kind=kind,
                         ray_trial_id=trial_id, admission=admission)
            self._live[trial_id] = live
            self._running_hashes[h] = trial_id
            # One write now (each is a storage commit); the rest is told with the result.
            trial.set_user_attr("hash", h)
            return {"spec": spec_dict, "number": trial.number, "seed": self.seed,
                    "kind": kind}
        self.stop_reason = "space exhausted"
        why = hopeless(self._records.values(), self.study.constraints, minimum=1)
        if why is not None:  # exhausted without one feasible candidate: say which limit
            self.stop_reason, self.stop_detail = "constraints", why
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        pass  # results arrive through record_result (the callback sees every one)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        live = self._live.get(trial_id)
        if live is None or error:
            return  # errors are finished by attempt_failed(final=True), with the message
        del self._live[trial_id]
        if result:
            self._absorb(live, result)
        wall = self._attempt_wall(live)
        outcome = result.get("outcome") if result else None
        if result and result.get("fatal"):
            self.fatal = str(result["fatal"])
            self.stop_reason = "error"
            self._finish_interrupted(live, wall)  # not the candidate's fault: run it later
        elif outcome:
            self._finish_outcome(live, json.loads(outcome), wall)
        elif trial_id in self.asha_stopped:
            self._finish_stopped(live, wall)
        else:  # ended without a verdict: the search itself was stopped
            self._finish_interrupted(live, wall)

    # ------------------------------------------------------------------ callback hooks
    def attempt_started(self, trial_id: str) -> None:
        live = self._live.get(trial_id)
        if live is None:
            return
        live.attempt_start = time.time()
        live.attempt_wall, live.epochs, live.curve = 0.0, 0, []
        live.pre_training_s = None
        self.run.log_event(live.number, {"event": "start", "attempt": live.attempt,
                                         "ray_trial_id": trial_id, "session": self.session})

    def record_result(self, trial_id: str, result: dict[str, Any]) -> None:
        live = self._live.get(trial_id)
        if live is None:
            return
        self._absorb(live, result)
        event = {k: v for k, v in result.items() if k in (
            "epoch", "trial_wall_s", "accuracy", "train_loss", "val_loss", "final")}
        self.run.log_event(live.number, {"event": "result", "attempt": live.attempt,
                                         **event})

    def attempt_failed(self, trial_id: str, message: str, *, final: bool) -> None:
        """A worker failed (process died, or the trainable raised). Charge the attempt;
        if it is the last one Ray allows, tell Optuna FAIL."""
        live = self._live.get(trial_id)
        if live is None:
            return
        wall = self._attempt_wall(live)
        status = "worker_died" if _worker_died(message) else "worker_error"
        self._charge(live, status, wall)
        live.messages.append(message)
        self.run.log_event(live.number, {"event": "failure", "attempt": live.attempt,
                                         "message": message, "final": final})
        if not final:
            live.attempt += 1
            return
        del self._live[trial_id]
        self._running_hashes.pop(live.hash, None)
        text = f"{status.replace('_', ' ')} ({live.attempt} attempts): {message}"
        attrs = self._attrs(live, status, wall, message=text)
        self._tell(live.trial, TrialState.FAIL, attrs)
        self._resolve_waiting(live.hash, live.number)

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
                attempt = int(starts[-1].get("attempt", 1))
                wall = max(0.0, float(events[-1]["t"]) - float(starts[-1]["t"]))
                attrs["wall_s"] = wall
                self.ledger.append(LedgerEntry.make(
                    t.number, attempt, "interrupted", wall, self.devices,
                    session=int(starts[-1].get("session", self.session)),
                    ray_trial_id=t.user_attrs.get("ray_trial_id"), hash=attrs["hash"]))
            self._interrupt(trial, t.number, attrs)
            n += 1
        return n

    def close_session(self) -> None:
        """At the end of a session: trials still running were cut off by the stop."""
        for trial_id in list(self._live):
            live = self._live.pop(trial_id)
            self._finish_interrupted(live, self._attempt_wall(live))
        for h in list(self._waiting_dups):
            for trial in self._waiting_dups.pop(h):
                self._interrupt(trial, trial.number, {"hash": h})

    # ------------------------------------------------------------------ finishing
    def _absorb(self, live: _Live, result: dict[str, Any]) -> None:
        if "trial_wall_s" in result:
            live.attempt_wall = float(result["trial_wall_s"])
        if "epoch" in result and not result.get("final"):
            epoch = int(result["epoch"])
            if epoch > live.epochs:
                live.epochs = epoch
                value = result.get(self.primary)
                if value is not None and math.isfinite(float(value)):
                    live.curve.append(float(value))
                live.last = {k: result[k] for k in ("accuracy", "train_loss", "val_loss")
                             if k in result}
                if epoch == 1 and "epoch_s" in result and "trial_wall_s" in result:
                    # what preceded training: the checks, the model build (and a cold
                    # worker's data loading); a trial ASHA stops never tells its check_s
                    live.pre_training_s = max(0.0, float(result["trial_wall_s"])
                                              - float(result["epoch_s"]))

    def _attempt_wall(self, live: _Live) -> float:
        """The attempt's wall time: its own last report, or (if it never reported, e.g.
        its worker died first) the driver's view since its start."""
        seen = time.time() - live.attempt_start if live.attempt_start else 0.0
        return max(live.attempt_wall, seen if live.attempt_wall == 0.0 else 0.0)

    def _charge(self, live: _Live, status: str, wall: float) -> None:
        self.ledger.append(LedgerEntry.make(
            live.number, live.attempt, status, wall, self.devices, session=self.session,
            ray_trial_id=live.ray_trial_id, hash=live.hash))

    def _finish_outcome(self, live: _Live, out: dict[str, Any], wall: float) -> None:
        status = out["status"]
        self._running_hashes.pop(live.hash, None)
        self._charge(live, status, wall)
        attrs = self._attrs(live, status, wall, message=out.get("message", ""))
        attrs.update(metrics=_plain(out.get("metrics", {})),
                     violations=_plain(out.get("violations", {})),
                     check_s=float(out.get("check_s", 0.0)),
                     epochs_done=int(out.get("epochs_done", 0)),
                     provenance=_plain(out.get("provenance", {})),
                     curve=[float(h[self.primary]) for h in out.get("history", [])
                            if self.primary in h])
        if out.get("protocol"):
            attrs["protocol"] = _plain(out["protocol"])
        if live.pre_training_s is not None:
            attrs["pre_training_s"] = live.pre_training_s
        if status in ("ok", "infeasible", "oom"):
            values, placeholders = self._values(out)
            attrs["placeholders"] = placeholders
            constraints = self._constraints(out)
            self._tell(live.trial, TrialState.COMPLETE, attrs, values, constraints)
        elif status == "stopped":
            self._tell(live.trial, TrialState.PRUNED, attrs)
        else:  # diverged, error
            self._tell(live.trial, TrialState.FAIL, attrs)
        self._resolve_waiting(live.hash, live.number)

    def _finish_stopped(self, live: _Live, wall: float) -> None:
        self._running_hashes.pop(live.hash, None)
        self._charge(live, "stopped", wall)
        attrs = self._attrs(live, "stopped", wall)
        attrs.update(metrics=dict(live.last), epochs_done=live.epochs, curve=live.curve,
                     message=f"stopped by ASHA after epoch {live.epochs}")
        if live.pre_training_s is not None:
            attrs["pre_training_s"] = live.pre_training_s
        self._tell(live.trial, TrialState.PRUNED, attrs)
        self._resolve_waiting(live.hash, live.number)

    def _finish_interrupted(self, live: _Live, wall: float) -> None:
        self._running_hashes.pop(live.hash, None)
        if live.attempt_start is not None:  # it ran: charge what it used
            self._charge(live, "interrupted", wall)
        self._interrupt(live.trial, live.number, {"hash": live.hash, "wall_s": wall,
                                                   "kind": live.kind, "spec": live.spec})
        for trial in self._waiting_dups.pop(live.hash, []):
            self._interrupt(trial, trial.number, {"hash": live.hash})

    def _interrupt(self, trial: optuna.trial.Trial, number: int,
                   attrs: dict[str, Any]) -> None:
        """FAIL an interrupted trial and enqueue the same candidate again."""
        params = dict(trial.params)
        carried = {k: v for k, v in trial.user_attrs.items()
                   if k in ("kind", "baseline", "spec", "baseline_error")}
        attrs = {**attrs, "status": "interrupted", "interrupted": True,
                 "message": "interrupted: the search stopped while it ran; re-enqueued"}
        self._tell(trial, TrialState.FAIL, attrs)
        retry = {"retry_of": number}
        if carried.get("kind") == "baseline":
            retry.update(carried)
        self.optuna.enqueue_trial(params, user_attrs=retry)

    def _tell_duplicate(self, trial: optuna.trial.Trial, h: str, original: int) -> None:
        state, values, constraints, src = self._records[original]
        attrs = {"hash": h, "duplicate_of": original, "status": "duplicate",
                 "original_status": src.get("status"), "device_s": 0.0,
                 "kind": trial.user_attrs.get("kind", "search")}
        attrs.update({k: v for k, v in src.items() if k in _COPIED})
        if state == TrialState.COMPLETE:
            self._tell(trial, state, attrs, list(values), dict(constraints))
        else:
            self._tell(trial, TrialState.PRUNED if state == TrialState.PRUNED
                       else TrialState.FAIL, attrs)

    def _resolve_waiting(self, h: str, original: int) -> None:
        for trial in self._waiting_dups.pop(h, []):
            self._tell_duplicate(trial, h, original)

    def _tell_invalid(self, trial: optuna.trial.Trial, problem: str) -> None:
        self._tell(trial, TrialState.FAIL, {"status": "invalid", "message": problem})

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
        self._note_finished(trial.number, state, values, constraints or {}, merged)

    # ------------------------------------------------------------------ values
    def _enqueue_random(self) -> None:
        """Queue one candidate drawn uniformly from the space (seeded by the search seed and
        the trial count, so a resumed search draws the same); the next ``ask`` takes it."""
        self._random_draws += 1
        sampler = optuna.samplers.RandomSampler(
            seed=random_draw_seed(self.seed, self._told, self._random_draws))
        scratch = optuna.create_study(sampler=sampler)
        draw = scratch.ask()
        self.study.space.sample(draw)
        self.optuna.enqueue_trial(draw.params, user_attrs={"proposed_by": "random"})

    def _materialize(self, trial: optuna.trial.Trial):
        """(spec, kind, problem): the candidate of an asked trial."""
        from search_space import ModelSpec

        attrs = trial.user_attrs
        kind = attrs.get("kind", "search")
        try:
            if kind == "baseline":
                if attrs.get("baseline_error"):
                    return None, kind, attrs["baseline_error"]
                return ModelSpec.from_dict(attrs["spec"]), kind, None
            return self.study.space.sample(trial), kind, None
        except Exception as err:  # noqa: BLE001 - one bad candidate must not end a search
            return None, kind, f"cannot build the candidate: {type(err).__name__}: {err}"

    def _attrs(self, live: _Live, status: str, wall: float, message: str = "") -> dict:
        device_s = self.ledger.by_trial().get(live.number, 0.0)
        out = {"status": status, "kind": live.kind, "spec": live.spec,
               "wall_s": float(wall), "devices": self.devices, "device_s": device_s,
               "attempts": live.attempt, "seed": self.seed, "session": self.session,
               "ray_trial_id": live.ray_trial_id, "admission": live.admission}
        if message:
            out["message"] = message
        return out

    def _values(self, out: dict[str, Any]) -> tuple[list[float], list[str]]:
        metrics = out.get("metrics", {})
        trained = out["status"] == "ok"
        values, placeholders = [], []
        for obj in self.study.objectives:
            v = metrics.get(obj.metric)
            if obj.metric == "accuracy" and not trained:
                v = None  # a candidate that did not finish training has no accuracy
            if v is None or not math.isfinite(float(v)):
                placeholders.append(obj.metric)
                if obj.direction == "maximize":
                    v = 0.0 if obj.metric == "accuracy" else -math.inf
                else:
                    v = math.inf
            values.append(float(v))
        return values, placeholders

    def _constraints(self, out: dict[str, Any]) -> dict[str, float]:
        metrics, over = out.get("metrics", {}), out.get("violations", {})
        c: dict[str, float] = {}
        for name, limit in self.study.constraints.items():
            if over.get(name, 0) > 0:
                c[name] = float(over[name]) / limit
            elif metrics.get(name) is not None and math.isfinite(float(metrics[name])):
                c[name] = (float(metrics[name]) - limit) / limit
            else:
                c[name] = 0.0  # not measured: a cheaper check decided first
        for name, amount in over.items():
            if name not in c:
                c[name] = 1.0 if amount > 0 else 0.0
        c["oom"] = 1.0 if out["status"] == "oom" else 0.0
        if out["status"] != "ok" and all(v <= 0 for v in c.values()):
            c["infeasible"] = 1.0  # never let an untrained candidate look feasible
        return c

    # ------------------------------------------------------------------ progress
    def snapshot(self) -> dict[str, Any]:
        """What the live display shows."""
        spent = self.spent()
        return {"told": self._told, "running": self.running,
                "complete": self.counts["complete"], "infeasible": self.counts["infeasible"],
                "failed": self.counts["failed"], "stopped": self.counts["stopped"],
                "duplicate": self.counts["duplicate"], "spent": spent,
                "left": max(0.0, self.budget.limit - spent), "best": self.best,
                "front": len(self.front)}


def _worker_died(message: str) -> bool:
    """Does Ray's error text say the worker process died (rather than raised)?"""
    text = message.lower()
    return any(s in text for s in ("actor died", "died unexpectedly", "worker died",
                                   "actordiederror", "unexpected system error"))


def _plain(value: Any) -> Any:
    """JSON-able copy (non-finite floats become strings: JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)

