"""The bookkeeping behind the evidence benchmarks, on small synthetic inputs: hypervolume
against device time (search_efficiency), the in-process ASHA rule against Ray's own
bracket, the ms-per-GMAC fit (latency_fidelity), the ASHA rung epochs and the fidelity
statistics (proxy_fidelity). No timings: the benchmarks measure, these check the
arithmetic they report with."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import _fidelity_stats as fs  # noqa: E402
import _hv_curves as hv  # noqa: E402
import latency_fidelity as lf  # noqa: E402
import proxy_fidelity as pf  # noqa: E402
import search_efficiency as se  # noqa: E402

DIRS = ("maximize", "minimize")  # accuracy up, latency down
REF = (0.1, 20.0)


def test_hypervolume_curve_steps_with_cost_and_only_feasible_points_count():
    events = [
        se.Event(10.0, (0.9, 5.0)),    # (0.9 - 0.1) * (20 - 5) = 12
        se.Event(5.0, None),           # infeasible / stopped: costs, adds nothing
        se.Event(5.0, (0.95, 10.0)),   # union with the first box: 12 + 8.5 - 8 = 12.5
        se.Event(2.0, (0.85, 6.0)),    # dominated by (0.9, 5): unchanged
        se.Event(3.0, (0.05, 1.0)),    # worse than the reference accuracy: unchanged
    ]
    curve = hv.hypervolume_curve(events, DIRS, REF)
    assert [t for t, _ in curve] == [0.0, 10.0, 15.0, 20.0, 22.0, 25.0]
    assert [hv for _, hv in curve] == pytest.approx([0.0, 12.0, 12.0, 12.5, 12.5, 12.5])


def test_value_at_first_reach_and_mean_curve_read_the_step_function():
    a = [(0.0, 0.0), (10.0, 1.0), (30.0, 3.0)]
    b = [(0.0, 0.0), (20.0, 2.0)]
    assert hv.value_at(a, 9.99) == 0.0
    assert hv.value_at(a, 10.0) == 1.0
    assert hv.value_at(a, 100.0) == 3.0
    assert hv.first_reach(a, 2.0) == 30.0
    assert hv.first_reach(a, 3.5) is None
    assert hv.mean_curve([a, b], [0.0, 10.0, 20.0, 30.0]) == [
        (0.0, 0.0), (10.0, 0.5), (20.0, 1.5), (30.0, 2.5)]


def test_median_fraction_counts_a_seed_that_never_reaches_as_late():
    # 5 seeds, one never reaches: the median is the third of (0.1, 0.2, 0.3, 0.9, inf).
    m = hv.median_fraction([0.3, None, 0.1, 0.9, 0.2])
    assert m["median"] == pytest.approx(0.3)
    assert (m["n"], m["reached"]) == (5, 4)
    lo, hi = m["ci"]
    assert 0.1 <= lo <= 0.3  # an order statistic of the resampled medians
    # A resample draws the never-reaching seed 3+ times of 5 with probability 0.058 > 2.5%,
    # so the 95% interval's top is "never": one seed in five that fails is not noise.
    assert hi is None
    # Three of five never reach: the median is "never", and so is the interval's top.
    m = hv.median_fraction([None, 0.2, None, None, 0.1])
    assert m["median"] is None and m["ci"][1] is None and m["reached"] == 2
    # All seeds equal: the interval has no width.
    assert hv.median_fraction([0.25] * 5)["ci"] == [0.25, 0.25]


def test_own_proposals_leave_the_start_baselines_out_but_pay_for_them():
    """A search that starts from baselines: its sampler's own proposals are judged
    without the start trials' points, whose cost is still spent."""
    sd = {"sampler": {"start_from": ["a.yaml", "b.yaml"]}, "baselines": ["a.yaml", "b.yaml",
                                                                          "c.yaml"]}
    assert se.start_trials(sd) == 2
    assert se.start_trials({**sd, "with_baselines": True}) == 3
    assert se.start_trials({"sampler": {}, "baselines": ["a.yaml"]}) == 0
    run = {"seed": 0, "start_trials": 1, "events": [
        se.Event(10.0, (0.9, 5.0), 0),    # the start baseline: 12 alone
        se.Event(10.0, (0.5, 10.0), 1),   # the sampler's: (0.4 * 10) = 4
        se.Event(10.0, (0.95, 15.0), 2),  # 4 + 0.85 * 5 - 0.4 * 5 = 6.25
    ]}
    own = se.own_proposals([run], {0: 5.0}, list(DIRS), list(REF), budget_s=40.0)
    assert own["final_hv"] == [pytest.approx(6.25)]
    # reaches 5.0 with the third trial, at 30 s of 40: the start trial's 10 s counted
    assert own["per_seed_fraction_to_same_seed_random_final"] == [pytest.approx(0.75)]
    # with the baseline's point the target was reached after the first trial
    assert hv.first_reach(hv.hypervolume_curve(run["events"], DIRS, REF), 5.0) == 10.0


def test_reference_points_chance_limits_and_nadir():
    from nas.study import load_study

    study = load_study(None)  # digits: accuracy (max), latency_ms (min, constrained)
    points = [(0.9, 3.0), (0.97, 7.5), (0.5, 1.0)]
    assert se.default_reference(study, points) == [
        pytest.approx(1 / study.classes), study.constraints["latency_ms"]]
    assert se.nadir(points, DIRS) == [0.5, 7.5]


