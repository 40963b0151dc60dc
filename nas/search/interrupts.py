"""Trials a stop cut off, and trials a dead driver left RUNNING: what they used is
charged, they are told FAIL (``status: interrupted``: neither told nor evaluated as far
as the budget and dedup go) and the same candidate is enqueued again (``retry_of``), so
the next session re-runs it. Functions of the search core (:mod:`nas.search.core`);
Ray-free.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from ..run.ledger import LedgerEntry
from .live import LiveTrial

#: the search core (nas.search.core.SearchCore; not imported: core imports this module)
SearchCore = Any


def recover(core: SearchCore) -> int:
    """Trials an earlier driver left RUNNING: charged from their logs, told FAIL and
    re-enqueued. Only safe while holding the run's lock (no other driver tells them)."""
    n = 0
    for t in core.optuna.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial = optuna.trial.Trial(core.optuna, t._trial_id)
        events = core.run.read_log(t.number)
        starts = [e for e in events if e.get("event") == "start"]
        attrs: dict[str, Any] = {"hash": t.user_attrs.get("hash")}
        if starts:
            wall = max(0.0, float(events[-1]["t"]) - float(starts[-1]["t"]))
            attrs["wall_s"] = wall
            core.ledger.append(LedgerEntry.make(
                t.number, int(starts[-1].get("attempt", 1)), "interrupted", wall,
                core.devices, session=int(starts[-1].get("session", core.session)),
                executor_id=starts[-1].get("executor_id"), hash=attrs["hash"]))
        # A trial asked but never handed out (the driver died between the ask and the
        # write of its params) has no params in the database: re-run what was queued
        # for it (a neighbour, a baseline, a retry) if anything, else nothing.
        interrupt(core, trial, t.number, attrs,
                  params=t.params or t.system_attrs.get("fixed_params") or {})
        n += 1
    return n


def close_session(core: SearchCore) -> None:
    """The session ends: trials still running, and baseline twins waiting on them, were
    cut off by the stop."""
    for slot in list(core._live):
        live = core._live.pop(slot)
        finish_interrupted(core, live, live.wall(core.clock()))
    for h in list(core._waiting_dups):
        for trial in core._waiting_dups.pop(h):
            interrupt(core, trial, trial.number, {"hash": h})


def finish_interrupted(core: SearchCore, live: LiveTrial, wall: float) -> None:
    """A trial that ended without a verdict (the search stopped, or a study error)."""
    core._running_hashes.pop(live.hash, None)
    if live.attempt_start is not None:  # it ran: charge what it used
        core._charge(live, "interrupted", wall)
    interrupt(core, live.trial, live.number, {"hash": live.hash, "wall_s": wall,
                                              "kind": live.kind, "spec": live.spec})
    for trial in core._waiting_dups.pop(live.hash, []):
        interrupt(core, trial, trial.number, {"hash": live.hash})


def interrupt(core: SearchCore, trial: optuna.trial.Trial, number: int,
              attrs: dict[str, Any], params: dict[str, Any] | None = None) -> None:
    """FAIL an interrupted trial and enqueue the same candidate again (``params``,
    default the trial's): a baseline (its spec is carried), or a candidate with params;
    one without any was never sampled, so there is nothing to re-run."""
    params = dict(trial.params if params is None else params)
    carried = {k: v for k, v in trial.user_attrs.items()
               if k in ("kind", "baseline", "spec", "baseline_error", "in_space")}
    retry = bool(params) or carried.get("kind") == "baseline"
    attrs = {**attrs, "status": "interrupted", "interrupted": True,
             "message": "interrupted: the search stopped while it ran; " + (
                 "re-enqueued" if retry else "never handed out, nothing to re-run")}
    core._tell(trial, TrialState.FAIL, attrs)
    if not retry:
        return
    marks = {"retry_of": number}
    if carried.get("kind") == "baseline":
        marks.update(carried)
    core.optuna.enqueue_trial(params, user_attrs=marks)
