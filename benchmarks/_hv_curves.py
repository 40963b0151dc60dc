"""Hypervolume against device time, as benchmarks/search_efficiency.py reads a search:
the step curve of one run, its value and first crossing, the mean over runs, and the
median budget fraction over seeds with a bootstrap interval (the issue's headline)."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from typing import Any

from _search_runs import Event


def hypervolume_curve(events: Sequence[Event], directions: Sequence[str],
                      reference: Sequence[float]) -> list[tuple[float, float]]:
    """[(cumulative cost, hypervolume of the points seen so far)], starting at (0, 0).

    ``directions``: "maximize"/"minimize" per objective; ``reference``: in the objectives'
    own units (a point not strictly better than it in every objective adds nothing)."""
    from nas.results.hypervolume import hypervolume
    from nas.run.dominance import non_dominated, to_minimization

    ref = to_minimization(reference, directions)
    front: list[tuple[float, ...]] = []
    t, hv = 0.0, 0.0
    curve = [(0.0, 0.0)]
    for e in events:
        t += float(e.cost_s)
        if e.point is not None:
            front.append(to_minimization(e.point, directions))
            front = [front[i] for i in non_dominated(front)]
            hv = hypervolume(front, ref)
        curve.append((t, hv))
    return curve


def value_at(curve: Sequence[tuple[float, float]], t: float) -> float:
    """The curve (a step function) at cost ``t``: the last value reached by then."""
    value = 0.0
    for time_s, hv in curve:
        if time_s > t:
            break
        value = hv
    return value


def first_reach(curve: Sequence[tuple[float, float]], target: float) -> float | None:
    """The first cost at which the curve is >= ``target`` (None: never)."""
    for time_s, hv in curve:
        if hv >= target:
            return time_s
    return None


def mean_curve(curves: Sequence[Sequence[tuple[float, float]]],
               grid: Sequence[float]) -> list[tuple[float, float]]:
    """The mean over runs of the step curves, on ``grid``."""
    return [(t, statistics.fmean(value_at(c, t) for c in curves)) for t in grid]


def median_fraction(fractions: Sequence[float | None], seed: int = 0, n: int = 4000,
                    level: float = 0.95) -> dict[str, Any]:
    """The median over seeds of the budget fraction at which a run first reached the
    target, a seed that never did counted as infinitely late (so the median is None when
    half the seeds never reach it), and a percentile bootstrap interval resampling seeds.
    With 5 seeds the interval is coarse (its ends are order statistics): say so, not less."""
    values = [math.inf if f is None else float(f) for f in fractions]
    if not values:
        return {"median": None, "ci": None, "level": level, "n": 0}

    def finite(x: float) -> float | None:
        return None if math.isinf(x) else x

    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choice(values) for _ in values)
                     for _ in range(n))
    lo = medians[int((1 - level) / 2 * n)]
    hi = medians[min(n - 1, int((1 + level) / 2 * n))]
    return {"median": finite(statistics.median(values)), "ci": [finite(lo), finite(hi)],
            "level": level, "n": len(values),
            "reached": sum(not math.isinf(v) for v in values)}
