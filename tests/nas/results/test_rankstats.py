"""`nas rank`'s statistics against scipy on known inputs, and the property the old
"beyond the seed spread" rule lacked: more seeds give a sharper verdict."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from nas.results.rank import Row, compare_rows, seeds_guidance
from nas.results.rankstats import compare, describe, holm, judge, seeds_needed

FOUND = [0.912, 0.905, 0.921, 0.899, 0.915]
BASE = [0.901, 0.903, 0.905, 0.896, 0.900]


def test_describe_mean_std_sem():
    d = describe(FOUND)
    assert d["mean"] == pytest.approx(sum(FOUND) / 5)
    assert d["std"] == pytest.approx(stats.tstd(FOUND))
    assert d["sem"] == pytest.approx(stats.sem(FOUND))
    assert d["n"] == 5


def test_paired_test_matches_scipy_ttest_rel():
    r = compare(dict(enumerate(FOUND)), dict(enumerate(BASE)))
    ref = stats.ttest_rel(FOUND, BASE)
    assert r["test"] == "paired t" and r["df"] == 4 and r["n_pairs"] == 5
    assert r["t"] == pytest.approx(ref.statistic)
    assert r["p"] == pytest.approx(ref.pvalue)
    assert r["diff"] == pytest.approx(sum(FOUND) / 5 - sum(BASE) / 5)
    assert r["se"] == pytest.approx(stats.sem([a - b for a, b in zip(FOUND, BASE, strict=True)]))


def test_unpaired_seeds_use_welch_like_scipy():
    a = dict(zip([0, 1, 2, 3, 4], FOUND, strict=True))
    b = dict(zip([5, 6, 7], BASE[:3], strict=True))  # no seed in common
    r = compare(a, b)
    ref = stats.ttest_ind(FOUND, BASE[:3], equal_var=False)
    assert r["test"] == "Welch t"
    assert r["t"] == pytest.approx(ref.statistic)
    assert r["p"] == pytest.approx(ref.pvalue)
    assert r["df"] == pytest.approx(ref.df)


def test_a_difference_without_spread_is_exact():
    r = compare({0: 100.0, 1: 100.0}, {0: 300.0, 1: 300.0})
    assert r["p"] == 0.0 and r["diff"] == -200.0
    assert compare({0: 5.0, 1: 5.0}, {0: 5.0, 1: 5.0})["p"] == 1.0


def test_holm_matches_the_step_down_definition():
    p = [0.01, 0.04, 0.03, None, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 with m = 4: 4*0.005, 3*0.01, 2*0.03, 1*0.04, monotone
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, None, 0.02])


def _row(name, kind, accs):
    runs = [{"seed": s, "status": "ok", "metrics": {"accuracy": a}} for s, a in
            enumerate(accs)]
    return Row(name, kind, None, None, "ok", len(accs), {"accuracy": describe(accs)},
               runs=runs)


def test_more_seeds_tighten_the_verdict():
    """The same mean difference and the same spread: 3 seeds cannot tell, 12 can, and the
    guidance from 3 seeds says about how many it takes."""
    pattern_found, pattern_base = [0.90, 0.93, 0.91], [0.89, 0.90, 0.905]
    verdicts = {}
    for k in (1, 4):
        found = _row("trial 1", "found", pattern_found * k)
        base = _row("base", "baseline", pattern_base * k)
        tests = compare_rows([found, base], ["accuracy"], ["maximize"])
        verdicts[k] = tests[0]
        # the std does not shrink with seeds; the standard error does
        assert describe(pattern_found * k)["std"] == pytest.approx(
            describe(pattern_found)["std"], rel=0.25)
    few, many = verdicts[1], verdicts[4]
    assert few["diff"] == pytest.approx(many["diff"])
    assert many["se"] < few["se"] / 1.8
    assert not few["significant"] and few["verdict"] == "no significant difference"
    assert many["significant"] and many["verdict"] == "found better"
    assert 3 < few["seeds_needed"] <= 12
    guide = seeds_guidance([few], 3)
    assert guide["seeds"] == few["seeds_needed"] and "trial 1 vs base" in guide["text"]


def test_seeds_needed_is_the_smallest_n_where_the_test_has_the_power():
    r = {"test": "paired t", "diff": 0.01, "sd": 0.02}
    n = seeds_needed(r)
    crit = lambda m: stats.t.ppf(0.975, m - 1) + stats.t.ppf(0.8, m - 1)  # noqa: E731
    assert 0.01 / (0.02 / math.sqrt(n)) >= crit(n)
    assert 0.01 / (0.02 / math.sqrt(n - 1)) < crit(n - 1)
    assert seeds_needed({"test": "paired t", "diff": 0.0, "sd": 0.02}) is None


def test_judge_names_the_better_side_by_direction():
    faster = {"direction": "minimize", **compare({0: 1.0, 1: 1.1, 2: 1.05},
                                                 {0: 2.0, 1: 2.2, 2: 2.1})}
    judge([faster])
    assert faster["significant"] and faster["verdict"] == "found better"