def test_strategy_studies_change_only_the_sampler_or_objectives():
    from nas.study import load_study

    base = load_study(None).to_dict()
    rnd = se.strategy_study(base, "random", None)
    tpe = se.strategy_study(base, "tpe-primary", None)
    assert rnd["sampler"]["name"] == "random" and rnd["objectives"] == base["objectives"]
    assert tpe["sampler"]["name"] == "tpe" and tpe["objectives"] == base["objectives"][:1]
    assert rnd["training"] == base["training"] and tpe["constraints"] == base["constraints"]
    custom = se.strategy_study(base, "p8", {"sampler": {"options": {"population_size": 8}}})
    assert custom["sampler"] == {**base["sampler"], "options": {"population_size": 8}}
    load_study(custom)  # still a valid study


def test_ms_per_gmac_fit_recovers_a_known_line_and_its_residuals():
    gmacs = [0.01, 0.1, 0.5, 2.0, 5.0]
    lat = [1.5 + 40.0 * g for g in gmacs]
    fit = lf.fit_ms_per_gmac(gmacs, lat)
    assert fit["ms_per_gmac"] == pytest.approx(40.0)
    assert fit["overhead_ms"] == pytest.approx(1.5)
    assert fit["max_abs_residual"] == pytest.approx(0.0, abs=1e-9)
    # one point 10% slow: its residual says so (predicted below measured)
    lat[2] *= 1.1
    fit = lf.fit_ms_per_gmac(gmacs, lat)
    assert fit["residuals"][2] < -0.05
    assert lf.spearman(gmacs, lat) == pytest.approx(1.0)


def test_asha_rung_epochs_below_the_last_epoch():
    assert fs.rung_epochs(4, 1, 2) == [1, 2]
    assert fs.rung_epochs(9, 1, 3) == [1, 3]
    assert fs.rung_epochs(2, 2, 2) == []


def test_proxy_variant_parsing_types_values_and_rejects_unknown_keys():
    assert pf.parse_variant("fast:epochs=6,lr=0.1,schedule=constant") == (
        "fast", {"epochs": 6, "lr": 0.1, "schedule": "constant"})
    # exponents without a dot are numbers too (YAML 1.1 alone would keep "2e-3" a string)
    assert pf.parse_variant("adam:optimizer=adamw,lr=2e-3,weight_decay=5.0e-4") == (
        "adam", {"optimizer": "adamw", "lr": 0.002, "weight_decay": 0.0005})
    with pytest.raises(SystemExit, match="not a training key"):
        pf.parse_variant("bad:epoch=6")


def test_proxy_correlations_report_each_single_seed_beside_the_seed_mean():
    """Seed 0's proxy ranks the architectures like the reference, seed 1's in reverse: the
    single-seed correlations are +1 and -1, whatever the mean of the two does."""
    ref = [0.90, 0.92, 0.95, 0.97, 0.99]
    archs = []
    for i, r in enumerate(ref):
        hists = [[0.5, 0.6 + 0.01 * i], [0.5, 0.7 - 0.01 * i]]
        archs.append({"reference_acc": r, "proxy_acc_per_seed": hists,
                      "proxy_acc": [(a + b) / 2 for a, b in zip(*hists, strict=True)]})
    out = fs.correlations(archs, epochs=2, rungs=[1], seed=0)
    assert out["n"] == 5
    assert out["epoch 2 (final)"]["single_seed"] == pytest.approx([1.0, -1.0])
    assert out["epoch 1 (rung)"]["spearman"] is None  # every rung value is 0.5: no ranking


def test_reference_split_half_reliability_and_its_attenuation_ceiling():
    """Four reference seeds: halves that rank alike give reliability 1 and ceiling 1;
    a second half in reverse order gives a negative split-half and reliability 0."""
    base = [0.90, 0.92, 0.95, 0.97, 0.99]
    same = fs.split_half([base, base, base, base], seed=0)
    assert same["spearman"] == pytest.approx(1.0)
    assert same["reliability_all_seeds"] == pytest.approx(1.0)
    assert same["ceiling"] == pytest.approx(1.0)
    flipped = fs.split_half([base, base, base[::-1], base[::-1]], seed=0)
    assert flipped["spearman"] == pytest.approx(-1.0)
    assert flipped["reliability_all_seeds"] == 0.0 and flipped["ceiling"] == 0.0
    half = fs.split_half([[0.9, 0.95, 0.92, 0.99, 0.97], [0.91, 0.94, 0.93, 0.98, 0.97],
                          [0.9, 0.93, 0.95, 0.99, 0.96], [0.92, 0.95, 0.94, 0.97, 0.98]], 0)
    # halves (0.905, 0.945, 0.925, 0.985, 0.97) and (0.91, 0.94, 0.945, 0.98, 0.97):
    # ranks 1 3 2 5 4 and 1 2 3 5 4, rho = 1 - 6 * 2 / (5 * 24) = 0.9
    assert half["spearman"] == pytest.approx(0.9)
    assert half["reliability_all_seeds"] == pytest.approx(2 * 0.9 / 1.9)
    assert fs.split_half([base, base, base], seed=0) is None  # fewer than 4 seeds
