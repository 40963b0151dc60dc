"""The statistics of ``nas rank``: is a found architecture really better than a baseline?

Per architecture and metric: mean, sample standard deviation and standard error of the
mean (``sem = std / sqrt(n)``) over the seeds whose evaluation finished.

Per (found, baseline) pair and objective: the difference ``found - baseline`` of the
means and its standard error, then a two-sided test of "no difference":

- PAIRED t-test when both were evaluated with the same seeds (``nas rank`` runs every
  architecture with seeds 0..N-1, so a seed's data order and initialisation pair up):
  ``d_i = found_i - baseline_i`` over the shared seeds, ``se = sd(d) / sqrt(n)``,
  ``t = mean(d) / se``, ``n - 1`` degrees of freedom;
- WELCH's t-test (unequal variances, Welch-Satterthwaite degrees of freedom) when fewer
  than 2 seeds pair up but each side has 2 or more;
- a difference that does not vary at all (``se == 0``, e.g. parameter counts) is exact:
  p = 0 if it is not zero, 1 if it is.

The p-values of all tests of one ranking (every pair, every objective) are corrected
together with Holm's step-down method (family-wise error rate ``alpha``, default 0.05).
A difference is significant when its Holm-adjusted p-value is below ``alpha``; the
verdict names the better side only then. More seeds shrink the standard error as
1/sqrt(n), so a real difference becomes significant as seeds are added; the spread
itself (std) does not shrink, which is why it is not the yardstick.

Dominance (:func:`judge_dominance`), the claim "found A dominates baseline B", is one
hypothesis per (found, baseline) pair, tested as an intersection-union test (Berger
1982): A dominates B when A is better on EVERY objective, so the pair's p-value is the
LARGEST of its objectives' one-sided p-values of "found better" (each from the same t
and degrees of freedom as above). An intersection-union test needs no correction across
its objectives; the pairs' p-values are Holm-corrected across all pairs of the ranking.
Requiring every per-objective two-sided test to survive Holm across pairs AND objectives
(the rule before) controls the same error but needs a far larger t: with 3 seeds and 12
pairs of 2 objectives, the first claim (Holm's first step) needs t > 10.9 on every
objective (one-sided, 12 hypotheses) instead of t > 21.9 (two-sided, 24).

Seeds guidance (:func:`seeds_needed`): for a difference that is not significant, the
number of seeds that would make the SAME test reject at ``alpha`` with 80% power if the
observed mean difference and spread held (smallest n with
``t_{1-alpha/2, df} + t_{power, df} <= |diff| / (sd / sqrt(n))``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

ALPHA = 0.05
POWER = 0.8
#: seeds guidance stops counting here ("more than MAX_SEEDS").
MAX_SEEDS = 1000
DOMINANCE_TEST = ("intersection-union test: the largest one-sided p-value of 'found "
                  "better' over the objectives; Holm-corrected across all (found, "
                  "baseline) pairs")
TEST_NAME = ("two-sided t-test of found - baseline: paired by seed where the seeds pair "
             "up, else Welch; Holm-corrected across all pairs and objectives")


def describe(values: Sequence[float]) -> dict[str, float]:
    """mean, std (sample), sem and n of one architecture's values of one metric."""
    n = len(values)
    std = statistics.stdev(values) if n > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std,
            "sem": std / math.sqrt(n) if n > 1 else 0.0, "n": n}


