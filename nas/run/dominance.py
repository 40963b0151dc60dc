"""The one Pareto rule of a search: which points take part, what dominates, what the front
and the best trial are. ``nas status`` (:mod:`nas.run.summary`), ``nas pareto``,
``nas export``, ``nas rank``, ``nas report`` (:mod:`nas.results`) and the searcher's live
front (:class:`Front`) all ask this module and nothing else. Ray-free; it reads Optuna
FrozenTrials and plain values.

The rule:

- **Found points**: the search's own trials (not baselines) that are feasible -- COMPLETE
  with every constraint <= 0 (:func:`is_feasible`, Optuna's convention), so never
  stopped by ASHA -- not duplicates (an architecture counts once, at the trial that
  evaluated it) and measured on every objective compared (a finite value that is not a
  placeholder, :func:`told_values`).
- **Baselines**: each baseline's latest attempt in the search (``--with-baselines``; an
  interrupted attempt does not count); for a baseline the search did not evaluate, the
  seed means ``nas rank`` measured (RUN_DIR/rank.json, all seeds finished). A baseline
  takes part when it is feasible and measured on every objective.
- **Dominance** (:func:`dominates`): no worse on any objective and strictly better on
  one. Equal values dominate neither way.
- **The front**: the found points and baselines no other point (found or baseline)
  dominates. A found trial a baseline dominates is NOT on it (a hand-designed network
  beats it); it is listed with the baselines that beat it. Ties: points with equal
  values are all on the front (found or baseline), none is dropped for being second.
  Baselines on the front are shown, never counted as found, exported or picked.
- **Best**: the found trial on the front best on the primary (first) objective; equal
  primary values -> the lower trial number. The front is listed in that order, so the
  best is its first entry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: where ``nas rank`` saves its result in the run directory.
RANK_JSON = "rank.json"
RULE = ("one front over found trials and baselines: a found trial a baseline dominates is "
        "not on it, equal values are all kept, and neither the knee nor a best: pick "
        "returns a trial off it")


# --------------------------------------------------------------------------- values
def direction_sign(direction: str) -> float:
    """+1 for a minimised objective, -1 for a maximised one (the factor into min space)."""
    d = direction.lower()
    if d.startswith("min"):
        return 1.0
    if d.startswith("max"):
        return -1.0
    raise ValueError(f"direction {direction!r}: allowed: maximize, minimize")


def to_minimization(values: Sequence[float], directions: Sequence[str]) -> tuple[float, ...]:
    """``values`` with every maximised objective negated."""
    return tuple(direction_sign(d) * float(v) for v, d in zip(values, directions, strict=True))


def finite(v: Any) -> float | None:
    """A finite float, or None (the searcher stores non-finite numbers as strings)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def told_values(trial: Any, objective_metrics: Sequence[str]) -> dict[str, float]:
    """The objective values Optuna was told for ``trial``, by metric; placeholders (a
    value never measured, ``user_attrs["placeholders"]``) and non-finite values left out."""
    placeholders = set(trial.user_attrs.get("placeholders") or [])
    out: dict[str, float] = {}
    for metric, v in zip(objective_metrics, trial.values or [], strict=False):
        v = finite(v)
        if metric not in placeholders and v is not None:
            out[metric] = v
    return out


def measured(told: dict[str, float], metrics: dict[str, Any], metric: str) -> float | None:
    """A trial's value of ``metric``: the told objective value, else the one it recorded in
    ``user_attrs["metrics"]`` (e.g. ``params`` when it is no objective); None if never
    measured."""
    if metric in told:
        return told[metric]
    return finite(metrics.get(metric))


def is_feasible(trial: Any) -> bool:
    """Complete and every constraint <= 0 (Optuna's convention)."""
    return trial.state.name == "COMPLETE" and all(v <= 0 for v in trial.constraints.values())


