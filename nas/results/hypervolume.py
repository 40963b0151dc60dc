"""The exact hypervolume of a point set (what dominates: :mod:`nas.run.dominance`).

Everything here works in MINIMISATION space: a maximised objective is flipped (``-v``)
by :func:`nas.run.dominance.to_minimization` before it gets here, so one convention covers
accuracy (max) and latency (min) alike. Pure Python on small fronts (a search keeps tens
of points); no Optuna, no NumPy needed, so the tests can compare against independent
computations.

The hypervolume is exact in any dimension: a 2-D sweep, and for d >= 3 slicing along
the last objective (the hypervolume of a slab is the (d-1)-D hypervolume of the points
below it times the slab's height; "HSO"). Cost O(n^d log n): fine for 2-3 objectives and
fronts of hundreds of points, which is what a study has.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..run.dominance import non_dominated

Point = Sequence[float]


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The exact volume dominated by ``points`` and bounded by ``reference``
    (minimisation). Points not strictly better than the reference in every objective
    add nothing. Any dimension >= 1."""
    ref = tuple(float(r) for r in reference)
    inside = [tuple(float(v) for v in p) for p in points
              if all(v < r for v, r in zip(p, ref, strict=True))]
    if not inside:
        return 0.0
    return _hv(inside, ref)


def _hv(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    d = len(ref)
    if d == 1:
        return ref[0] - min(p[0] for p in points)
    if d == 2:
        return _hv2(points, ref)
    # Slice along the last objective: between consecutive levels z_i < z_{i+1}, the
    # dominated region's cross-section is what the points with z <= z_i dominate.
    pts = sorted(points, key=lambda p: p[-1])
    total = 0.0
    for i, p in enumerate(pts):
        top = pts[i + 1][-1] if i + 1 < len(pts) else ref[-1]
        height = top - p[-1]
        if height > 0:
            below = [q[:-1] for q in pts[:i + 1]]
            total += height * _hv(_nd(below), ref[:-1])
    return total


def _hv2(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    # Sweep by x; each point on the staircase adds its strip up to the next x.
    pts = sorted(points)
    total, best_y = 0.0, ref[1]
    stairs = []
    for x, y in pts:
        if y < best_y:
            stairs.append((x, y))
            best_y = y
    for i, (x, y) in enumerate(stairs):
        nxt = stairs[i + 1][0] if i + 1 < len(stairs) else ref[0]
        total += (nxt - x) * (ref[1] - y)
    return total


def _nd(points: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    """Non-dominated subset (distinct points), which keeps the recursion small."""
    unique = list(dict.fromkeys(points))
    return [unique[i] for i in non_dominated(unique)]
