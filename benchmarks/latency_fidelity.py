"""How well the cost model predicts the device: estimated training memory and multiply-adds
against measured peak memory and latency, for the zoo and for specs sampled from the
packaged studies' spaces.

    python benchmarks/latency_fidelity.py                  # CPU, batch 2, ~5-10 min
    python benchmarks/latency_fidelity.py --device cuda --batch 8 --repeats 50 --samples 8

For each model, ``search_space.cost.estimate`` (parameters, multiply-adds, saved
activations + params + grads + SGD-momentum state + buffers at the batch) against
``search_space.measure.measure`` (median inference latency of one batch, peak memory of one
training step) on the same batch. Reported per device (one results file per device type):

- memory: relative error (estimate - measured) / measured, its distribution over models.
  On CUDA the measurement is ``max_memory_allocated``, independent of the estimate. On the
  CPU ``measure`` counts the tensors autograd saved during a REAL step
  (``cpu-saved-tensors``), a method RELATED to the estimate's (saved tensors of a meta-device
  forward): agreement there checks the meta-device shortcut (shapes, fused-attention
  assumption), not the allocator. So on the CPU each model is also measured independently
  (``--rss``, default on): the resident-set growth of one forward+backward in a fresh process
  (benchmarks/_memory.py), compared with the estimate's activations + gradients (what that
  step allocates; no optimizer step there). RSS includes allocator slack and transient
  buffers, so it is an upper-side check, noisier for small models.
- latency: Spearman rank correlation between multiply-adds and measured latency, and a
  fitted latency = overhead + ms_per_gmac x GMACs (weighted least squares on RELATIVE
  error, so a 0.1-GMAC model counts as much as a 5-GMAC one) with each model's relative
  residual. Per group (zoo, each study's samples) and pooled.

(This script absorbed the former benchmarks/cost_vs_measured.py: it also records how long
an estimate takes, and with ``--train-step`` the latency of a full training step.)
Writes benchmarks/results/latency_fidelity_<device>.{json,png}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MIB = 1 << 20
#: studies whose spaces are sampled by default (their input sizes differ: 8x8, 32x32).
DEFAULT_STUDIES = ("digits", "cifar10-eaanet", "cifar100-atc", "cifar100-wrn-aa")


# --------------------------------------------------------------------------- the models
def zoo_models(names: list[str] | None) -> list[dict[str, Any]]:
    """Every zoo entry (or the named ones) at its paper's input size."""
    from search_space.zoo import list_zoo, load_zoo

    return [{"name": n, "group": "zoo", "spec": load_zoo(n)} for n in (names or list_zoo())]


def sampled_models(studies: list[str], per_study: int, seed: int) -> list[dict[str, Any]]:
    """``per_study`` specs drawn at random from each study's space (distinct hashes)."""
    import itertools

    from nas.evaluate.candidates import draw_specs
    from nas.study import load_study

    out = []
    for name in studies:
        drawn = draw_specs(load_study(name), seed, max_draws=per_study * 20)
        out += [{"name": f"{name}-{i}", "group": f"sampled:{name}", "spec": spec}
                for i, spec in enumerate(itertools.islice(drawn, per_study))]
    return out


# --------------------------------------------------------------------------- measuring
def measure_model(item: dict[str, Any], *, batch: int, device: str, warmup: int,
                  repeats: int, threads: int | None, train_step: bool,
                  rss: bool) -> dict[str, Any]:
    """Estimate and measure one model; a failure is recorded, not raised."""
    from search_space.cost import estimate
    from search_space.measure import measure

    spec = item["spec"]
    row: dict[str, Any] = {"model": item["name"], "group": item["group"],
                           "input": [spec.input.channels, *spec.input.size]}
    try:
        t0 = time.perf_counter()
        est = estimate(spec, batch=batch)
        row["estimate_s"] = time.perf_counter() - t0
        row.update(params=est.params, macs=est.macs, macs_per_image=est.macs // batch,
                   attention_macs=est.attention_macs,
                   activation_method=est.activation_method,
                   est_train_memory_bytes=est.train_memory_bytes,
                   est_activation_bytes=est.activation_bytes,
                   est_grad_bytes=est.grad_bytes)
        m = measure(spec, batch=batch, device=device, warmup=warmup, repeats=repeats,
                    threads=threads, memory=True)
        row.update(latency_ms=m.latency_ms, memory_method=m.memory_method,
                   measured_train_memory_bytes=m.peak_memory_bytes,
                   measured_reserved_bytes=m.peak_reserved_bytes,
                   memory_breakdown=m.memory_breakdown, protocol=m.protocol)
        row["memory_rel_error"] = _rel(est.train_memory_bytes, m.peak_memory_bytes)
        if train_step:
            s = measure(spec, batch=batch, device=device, warmup=warmup, repeats=repeats,
                        threads=threads, train=True, memory=False)
            row["train_step_ms"] = s.latency_ms
    except Exception as err:  # noqa: BLE001 - one model that cannot run is a data point
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        return row
    if rss:
        row.update(_rss_row(spec, batch, threads, est))
    return row


