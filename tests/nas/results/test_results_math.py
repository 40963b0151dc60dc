"""nas.results math: dominance, non-dominated filtering, exact hypervolume (against two
independent brute-force computations and Optuna's WFG), the knee, the reference point,
and the seed-spread dominance of ``nas rank``."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.results.front import reference_point
from nas.results.hypervolume import hypervolume
from nas.results.knee import knee_index
from nas.results.records import ObjectiveRef
from nas.run.dominance import dominates, non_dominated, pareto_ranks, to_minimization


# --------------------------------------------------------------------------- brute force
def hv_grid(points, ref):
    """Exact hypervolume by coordinate compression: the grid of all point coordinates
    splits space into boxes; a box counts when some point weakly dominates its lower
    corner. Independent of the sweep/slicing code under test."""
    pts = [p for p in points if all(v < r for v, r in zip(p, ref, strict=True))]
    if not pts:
        return 0.0
    axes = [sorted({p[k] for p in pts} | {ref[k]}) for k in range(len(ref))]
    total = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        lower = [axes[k][i] for k, i in enumerate(cell)]
        if any(all(p[k] <= lower[k] for k in range(len(ref))) for p in pts):
            total += math.prod(axes[k][i + 1] - axes[k][i] for k, i in enumerate(cell))
    return total


def hv_inclusion_exclusion(points, ref):
    """Exact hypervolume as the measure of a union of boxes [p, ref] by
    inclusion-exclusion over all subsets (small fronts only)."""
    pts = [p for p in points if all(v < r for v, r in zip(p, ref, strict=True))]
    total = 0.0
    for size in range(1, len(pts) + 1):
        for subset in itertools.combinations(pts, size):
            corner = [max(p[k] for p in subset) for k in range(len(ref))]
            vol = math.prod(max(0.0, r - c) for r, c in zip(ref, corner, strict=True))
            total += (-1) ** (size + 1) * vol
    return total


coord = st.integers(min_value=0, max_value=12).map(float)


def point_sets(dim, max_size):
    return st.lists(st.tuples(*[coord] * dim), min_size=1, max_size=max_size)


# --------------------------------------------------------------------------- hypervolume
def test_hypervolume_of_a_hand_computed_staircase():
    # Strips: (2-1)*(4-3) + (3-2)*(4-2) + (4-3)*(4-1) = 1 + 2 + 3.
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(6.0)
    # A dominated point and a point beyond the reference change nothing.
    assert hypervolume([(1, 3), (2, 2), (3, 1), (3, 3), (0, 5)], (4, 4)) == pytest.approx(6.0)
    # One box in 3-D.
    assert hypervolume([(1, 2, 3)], (2, 4, 7)) == pytest.approx(1 * 2 * 4)
    assert hypervolume([], (1, 1)) == 0.0


@settings(max_examples=60, deadline=None)
@given(point_sets(2, 9))
def test_hypervolume_2d_matches_brute_force(points):
    ref = (10.0, 10.0)
    hv = hypervolume(points, ref)
    assert hv == pytest.approx(hv_grid(points, ref), abs=1e-9)
    assert hv == pytest.approx(hv_inclusion_exclusion(points, ref), abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(point_sets(3, 7))
def test_hypervolume_3d_matches_brute_force(points):
    ref = (10.0, 11.0, 12.0)
    hv = hypervolume(points, ref)
    assert hv == pytest.approx(hv_grid(points, ref), abs=1e-9)
    assert hv == pytest.approx(hv_inclusion_exclusion(points, ref), abs=1e-9)


def test_hypervolume_matches_optunas_wfg_on_real_valued_fronts():
    from optuna._hypervolume import compute_hypervolume

    rng = random.Random(3)
    for dim in (2, 3):
        for _ in range(15):
            pts = [tuple(rng.uniform(0, 1) for _ in range(dim)) for _ in range(rng.randint(1, 25))]
            ref = tuple(1.1 for _ in range(dim))
            ours = hypervolume(pts, ref)
            theirs = compute_hypervolume(np.array(pts), np.array(ref))
            assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


def test_maximised_objectives_are_flipped_before_the_volume():
    # accuracy (max) vs latency (min): (0.9, 2) and (0.5, 1), reference (0, 4):
    # 0.9 * (4 - 2) + 0.5 * (2 - 1) = 2.3
    dirs = ["maximize", "minimize"]
    pts = [to_minimization(p, dirs) for p in [(0.9, 2.0), (0.5, 1.0)]]
    assert hypervolume(pts, to_minimization((0.0, 4.0), dirs)) == pytest.approx(2.3)


# --------------------------------------------------------------------------- dominance
@settings(max_examples=60, deadline=None)
@given(point_sets(3, 12))
def test_non_dominated_is_exactly_the_undominated_points(points):
    keep = set(non_dominated(points))
    for i, p in enumerate(points):
        dominated = any(dominates(q, p) for q in points)
        assert (i in keep) == (not dominated)


@settings(max_examples=40, deadline=None)
@given(point_sets(2, 12))
def test_pareto_ranks_layers(points):
    ranks = pareto_ranks(points)
    for i, p in enumerate(points):
        # Nothing of the same or a worse rank dominates p; something one rank better does.
        assert not any(dominates(points[j], p) for j in range(len(points))
                       if ranks[j] >= ranks[i])
        if ranks[i] > 1:
            assert any(dominates(points[j], p) for j in range(len(points))
                       if ranks[j] == ranks[i] - 1)


def test_dominates_needs_a_strict_improvement():
    assert dominates((1, 2), (1, 3))
    assert not dominates((1, 2), (1, 2))
    assert not dominates((0, 3), (1, 2))


# --------------------------------------------------------------------------- knee
def test_knee_is_the_bulge_of_a_convex_front():
    front = [(0.0, 1.0), (0.1, 0.6), (0.2, 0.2), (0.6, 0.1), (1.0, 0.0)]
    assert knee_index(front) == 2


def test_knee_ignores_units_and_order():
    front = [(0.0, 1.0), (0.1, 0.6), (0.2, 0.2), (0.6, 0.1), (1.0, 0.0)]
    scaled = [(x * 1000.0 + 5, y * 0.001) for x, y in front]
    order = [3, 0, 4, 2, 1]
    assert knee_index([scaled[i] for i in order]) == order.index(2)


def test_knee_on_a_straight_front_is_the_point_nearest_the_ideal():
    # All points on the line between the extremes: no bulge; the middle one is nearest
    # (0, 0) in normalised space.
    front = [(0.0, 1.0), (0.25, 0.75), (0.5, 0.5), (1.0, 0.0)]
    assert knee_index(front) == 2
    assert knee_index([(3.0, 4.0)]) == 0


def test_knee_in_three_objectives():
    # Extremes on the axes' unit points; (0.2, 0.2, 0.2) is farthest below their plane.
    front = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.2, 0.2, 0.2), (0.5, 0.4, 0.05)]
    assert knee_index(front) == 3


# --------------------------------------------------------------------------- reference
def test_reference_point_rules():
    objs = [ObjectiveRef("accuracy", "maximize"), ObjectiveRef("latency_ms", "minimize"),
            ObjectiveRef("params", "minimize")]
    feasible = [[0.5, 2.0, 100.0], [0.9, 4.0, 300.0]]
    ref, rules = reference_point(objs, feasible, {"latency_ms": 10.0})
    assert ref == [0.0, 10.0, pytest.approx(300.0 + 0.1 * 200.0)]
    assert "constraint" in rules[1] and "10%" in rules[2]
    # Every feasible point is strictly inside the reference box (adds volume).
    dirs = [o.direction for o in objs]
    r = to_minimization(ref, dirs)
    for p in feasible:
        assert all(v < rv for v, rv in zip(to_minimization(p, dirs), r, strict=True))
