"""`nas rank`'s statistics against scipy on known inputs, and the property the old
"beyond the seed spread" rule lacked: more seeds give a sharper verdict."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from nas.results.rank import Row, compare_rows, dominance, seeds_guidance
from nas.results.rankstats import compare, describe, holm, judge, one_sided_p, seeds_needed

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


def test_seeds_guidance_names_the_next_separable_difference_and_counts_the_hopeless():
    def t(name: str, needed: int | None, significant: bool = False) -> dict:
        return {"found": name, "baseline": "base", "metric": "accuracy", "diff": 0.01,
                "sd": 0.02, "test": "paired t", "significant": significant,
                "seeds_needed": needed}

    tests = [t("hopeless", 5000), t("later", 40), t("next", 9), t("had the power", 3),
             t("zero", None), t("done", None, significant=True)]
    guide = seeds_guidance(tests, 5)
    assert guide["next"]["found"] == "next" and guide["seeds"] == 9
    assert guide["beyond_practical"] == 2  # 5000 seeds, and an exactly-zero difference
    assert "`nas rank --seeds 9`" in guide["text"] and "2 open difference(s)" in guide["text"]
    only_hopeless = seeds_guidance([t("hopeless", 5000)], 5)
    assert only_hopeless["seeds"] is None and "no practical number" in only_hopeless["text"]
    assert "every difference is significant" in seeds_guidance([tests[-1]], 5)["text"]


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


def _row2(name, kind, accs, lats):
    """A row with accuracy and latency per seed (latency compared on its p10)."""
    runs = [{"seed": s, "status": "ok", "metrics": {"accuracy": a, "latency_p10_ms": t}}
            for s, (a, t) in enumerate(zip(accs, lats, strict=True))]
    return Row(name, kind, None, None, "ok", len(accs),
               {"accuracy": describe(accs), "latency_p10_ms": describe(lats)}, runs=runs)


OBJ, DIRS = ["accuracy", "latency_ms"], ["maximize", "minimize"]


def test_one_sided_p_is_scipys_one_sided_paired_test():
    acc = {"direction": "maximize", **compare(dict(enumerate(FOUND)), dict(enumerate(BASE)))}
    lat = {"direction": "minimize", **compare(dict(enumerate(FOUND)), dict(enumerate(BASE)))}
    assert one_sided_p(acc) == pytest.approx(
        stats.ttest_rel(FOUND, BASE, alternative="greater").pvalue)
    # minimising: "found better" is found < baseline, here the wrong side
    assert one_sided_p(lat) == pytest.approx(
        stats.ttest_rel(FOUND, BASE, alternative="less").pvalue)
    assert one_sided_p(lat) > 0.95
    exact = {"direction": "minimize", **compare({0: 1.0, 1: 1.0}, {0: 2.0, 1: 2.0})}
    assert one_sided_p(exact) == 0.0
    assert one_sided_p({**exact, "direction": "maximize"}) == 1.0


def test_dominance_is_an_intersection_union_test_holm_corrected_across_pairs():
    """The pair's p-value is the largest one-sided p of its objectives; the pairs are
    Holm-corrected together. Three seeds, t 6.5 on accuracy and 13 on latency: the rule
    that needed every two-sided test to survive Holm across pairs AND objectives could
    not say it."""
    found = _row2("trial 1", "found", [0.85, 0.87, 0.86], [5.0, 5.1, 4.95])
    strong = _row2("weak", "baseline", [0.74, 0.72, 0.67], [7.6, 8.1, 8.35])
    # more accurate by far but slower: never dominated, whatever the accuracy says
    fast = _row2("fast", "baseline", [0.50, 0.53, 0.505], [2.0, 2.2, 2.05])
    close = _row2("close", "baseline", [0.84, 0.88, 0.85], [5.2, 5.0, 5.1])
    rows = [found, strong, fast, close]
    tests = compare_rows(rows, OBJ, DIRS)
    pairs = dominance(rows, tests, len(OBJ))
    by = {p["baseline"]: p for p in pairs}
    raw = {}
    for name, b in (("weak", strong), ("fast", fast), ("close", close)):
        fa, fl = ([r["metrics"][k] for r in found.runs] for k in ("accuracy", "latency_p10_ms"))
        ba, bl = ([r["metrics"][k] for r in b.runs] for k in ("accuracy", "latency_p10_ms"))
        raw[name] = max(stats.ttest_rel(fa, ba, alternative="greater").pvalue,
                        stats.ttest_rel(fl, bl, alternative="less").pvalue)
        assert by[name]["p"] == pytest.approx(raw[name])
    assert by["fast"]["weakest"] == "latency_ms" and by["fast"]["p"] > 0.5
    assert by["weak"]["weakest"] == "accuracy"
    adjusted = holm([raw["weak"], raw["fast"], raw["close"]])
    assert [by[n]["p_holm"] for n in ("weak", "fast", "close")] == pytest.approx(adjusted)
    assert by["weak"]["dominates"] and found.dominates == ["weak"]
    assert not by["fast"]["dominates"] and not by["close"]["dominates"]
    # the per-objective verdicts (two-sided, Holm across 6 tests) do not all say "better"
    weak_tests = [t for t in tests if t["baseline"] == "weak"]
    assert not all(t["verdict"] == "found better" for t in weak_tests)


def test_a_pair_missing_an_objective_is_not_judged():
    found = _row2("trial 1", "found", [0.85, 0.87, 0.86], [5.0, 5.1, 4.95])
    base = _row2("b", "baseline", [0.70, 0.72, 0.71], [8.0, 8.2, 8.1])
    for run in base.runs:
        del run["metrics"]["latency_p10_ms"]  # latency never measured
    tests = compare_rows([found, base], OBJ, DIRS)
    (pair,) = dominance([found, base], tests, len(OBJ))
    assert pair["p"] is None and pair["p_holm"] is None and not pair["dominates"]
    assert found.dominates == []
