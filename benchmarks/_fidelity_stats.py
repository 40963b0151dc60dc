"""The statistics of the proxy-fidelity benchmark: Spearman's rho with a bootstrap
interval, the correlations of a proxy (final epoch and each ASHA rung) with the
reference, the ranking's repeatability between seeds and the reference's split-half
reliability."""

from __future__ import annotations

import math
import random
import statistics
from typing import Any


def rung_epochs(epochs: int, grace: int, rf: float) -> list[int]:
    """ASHA's rung epochs below the last one (the search's rule, as whole epochs)."""
    from nas.search.asha import rung_epochs as asha_rungs

    return [int(round(e)) for e in asha_rungs(epochs, grace, rf)]


def spearman(x: list[float], y: list[float]) -> float | None:
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None  # a constant list has no ranks to correlate
    from scipy.stats import spearmanr

    rho = spearmanr(x, y).statistic
    return None if math.isnan(rho) else float(rho)


def bootstrap_ci(x: list[float], y: list[float], seed: int = 0, n: int = 2000,
                 level: float = 0.9) -> list[float] | None:
    """Percentile bootstrap interval of Spearman's rho (resampling architectures)."""
    if len(x) < 4:
        return None
    rng = random.Random(seed)
    values = []
    for _ in range(n):
        idx = [rng.randrange(len(x)) for _ in x]
        rho = spearman([x[i] for i in idx], [y[i] for i in idx])
        if rho is not None:
            values.append(rho)
    if not values:
        return None
    values.sort()
    lo = values[int((1 - level) / 2 * len(values))]
    hi = values[min(len(values) - 1, int((1 + level) / 2 * len(values)))]
    return [lo, hi]


def correlations(archs: list[dict[str, Any]], epochs: int, rungs: list[int],
                 seed: int) -> dict[str, Any]:
    """Spearman (with a bootstrap 90% interval) of the reference accuracy against the
    proxy's final accuracy and against its accuracy at each rung epoch (means over seeds)."""
    ok = [a for a in archs if a.get("proxy_acc") and a.get("reference_acc") is not None]
    ref = [a["reference_acc"] for a in ok]
    out: dict[str, Any] = {"n": len(ok)}
    for label, xs in _fidelities(ok, epochs, rungs).items():
        keep = [i for i, v in enumerate(xs) if not math.isnan(v)]
        xs_k, ref_k = [xs[i] for i in keep], [ref[i] for i in keep]
        out[label] = {"spearman": spearman(xs_k, ref_k),
                      "ci90": bootstrap_ci(xs_k, ref_k, seed=seed)}
    # A search trains each candidate ONCE: the correlation its single-seed proxy reaches
    # (one value per proxy seed) is the number that matters; the mean over seeds above
    # is less noisy than anything a search sees.
    per_seed = zip(*[a["proxy_acc_per_seed"] for a in ok], strict=True) if ok else []
    out[f"epoch {epochs} (final)"]["single_seed"] = [
        spearman([h[-1] for h in hists], ref) if all(hists) else None for hists in per_seed]
    return out


def _fidelities(archs: list[dict[str, Any]], epochs: int,
                rungs: list[int]) -> dict[str, list[float]]:
    """{label: accuracy per architecture}: the proxy's last epoch, then each rung."""
    points = {f"epoch {epochs} (final)": [a["proxy_acc"][-1] for a in archs]}
    for r in rungs:
        points[f"epoch {r} (rung)"] = [a["proxy_acc"][r - 1] if len(a["proxy_acc"]) >= r
                                       else math.nan for a in archs]
    return points


def asha_consistency(archs: list[dict[str, Any]], epochs: int,
                     rungs: list[int]) -> dict[str, float | None]:
    """Spearman of each rung's accuracy with the proxy's own final accuracy: what ASHA
    relies on when it stops a trial at that rung."""
    ok = [a for a in archs if a.get("proxy_acc")]
    pts = _fidelities(ok, epochs, rungs)
    final = pts.pop(f"epoch {epochs} (final)")
    return {label: spearman(xs, final) for label, xs in pts.items()}


def repeatability(per_seed: list[list[float | None]], seed: int) -> dict[str, Any] | None:
    """Spearman between the first two seeds' values (architectures in the same order):
    how reproducible a ranking is at all (the noise ceiling of a correlation with it)."""
    if len(per_seed) < 2:
        return None
    pairs = [(a, b) for a, b in zip(per_seed[0], per_seed[1], strict=True)
             if a is not None and b is not None]
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    return {"spearman": spearman(xs, ys), "ci90": bootstrap_ci(xs, ys, seed=seed),
            "n": len(pairs)}


def split_half(per_seed: list[list[float | None]], seed: int) -> dict[str, Any] | None:
    """Spearman between the mean over the first half of the seeds and the mean over the
    second half, stepped up to the all-seed mean by Spearman-Brown (r' = 2r / (1 + r)):
    the reliability of the reference ranking, whose square root bounds the correlation any
    proxy can show with it (the classical attenuation bound)."""
    if len(per_seed) < 4:
        return None
    half = len(per_seed) // 2
    rows = [col for col in zip(*per_seed, strict=True) if all(v is not None for v in col)]
    a = [statistics.fmean(col[:half]) for col in rows]
    b = [statistics.fmean(col[half:2 * half]) for col in rows]
    rho = spearman(a, b)
    if rho is None:
        return None
    reliability = max(0.0, 2 * rho / (1 + rho))
    return {"spearman": rho, "ci90": bootstrap_ci(a, b, seed=seed), "n": len(rows),
            "reliability_all_seeds": reliability, "ceiling": math.sqrt(reliability)}


def mean_history(runs: list[dict[str, Any]]) -> list[float] | None:
    """Element-wise mean of the runs' accuracy histories (None if any run failed)."""
    hists = [r.get("accuracy") for r in runs]
    if not hists or any(not h for h in hists):
        return None
    n = min(len(h) for h in hists)
    return [statistics.fmean(h[i] for h in hists) for i in range(n)]
