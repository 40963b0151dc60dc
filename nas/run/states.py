"""How a search's trials are read back from Optuna: categories, feasibility, the front.

Ray-free, so ``nas status`` and the results commands can use it without starting Ray.
The searcher (nas.search.searcher) writes these user attributes on every trial; everything in
them is a plain JSON value, so the study opens in optuna-dashboard as is:

- ``kind``: "search" or "baseline" (``baseline``: its name, e.g. "zoo:resnet18-cifar")
- ``spec``: the model spec dict; ``hash``: its canonical hash
- ``status``: what happened: ok, infeasible, oom, stopped, diverged, error,
  worker_died, interrupted, invalid, duplicate
- ``duplicate_of``: the trial that evaluated the same architecture (no training)
- ``metrics``, ``violations``, ``message``, ``epochs_done``, ``curve`` (primary metric per
  epoch), ``wall_s``, ``check_s``, ``device_s``, ``devices``, ``attempts``,
  ``provenance`` (device, torch, precision, batch_size, seed), ``placeholders`` (objective
  values that are stand-ins, e.g. accuracy 0 for a candidate never trained)
- ``retry_of``: the interrupted trial this one re-runs
- ``admission``: the budget policy's inputs when the trial was started (spent, expected
  cost, running, told, limit; seconds or trials); ``pre_training_s``: wall time before
  the first epoch (checks + model build; what a trial stopped by ASHA has instead of
  ``check_s``); ``session``, ``ray_trial_id``, ``seed``

Categories (``category``): complete (feasible, full fidelity), infeasible (broke a hard
constraint or ran out of memory: never trained / cut off), stopped (by ASHA: told PRUNED),
failed (error, NaN loss, worker died twice, interrupted), duplicate, running, waiting.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

CATEGORIES = ("complete", "infeasible", "stopped", "failed", "duplicate", "running",
              "waiting")


def category(trial: Any) -> str:
    """The category of an Optuna FrozenTrial."""
    state = trial.state.name
    if trial.user_attrs.get("duplicate_of") is not None and state != "RUNNING":
        return "duplicate"
    if state == "RUNNING":
        return "running"
    if state == "WAITING":
        return "waiting"
    if state == "PRUNED":
        return "stopped"
    if state == "FAIL":
        return "failed"
    return "complete" if is_feasible(trial) else "infeasible"


def is_feasible(trial: Any) -> bool:
    """Complete and every constraint <= 0 (Optuna's convention)."""
    return trial.state.name == "COMPLETE" and all(v <= 0 for v in trial.constraints.values())


def counts(trials: Iterable[Any]) -> dict[str, int]:
    out = dict.fromkeys(CATEGORIES, 0)
    n = 0
    for t in trials:
        out[category(t)] += 1
        n += 1
    out["total"] = n
    return out


def dominates(a: Sequence[float], b: Sequence[float], signs: Sequence[float]) -> bool:
    """``a`` Pareto-dominates ``b``; ``signs`` +1 for maximise, -1 for minimise."""
    better = False
    for x, y, s in zip(a, b, signs, strict=True):
        if s * x < s * y:
            return False
        if s * x > s * y:
            better = True
    return better


class Front:
    """An incrementally kept Pareto front of (key, values) points, found trials and
    baselines together (one dominance rule, see :func:`front_trials`): a found trial a
    baseline dominates leaves the front like one a found trial dominates."""

    def __init__(self, directions: Sequence[str]):
        self.signs = [1.0 if d.lower().startswith("max") else -1.0 for d in directions]
        self.points: dict[Any, tuple[float, ...]] = {}
        self.baselines: set[Any] = set()  # keys of points that are baselines

    def add(self, key: Any, values: Sequence[float], *, baseline: bool = False) -> bool:
        """Add a point; returns whether it is on the front now."""
        values = tuple(float(v) for v in values)
        for other in self.points.values():
            if other == values or dominates(other, values, self.signs):
                return False
        self.points = {k: v for k, v in self.points.items()
                       if not dominates(values, v, self.signs)}
        self.baselines &= set(self.points)
        self.points[key] = values
        if baseline:
            self.baselines.add(key)
        return True

    def found(self) -> list[Any]:
        """Keys of the found (not baseline) points on the front."""
        return [k for k in self.points if k not in self.baselines]

    def __len__(self) -> int:
        """Found trials on the front (baselines on it are not counted)."""
        return len(self.found())

    def best(self) -> tuple[Any, tuple[float, ...]] | None:
        """The found front point best on the first objective."""
        found = self.found()
        if not found:
            return None
        return max(((k, self.points[k]) for k in found), key=lambda kv: self.signs[0] * kv[1][0])


def front_trials(trials: Iterable[Any], directions: Sequence[str]) -> list[Any]:
    """Feasible, complete, non-duplicate FOUND trials on the Pareto front, by number.

    The front is taken over the found trials and the baselines evaluated in the search
    together: a found trial that a baseline dominates is not on it (a hand-designed
    network beats it), and the baselines themselves are not returned."""
    front = Front(directions)
    by_number = {}
    for t in trials:
        if category(t) == "complete" and t.values is not None:
            by_number[t.number] = t
            front.add(t.number, t.values, baseline=t.user_attrs.get("kind") == "baseline")
    return [by_number[k] for k in sorted(front.found())]