def _rss_row(spec: Any, batch: int, threads: int | None, est: Any) -> dict[str, Any]:
    """Independent CPU check: resident-set growth of one forward+backward (fresh process)."""
    sys.path.insert(0, str(HERE))
    from _memory import measure_case

    res = measure_case(Path(__file__), "build_step", {"spec": spec.to_dict(), "batch": batch},
                       device="cpu", threads=threads or 1, repeats=1, min_repeats=1,
                       time_budget_s=0.5)
    if res.get("status") != "ok":
        return {"rss_status": res.get("status"), "rss_error": res.get("error")}
    step_est = est.activation_bytes + est.grad_bytes
    return {"rss_status": "ok", "rss_step_peak_bytes": res["peak_bytes"],
            "est_step_bytes": step_est,
            "rss_rel_error": _rel(step_est, res["peak_bytes"])}


def build_step(cfg: dict[str, Any], device: Any):
    """benchmarks/_memory.py builder: the spec's model in train mode and one input batch."""
    import torch
    from _memory import Case

    from search_space import ModelSpec

    spec = ModelSpec.from_dict(cfg["spec"])
    model = spec.build().to(device).train()
    x = torch.randn(cfg["batch"], spec.input.channels, *spec.input.size, device=device)
    return Case(model, (x,), {"params": sum(p.numel() for p in model.parameters())})


def _load() -> list[float] | None:
    """The machine's load average (a shared machine's timings are slower under load)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _rel(estimate: float | None, measured: float | None) -> float | None:
    if estimate is None or not measured:
        return None
    return (float(estimate) - float(measured)) / float(measured)


# --------------------------------------------------------------------------- statistics
def fit_ms_per_gmac(gmacs: list[float], latency_ms: list[float]) -> dict[str, Any]:
    """latency = overhead + slope x GMACs, weighted least squares on relative error
    (weights 1/latency^2); returns slope, overhead and each point's relative residual
    (predicted - measured) / measured. Falls back to a fit through the origin when the
    weighted fit gives a negative overhead (then overhead is 0)."""
    n = len(gmacs)
    if n == 0:
        return {"n": 0}
    w = [1.0 / (y * y) for y in latency_ms]
    sw = sum(w)
    sx = sum(wi * x for wi, x in zip(w, gmacs, strict=True))
    sy = sum(wi * y for wi, y in zip(w, latency_ms, strict=True))
    sxx = sum(wi * x * x for wi, x in zip(w, gmacs, strict=True))
    sxy = sum(wi * x * y for wi, x, y in zip(w, gmacs, latency_ms, strict=True))
    det = sw * sxx - sx * sx
    slope = overhead = None
    if n >= 2 and det > 0:
        slope = (sw * sxy - sx * sy) / det
        overhead = (sy - slope * sx) / sw
    if slope is None or overhead < 0 or slope <= 0:
        slope, overhead = (sxy / sxx if sxx > 0 else 0.0), 0.0
    rel = [(overhead + slope * x - y) / y for x, y in zip(gmacs, latency_ms, strict=True)]
    return {"n": n, "ms_per_gmac": slope, "overhead_ms": overhead,
            "residuals": rel, "median_abs_residual": statistics.median(abs(r) for r in rel),
            "max_abs_residual": max(abs(r) for r in rel)}


def spearman(x: list[float], y: list[float]) -> float | None:
    if len(x) < 3:
        return None
    from scipy.stats import spearmanr

    rho = spearmanr(x, y).statistic
    return None if rho is None or math.isnan(rho) else float(rho)


def distribution(values: list[float]) -> dict[str, Any]:
    """Median, spread and extremes of relative errors (signed) and of their size."""
    if not values:
        return {"n": 0}
    v = sorted(values)
    a = sorted(abs(x) for x in values)

    def q(s: list[float], p: float) -> float:
        pos = (len(s) - 1) * p
        lo, hi = math.floor(pos), math.ceil(pos)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    return {"n": len(v), "median": q(v, 0.5), "p10": q(v, 0.1), "p90": q(v, 0.9),
            "min": v[0], "max": v[-1], "median_abs": q(a, 0.5), "p90_abs": q(a, 0.9),
            "max_abs": a[-1]}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per group (and pooled, ``all``): memory error distributions, rank correlation of
    MACs with latency, the ms-per-GMAC fit."""
    ok = [r for r in rows if "error" not in r]
    groups = sorted({r["group"] for r in ok}) + ["all"]
    out = {}
    for g in groups:
        rs = [r for r in ok if g == "all" or r["group"] == g]
        gmacs = [r["macs"] / 1e9 for r in rs]
        lat = [r["latency_ms"]["median"] for r in rs]
        fit = fit_ms_per_gmac(gmacs, lat)
        out[g] = {
            "n": len(rs),
            "memory_rel_error": distribution([r["memory_rel_error"] for r in rs
                                              if r.get("memory_rel_error") is not None]),
            "rss_rel_error": distribution([r["rss_rel_error"] for r in rs
                                           if r.get("rss_rel_error") is not None]),
            "spearman_macs_latency": spearman(gmacs, lat),
            "spearman_params_latency": spearman([r["params"] for r in rs], lat),
            "fit": {k: v for k, v in fit.items() if k != "residuals"},
        }
        if g == "all":
            for r, res in zip(rs, fit.get("residuals", []), strict=False):
                r["latency_fit_rel_residual"] = res
    return out