# --------------------------------------------------------------------------- dominance
def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` Pareto-dominates ``b`` (minimisation): no worse anywhere, better somewhere."""
    strictly = False
    for x, y in zip(a, b, strict=True):
        if x > y:
            return False
        if x < y:
            strictly = True
    return strictly


def non_dominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (ties are all kept), in order."""
    return [i for i, p in enumerate(points)
            if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]


def pareto_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """Non-dominated sorting: rank 1 = the front, rank 2 = the front once rank 1 is
    removed, and so on (NSGA-II's ranks)."""
    ranks = [0] * len(points)
    left = list(range(len(points)))
    rank = 1
    while left:
        layer = [left[i] for i in non_dominated([points[k] for k in left])]
        for k in layer:
            ranks[k] = rank
        left = [k for k in left if k not in layer]
        rank += 1
    return ranks


class Front:
    """The front (module docstring) kept incrementally: found trials (keyed by trial
    number) and baselines together. A point with a non-finite value (a placeholder) never
    enters. Adding points one by one in any order gives the front of all of them."""

    def __init__(self, directions: Sequence[str]):
        self.directions = list(directions)
        self.points: dict[Any, tuple[float, ...]] = {}  # key -> values in min space
        self.baselines: set[Any] = set()  # keys of points that are baselines

    def add(self, key: Any, values: Sequence[float], *, baseline: bool = False) -> bool:
        """Add a point; returns whether it is on the front now."""
        if not all(math.isfinite(float(v)) for v in values):
            return False
        p = to_minimization(values, self.directions)
        if any(dominates(q, p) for q in self.points.values()):
            return False
        self.points = {k: q for k, q in self.points.items() if not dominates(p, q)}
        self.baselines &= set(self.points)
        self.points[key] = p
        if baseline:
            self.baselines.add(key)
        return True

    def found(self) -> list[Any]:
        """Keys of the found (not baseline) points on the front, the best first."""
        return sorted((k for k in self.points if k not in self.baselines),
                      key=lambda k: (self.points[k][0], k))

    def __len__(self) -> int:
        """Found trials on the front (baselines on it are not counted)."""
        return len(self.found())

    def best(self) -> tuple[Any, tuple[float, ...]] | None:
        """The best found point (module docstring) and its values in their own units."""
        found = self.found()
        if not found:
            return None
        key = found[0]
        return key, tuple(direction_sign(d) * v
                          for v, d in zip(self.points[key], self.directions, strict=True))


# --------------------------------------------------------------------------- a run
@dataclass
class Point:
    """One trial or baseline as the rule sees it."""

    key: int | str  # a found trial's number, or a baseline's name
    values: tuple[float, ...] | None  # in the objectives' own units; None: not measured
    baseline: bool = False
    feasible: bool = True


@dataclass
class RunFront:
    """The front of a run over some objectives (:func:`run_front`)."""

    metrics: list[str]
    directions: list[str]
    found: list[int]  # every found point (feasible, measured), by number
    values: dict[int | str, tuple[float, ...]]  # every measured point, own units
    front: list[int]  # found trials on the front, the best first
    baseline_front: list[str]  # baselines on the front
    rivals: list[str]  # the baselines that take part (feasible, measured)
    #: found trial -> the feasible baselines that dominate it
    beaten: dict[int, list[str]] = field(default_factory=dict)
    #: baseline (feasible or not, measured) -> the front trials that dominate it
    baseline_beaten_by: dict[str, list[int]] = field(default_factory=dict)
    #: found trials that only a baseline keeps off the front
    displaced: list[int] = field(default_factory=list)

    @property
    def best(self) -> int | None:
        return self.front[0] if self.front else None

    def to_min(self, values: Sequence[float]) -> tuple[float, ...]:
        return to_minimization(values, self.directions)

    def mins(self, key: int | str) -> tuple[float, ...]:
        """A point's values in minimisation space."""
        return self.to_min(self.values[key])

    def ranked(self) -> list[int]:
        """The found trials by Pareto rank over found trials and feasible baselines
        together (rank 1: the front), then the primary objective, then the number."""
        keys = [*self.found, *self.rivals]
        ranks = dict(zip(keys, pareto_ranks([self.mins(k) for k in keys]), strict=True))
        return sorted(self.found, key=lambda n: (ranks[n], self.mins(n)[0], n))


def run_points(trials: Iterable[Any], objective_metrics: Sequence[str],
               metrics: Sequence[str], rank: dict[str, Any] | None = None) -> list[Point]:
    """The points of a run (module docstring) over ``metrics``: its found trials and each
    baseline once (the search's latest attempt, else ``nas rank``'s seed means).
    ``objective_metrics``: the study's objectives, in the order Optuna was told them."""
    points: list[Point] = []
    baselines: dict[str, Point] = {}
    for t in trials:
        attrs = t.user_attrs
        told = told_values(t, objective_metrics)
        vals = [measured(told, attrs.get("metrics") or {}, m) for m in metrics]
        values = None if any(v is None for v in vals) else tuple(vals)
        if attrs.get("kind") == "baseline":
            if attrs.get("status") != "interrupted":
                name = str(attrs.get("baseline"))
                baselines[name] = Point(name, values, baseline=True, feasible=is_feasible(t))
        elif is_feasible(t) and attrs.get("duplicate_of") is None and values is not None:
            points.append(Point(t.number, values))
    for b in rank_baselines(rank, skip=set(baselines)):
        vals = [b["metrics"].get(m) for m in metrics]
        values = None if any(v is None for v in vals) else tuple(vals)
        baselines[b["name"]] = Point(b["name"], values, baseline=True, feasible=b["ok"])
    return points + list(baselines.values())


def run_front(points: Iterable[Point], metrics: Sequence[str],
              directions: Sequence[str]) -> RunFront:
    """The front, best, and what a baseline beats, of ``points`` (:func:`run_points`)."""
    points = list(points)
    front = Front(directions)
    for p in points:
        if p.values is not None and p.feasible:
            front.add(p.key, p.values, baseline=p.baseline)
    found = sorted(p.key for p in points
                   if not p.baseline and p.feasible and p.values is not None)
    rivals = [p.key for p in points if p.baseline and p.feasible and p.values is not None]
    out = RunFront(metrics=list(metrics), directions=list(directions), found=found,
                   values={p.key: p.values for p in points if p.values is not None},
                   front=front.found(),
                   baseline_front=[k for k in rivals if k in front.baselines],
                   rivals=rivals)
    for n in found:
        by = [b for b in rivals if dominates(out.mins(b), out.mins(n))]
        if by:
            out.beaten[n] = by
            if not any(dominates(out.mins(m), out.mins(n)) for m in found):
                out.displaced.append(n)
    for p in points:
        if p.baseline and p.values is not None:
            out.baseline_beaten_by[str(p.key)] = [
                n for n in out.front if dominates(out.mins(n), out.mins(p.key))]
    return out


# --------------------------------------------------------------------------- nas rank
def read_rank(run_path: str | Path) -> dict[str, Any] | None:
    """RUN_DIR/rank.json if ``nas rank`` was run (None if absent or unreadable)."""
    path = Path(run_path) / RANK_JSON
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def rank_baselines(rank: dict[str, Any] | None, skip: set[str]) -> list[dict[str, Any]]:
    """The baselines ``nas rank`` measured (not in ``skip``): name, status, hash, the mean
    over its finished seeds of each objective (``metrics``), ``ok`` (every seed finished)
    and ``seeds``/``runs`` counts."""
    if rank is None:
        return []
    names = [o["metric"] for o in rank.get("objectives", [])]
    out = []
    for row in rank.get("rows", []):
        if row.get("kind") != "baseline" or row["name"] in skip:
            continue
        runs = row.get("runs") or []
        means: dict[str, float] = {}
        for m in names:
            if m in row.get("metrics", {}):
                means[m] = float(row["metrics"][m]["mean"])
                continue
            vals = [r["metrics"][m] for r in runs if r.get("metrics", {}).get(m) is not None]
            if vals:  # e.g. the params of a baseline that broke a limit, never trained
                means[m] = sum(vals) / len(vals)
        out.append({"name": row["name"], "status": row.get("status", "?"),
                    "hash": row.get("hash"), "metrics": means,
                    "ok": bool(runs) and row.get("seeds_ok") == len(runs),
                    "seeds_ok": row.get("seeds_ok", 0), "runs": len(runs)})
    return out