def compare(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """Test ``mean(a) - mean(b) == 0``; ``a``, ``b``: seed -> value. The raw p-value (no
    correction) and everything it came from."""
    shared = sorted(set(a) & set(b))
    va, vb = list(a.values()), list(b.values())
    diff = statistics.fmean(va) - statistics.fmean(vb)
    if len(shared) >= 2:
        d = [a[s] - b[s] for s in shared]
        n = len(d)
        se = statistics.stdev(d) / math.sqrt(n)
        return _finish({"test": "paired t", "n_pairs": n, "n_found": len(va),
                        "n_baseline": len(vb), "diff": statistics.fmean(d), "se": se,
                        "df": n - 1, "sd": statistics.stdev(d)})
    if len(va) >= 2 and len(vb) >= 2:
        s1, s2 = statistics.variance(va) / len(va), statistics.variance(vb) / len(vb)
        se = math.sqrt(s1 + s2)
        df = ((s1 + s2) ** 2 / (s1 ** 2 / (len(va) - 1) + s2 ** 2 / (len(vb) - 1))
              if s1 + s2 > 0 else float(len(va) + len(vb) - 2))
        return _finish({"test": "Welch t", "n_pairs": len(shared), "n_found": len(va),
                        "n_baseline": len(vb), "diff": diff, "se": se, "df": df,
                        "sd": math.sqrt(statistics.variance(va) + statistics.variance(vb))})
    return {"test": "none (fewer than 2 seeds on a side)", "n_pairs": len(shared),
            "n_found": len(va), "n_baseline": len(vb), "diff": diff, "se": None,
            "df": None, "t": None, "p": None}


def _finish(r: dict[str, Any]) -> dict[str, Any]:
    from scipy.stats import t as student_t

    if r["se"] == 0:
        r["t"] = None
        r["p"] = 0.0 if r["diff"] != 0 else 1.0
        r["test"] += " (no spread: the difference is exact)"
    else:
        r["t"] = r["diff"] / r["se"]
        r["p"] = float(2 * student_t.sf(abs(r["t"]), r["df"]))
    return r


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (None stays None), in the given order."""
    idx = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for k, i in enumerate(idx):
        running = max(running, min(1.0, (m - k) * pvalues[i]))
        out[i] = running
    return out


def seeds_needed(r: dict[str, Any], alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Seeds per architecture for ``r``'s test to reject at ``alpha`` with ``power`` if its
    observed difference and spread held; None when no spread or no difference is known
    (identical values), MAX_SEEDS + 1 for "more than MAX_SEEDS"."""
    from scipy.stats import t as student_t

    sd, diff = r.get("sd"), r.get("diff")
    if sd is None or diff is None or sd == 0 or diff == 0:
        return None
    for n in range(2, MAX_SEEDS + 1):
        df = n - 1 if r["test"].startswith("paired") else 2 * n - 2
        needed = student_t.ppf(1 - alpha / 2, df) + student_t.ppf(power, df)
        if abs(diff) / (sd / math.sqrt(n)) >= needed:
            return n
    return MAX_SEEDS + 1


def judge(tests: list[dict[str, Any]], alpha: float = ALPHA) -> None:
    """Holm-correct ``tests`` (in place) and give each a verdict and seeds guidance.
    Each test has ``direction`` (maximize/minimize) besides what :func:`compare` gives."""
    for r, adj in zip(tests, holm([r["p"] for r in tests]), strict=True):
        r["p_holm"] = adj
        r["significant"] = adj is not None and adj < alpha
        better = r["diff"] > 0 if r["direction"] == "maximize" else r["diff"] < 0
        if r["significant"]:
            r["verdict"] = "found better" if better else "baseline better"
        else:
            r["verdict"] = "no significant difference"
            r["seeds_needed"] = seeds_needed(r, alpha)


def one_sided_p(r: dict[str, Any]) -> float | None:
    """p-value of "found better" for one test of :func:`compare` that has a ``direction``:
    the one-sided tail of the same t (None when there was no test)."""
    from scipy.stats import t as student_t

    if r["p"] is None:
        return None
    better = r["diff"] > 0 if r["direction"] == "maximize" else r["diff"] < 0
    if r["t"] is None:  # no spread: the difference is exact
        return 0.0 if better else 1.0
    signed = r["t"] if r["direction"] == "maximize" else -r["t"]
    return float(student_t.sf(signed, r["df"]))


def judge_dominance(pairs: list[dict[str, Any]], n_objectives: int,
                    alpha: float = ALPHA) -> None:
    """Test "found dominates baseline" per pair (in place). Each pair has ``tests``: its
    judged per-objective tests. A pair missing an objective's test cannot be judged."""
    for pair in pairs:
        ps = [(one_sided_p(t), t["metric"]) for t in pair["tests"]]
        known = [(p, m) for p, m in ps if p is not None]
        if len(known) < n_objectives:
            pair["p"], pair["weakest"] = None, None
        else:
            pair["p"], pair["weakest"] = max(known)
    for pair, adj in zip(pairs, holm([p["p"] for p in pairs]), strict=True):
        pair["p_holm"] = adj
        pair["dominates"] = adj is not None and adj < alpha
