"""The knee of a Pareto front: the trade-off point a user would pick without a preference.

Definition (Das 1999, "normal boundary" knee): in NORMALISED minimisation space (each
objective scaled to [0, 1] over the front, 0 = best), take the hyperplane through the
extreme points (for each objective the front point best on it: in 2-D the line between
the two ends of the front) and pick the front point farthest from it on the side of
the ideal point (0, ..., 0). That is where giving up a little of one objective buys the
most of the others.

Fallbacks, so that every front has a knee: one point -> it; degenerate extremes (they
coincide or are collinear, so no hyperplane) or no point strictly on the ideal side
-> the point closest (Euclidean) to the ideal point. Ties -> the closer one to the ideal
point, then the first given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: distances closer than this count as equal (normalised units).
_EPS = 1e-12


def normalise(points: Sequence[Sequence[float]]) -> list[tuple[float, ...]]:
    """Each objective scaled to [0, 1] over ``points`` (a constant objective -> 0)."""
    d = len(points[0])
    lo = [min(p[k] for p in points) for k in range(d)]
    hi = [max(p[k] for p in points) for k in range(d)]
    return [tuple((p[k] - lo[k]) / (hi[k] - lo[k]) if hi[k] > lo[k] else 0.0
                  for k in range(d)) for p in points]


def knee_index(points: Sequence[Sequence[float]]) -> int:
    """Index of the knee among ``points`` (minimisation values of a front)."""
    if not points:
        raise ValueError("knee of an empty front")
    if len(points) == 1:
        return 0
    norm = normalise(points)
    ideal_dist = [math.sqrt(sum(v * v for v in p)) for p in norm]
    d = len(norm[0])
    extremes = [norm[min(range(len(norm)), key=lambda i, k=k: (norm[i][k], ideal_dist[i]))]
                for k in range(d)]
    normal = _normal(extremes)
    if normal is not None:
        e0 = extremes[0]
        # Orient the normal towards the ideal point (the origin).
        if sum(n * -e for n, e in zip(normal, e0, strict=True)) < 0:
            normal = [-n for n in normal]
        length = math.sqrt(sum(n * n for n in normal))
        dist = [sum(n * (x - e) for n, x, e in zip(normal, p, e0, strict=True)) / length
                for p in norm]
        best = max(dist)
        if best > _EPS:
            return min((i for i, v in enumerate(dist) if v >= best - _EPS),
                       key=lambda i: (ideal_dist[i], i))
    return min(range(len(norm)), key=lambda i: (ideal_dist[i], i))


def _normal(extremes: list[tuple[float, ...]]) -> list[float] | None:
    """A normal of the hyperplane through the extremes (2-D or 3-D), None if degenerate."""
    d = len(extremes)
    if d == 2:
        (x0, y0), (x1, y1) = extremes
        n = [-(y1 - y0), x1 - x0]
    elif d == 3:
        a = [extremes[1][k] - extremes[0][k] for k in range(3)]
        b = [extremes[2][k] - extremes[0][k] for k in range(3)]
        n = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
    else:
        return None
    return n if math.sqrt(sum(v * v for v in n)) > _EPS else None