# --------------------------------------------------------------------------- output
def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if "error" not in r]
    groups = sorted({r["group"] for r in rows})
    colors = {g: plt.cm.tab10(i % 10) for i, g in enumerate(groups)}
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 5))
    for g in groups:
        rs = [r for r in rows if r["group"] == g]
        ax1.scatter([r["macs"] / 1e9 for r in rs], [r["latency_ms"]["median"] for r in rs],
                    color=colors[g], label=g, s=18)
        ax2.scatter([r["measured_train_memory_bytes"] / MIB for r in rs],
                    [r["est_train_memory_bytes"] / MIB for r in rs], color=colors[g], s=18,
                    label=g)
        rss = [r for r in rs if r.get("rss_status") == "ok" and r["rss_step_peak_bytes"] > 0]
        if rss:
            ax3.scatter([r["rss_step_peak_bytes"] / MIB for r in rss],
                        [r["est_step_bytes"] / MIB for r in rss], color=colors[g], s=18,
                        label=g)
    fit = result["summary"]["all"]["fit"]
    if fit.get("n"):
        xs = sorted(r["macs"] / 1e9 for r in rows)
        ax1.plot(xs, [fit["overhead_ms"] + fit["ms_per_gmac"] * x for x in xs], "k--", lw=1,
                 label=f"fit: {fit['overhead_ms']:.2f} ms + {fit['ms_per_gmac']:.1f} ms/GMAC")
    rho = result["summary"]["all"]["spearman_macs_latency"]
    ax1.set(xscale="log", yscale="log", xlabel=f"GMACs per batch of {result['batch']}",
            ylabel="measured inference latency (ms, median)",
            title=f"MACs vs latency, Spearman {rho:.2f}" if rho is not None else "")
    for ax, what in ((ax2, "one training step (estimate vs measure())"),
                     (ax3, "fwd+bwd: est. activations+grads vs RSS growth")):
        lims = [v for line in ax.collections for v in line.get_offsets().flatten()]
        if lims:
            lo, hi = max(min(lims), 1e-3), max(lims)
            ax.plot([lo, hi], [lo, hi], "k:", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="measured (MiB)", ylabel="estimated (MiB)",
               title=what)
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.suptitle(f"cost model vs {result['device_name']} ({result['device']}, batch "
                 f"{result['batch']}, {result['threads']} thread(s))", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads on the CPU (a search trial uses cpus_per_trial)")
    ap.add_argument("--zoo", nargs="*", default=None, help="zoo entries (default: all)")
    ap.add_argument("--studies", nargs="*", default=list(DEFAULT_STUDIES))
    ap.add_argument("--samples", type=int, default=3, help="sampled specs per study")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sampled specs")
    ap.add_argument("--train-step", action="store_true",
                    help="also time a full training step per model")
    ap.add_argument("--no-rss", dest="rss", action="store_false",
                    help="CPU: skip the independent resident-set measurement")
    ap.add_argument("--out", type=Path, default=None,
                    help="output stem (default results/latency_fidelity_<device>)")
    args = ap.parse_args(argv)

    import torch

    from search_space.measure import device_name

    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                       if args.device == "auto" else args.device)
    rss = args.rss and dev.type == "cpu"
    if dev.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    load_start = _load()
    items = zoo_models(args.zoo) + sampled_models(args.studies, args.samples, args.seed)
    rows = []
    t_start = time.perf_counter()
    for item in items:
        row = measure_model(item, batch=args.batch, device=str(dev), warmup=args.warmup,
                            repeats=args.repeats,
                            threads=args.threads if dev.type == "cpu" else None,
                            train_step=args.train_step, rss=rss)
        rows.append(row)
        if "error" in row:
            print(f"{row['model']:28s} ERROR {row['error']}", flush=True)
            continue
        rss_txt = (f" rss-err {100 * row['rss_rel_error']:+6.1f}%"
                   if row.get("rss_rel_error") is not None else "")
        print(f"{row['model']:28s} {row['macs'] / 1e9:8.3f} GMAC "
              f"{row['latency_ms']['median']:9.2f} ms  mem est "
              f"{row['est_train_memory_bytes'] / MIB:8.1f} MiB meas "
              f"{row['measured_train_memory_bytes'] / MIB:8.1f} MiB "
              f"err {100 * row['memory_rel_error']:+6.1f}%{rss_txt}", flush=True)
    result = {
        "script": "benchmarks/latency_fidelity.py",
        "command": "python benchmarks/latency_fidelity.py " + " ".join(
            shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": str(dev), "device_name": device_name(dev), "torch": torch.__version__,
        "python": platform.python_version(), "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "load_average_1_5_15_start": load_start,
        "batch": args.batch, "warmup": args.warmup, "repeats": args.repeats,
        "seeds": {"sampled_specs": args.seed}, "studies": args.studies,
        "samples_per_study": args.samples, "wall_s": time.perf_counter() - t_start,
        "memory_method": {
            "estimate": "search_space.cost.estimate: saved tensors of a meta-device "
                        "train-mode forward + params + grads + SGD-momentum state + buffers",
            "measured": ("cuda: torch.cuda.max_memory_allocated of one training step"
                         if dev.type == "cuda" else
                         "cpu-saved-tensors: tensors autograd saved in a REAL step + params "
                         "+ grads + optimizer state + buffers (related to the estimate's "
                         "method)"),
            "rss": "benchmarks/_memory.py METHOD['cpu'] vs estimated activations + grads"
                   if rss else None},
        "latency_protocol": "search_space.measure: inference, eval mode, "
                            "torch.inference_mode, median of the timed repeats",
        "rows": [{k: v for k, v in r.items() if k != "protocol"} for r in rows],
    }
    result["load_average_1_5_15_end"] = _load()
    result["summary"] = summarize(result["rows"])
    stem = args.out or RESULTS / f"latency_fidelity_{dev.type}"
    if stem.suffix in (".json", ".png"):  # a file name given for the stem: one .json, not two
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(result, indent=1, default=str))
    plot(result, Path(f"{stem}.png"))
    for g, s in result["summary"].items():
        mem, fit = s["memory_rel_error"], s["fit"]
        rss_s = s["rss_rel_error"]
        print(f"{g:26s} n={s['n']:2d} mem |err| median "
              f"{100 * mem.get('median_abs', float('nan')):5.1f}% max "
              f"{100 * mem.get('max_abs', float('nan')):5.1f}%  rss |err| median "
              f"{100 * rss_s.get('median_abs', float('nan')):5.1f}%  spearman(macs, lat) "
              f"{s['spearman_macs_latency']}  {fit.get('ms_per_gmac', float('nan')):.1f} "
              f"ms/GMAC + {fit.get('overhead_ms', float('nan')):.2f} ms, median |resid| "
              f"{100 * fit.get('median_abs_residual', float('nan')):.0f}%")
    print(f"wrote {stem}.json and .png")


if __name__ == "__main__":
    main()
