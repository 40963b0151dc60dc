"""Does the proxy rank architectures like a longer training does? Spearman rank correlation
between the proxy's accuracy (the study's short schedule, and each ASHA rung) and the
accuracy after a reference schedule several times longer.

    python benchmarks/proxy_fidelity.py     # digits, 13 specs, 4x, one seed: ~3 min, a smoke
                                            # run (too few seeds to judge a proxy by)
    python benchmarks/proxy_fidelity.py --samples 16 --reference epochs=40,batch_size=64,lr=0.05 \
        --reference-seeds 4 --proxy-seeds 3 --variant was:epochs=4,batch_size=64,lr=0.05
                                           # the committed result (about 2 h on 2 cores)
    python benchmarks/proxy_fidelity.py --variant e6:epochs=6 --variant lr:lr=0.1
                                                              # other proxies, same reference

Architectures: ``--samples`` specs drawn at random (seeded) from the study's space, kept
only if they pass the study's ANALYTIC constraints (params, MACs, estimated memory: what a
search would train), plus baselines (the study's ``baselines``, or ``--baselines``
instead) adapted to the study's data with ``nas.study.study.adapt_spec``. Each is trained
with ``nas.evaluate.train.train`` (the code a trial runs) on the CPU, one thread per job:

- the proxy: the study's ``training`` section as is (variant ``study``), or changed by
  ``--variant NAME:key=value,...`` (any ``training`` key: epochs, lr, batch_size,
  schedule, warmup_epochs, ...); its accuracy after each ASHA rung epoch (the study's
  ``fidelity``: grace x rf^k below the last epoch) is what ASHA compares on;
- the reference: the study's ORIGINAL training section with ``epochs`` x ``--factor``
  (the cosine schedule stretched over the longer run), the same for every variant.

Accuracy is the validation top-1 after the last epoch (what a trial reports). Cost is
training wall time; the proxy's share of the reference's cost is reported next to each
correlation. Runs are cached (runs/bench-cache/, or ``--cache FILE``; keyed by spec hash,
schedule and seed; each saved as it finishes), so trying proxy variants costs only the
proxies, and a run stopped part-way resumes where it stopped. ``--time-limit MINUTES``
starts only the runs predicted (from their proxy's time) to end within it and exits with
status 3 while runs are left, for a reference too long for one sitting. Writes
benchmarks/results/proxy_fidelity_<study>.{json,png}.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shlex
import signal
import statistics
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fidelity_stats import (  # noqa: E402
    asha_consistency,
    correlations,
    mean_history,
    repeatability,
    rung_epochs,
    split_half,
)
from _training_runs import cache_key, run_jobs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / "runs" / "bench-cache"


# --------------------------------------------------------------------------- candidates
def candidates(study: Any, samples: int, seed: int,
               baselines: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(specs to train, skipped): ``samples`` analytically feasible specs from the space,
    then the baselines adapted to the study's data."""
    from nas.evaluate.candidates import draw_specs, price
    from nas.evaluate.checks import analytic
    from nas.study.study import adapt_spec

    chosen: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for i, spec in enumerate(draw_specs(study, seed, max_draws=samples * 50)):
        if len(chosen) == samples:
            break
        c = price(study, spec)
        if not c.feasible:
            skipped.append({"name": f"sample-{i}", "reason": f"infeasible {c.violations}"})
            continue
        chosen.append({"name": f"sample-{len(chosen)}", "kind": "sampled",
                       "spec": spec.to_dict(), "hash": spec.hash(), "params": c.params,
                       "macs": c.macs})
    for ref in baselines:
        try:
            spec = adapt_spec(ref, study)
        except Exception as err:  # noqa: BLE001 - a baseline that cannot run here is reported
            skipped.append({"name": ref, "reason": f"{type(err).__name__}: {err}"})
            continue
        numbers = analytic(spec, study)
        chosen.append({"name": ref, "kind": "baseline", "spec": spec.to_dict(),
                       "hash": spec.hash(), "params": numbers["params"],
                       "macs": numbers["macs"]})
    return chosen, skipped


# --------------------------------------------------------------------------- variants
def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:key=value,key=value`` -> (NAME, {key: value}) with YAML-typed values."""
    name, _, body = text.partition(":")
    if not name or not body:
        raise SystemExit(f"--variant {text!r}: write NAME:key=value[,key=value...]")
    return name, parse_training(body, f"--variant {text!r}")


def parse_training(body: str, option: str) -> dict[str, Any]:
    """``key=value,key=value`` (training keys) -> {key: value} with YAML-typed values;
    ``option`` names the command-line option in the error."""
    import yaml

    from nas.study import TrainingConfig

    known = {f.name for f in dataclasses.fields(TrainingConfig)}
    out = {}
    for part in body.split(","):
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in known:
            raise SystemExit(f"{option}: {key!r} is not a training key; "
                             f"allowed: {', '.join(sorted(known))}")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads 2e-3 (no dot) as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        out[key.strip()] = parsed
    return out


# --------------------------------------------------------------------------- output
def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = result["variants"]
    fig, axes = plt.subplots(1, len(variants) + 1, figsize=(5.2 * (len(variants) + 1), 4.6),
                             squeeze=False)
    for ax, v in zip(axes[0], variants, strict=False):
        archs = [a for a in v["archs"] if a.get("proxy_acc") and a.get("reference_acc")]
        for kind, marker in (("sampled", "o"), ("baseline", "s")):
            rs = [a for a in archs if a["kind"] == kind]
            ax.scatter([a["proxy_acc"][-1] for a in rs], [a["reference_acc"] for a in rs],
                       marker=marker, label=kind, s=22)
        rho = v["correlations"].get(next(k for k in v["correlations"] if "final" in k), {})
        ax.set(xlabel=f"proxy accuracy ({v['name']}: {v['training_summary']})",
               ylabel=f"reference accuracy ({result['reference']['epochs']} epochs)",
               title=f"Spearman {rho.get('spearman', float('nan')):.2f} at "
                     f"{100 * v['cost_share']:.0f}% of the cost")
        ax.legend(fontsize=8)
    ax = axes[0][-1]
    for v in variants:
        labels = [k for k in v["correlations"] if k != "n"]
        ax.plot(range(len(labels)), [v["correlations"][k]["spearman"] or 0 for k in labels],
                "o-", label=v["name"])
        ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    ax.axhline(0.8, color="k", ls=":", lw=1)
    ax.set(ylabel="Spearman with the reference", ylim=(-0.2, 1.0), title="per fidelity")
    ax.legend(fontsize=8)
    fig.suptitle(f"proxy fidelity, study {result['study']} ({result['device_name']})",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _summary(training: dict[str, Any], base: dict[str, Any]) -> str:
    keys = ("epochs", "lr", "batch_size", "schedule", "warmup_epochs", "optimizer")
    return ", ".join(f"{k} {training.get(k, base[k])}" for k in keys
                     if k in training or k in ("epochs", "lr"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", default="digits", help="a study file or packaged name")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--factor", type=float, default=4.0,
                    help="reference epochs = the study's epochs x this")
    ap.add_argument("--reference", default=None, metavar="key=value,...",
                    help="the reference's training keys over the study's (e.g. "
                         "epochs=40,lr=0.05); epochs default to the study's x --factor")
    ap.add_argument("--baselines", nargs="*", default=None,
                    help="zoo:NAME or spec paths (default: the study's baselines)")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME:key=value,... a proxy other than the study's training")
    ap.add_argument("--no-study-variant", action="store_true",
                    help="evaluate only the --variant proxies")
    ap.add_argument("--seed", type=int, default=0,
                    help="architecture sample, and the first training seed")
    ap.add_argument("--reference-seeds", type=int, default=1,
                    help="train the reference with this many seeds (mean; with 2 or more "
                         "the ranking's reproducibility between seeds is reported)")
    ap.add_argument("--proxy-seeds", type=int, default=1,
                    help="train each proxy with this many seeds (mean)")
    ap.add_argument("--jobs", type=int, default=2, help="training processes (1 thread each)")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--cache", type=Path, default=None,
                    help="the file of finished runs (default: runs/bench-cache/"
                         "proxy_fidelity_<study>.json); one kept in the repository lets a "
                         "run longer than one sitting resume anywhere")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                    help="start only the runs predicted to end within this many minutes, "
                         "then stop (finished runs stay in the cache; rerun to go on)")
    args = ap.parse_args(argv)
    if args.time_limit is not None and args.time_limit <= 0:
        ap.error(f"--time-limit must be a positive number of minutes, not {args.time_limit:g}")

    import torch

    from nas.study import load_study

    study = load_study(args.study)
    base = dataclasses.asdict(study.training)
    reference = {"epochs": int(round(study.training.epochs * args.factor))}
    if args.reference:
        reference.update(parse_training(args.reference, f"--reference {args.reference!r}"))
    variants = [] if args.no_study_variant else [("study", {})]
    variants += [parse_variant(v) for v in args.variant]
    baselines = list(study.baselines) if args.baselines is None else args.baselines
    archs, skipped = candidates(study, args.samples, args.seed, baselines)
    print(f"{len(archs)} architectures ({len(skipped)} skipped)", flush=True)
    cache_path = None if args.no_cache else (
        args.cache or CACHE / f"proxy_fidelity_{study.name}.json")
    cache = None
    if cache_path is not None:
        cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}

    ref_seeds = [args.seed + i for i in range(args.reference_seeds)]
    proxy_seeds = [args.seed + i for i in range(args.proxy_seeds)]

    first_proxy = variants[0][1] if variants else None

    def job(i: int, a: dict[str, Any], training: dict[str, Any], label: str,
            seed: int) -> dict[str, Any]:
        full = {**base, **training}
        return {"study": study.to_dict(), "spec": a["spec"], "hash": a["hash"],
                "training": training, "seed": seed, "threads": 1, "name": a["name"],
                "label": f"{label}/s{seed}", "arch": i, "training_epochs": full["epochs"],
                "key": cache_key(a["hash"], full, seed),
                # the time limit predicts a run from this architecture's first proxy
                "predict_from": None if first_proxy is None else cache_key(
                    a["hash"], {**base, **first_proxy}, proxy_seeds[0])}

    t0 = time.perf_counter()
    plan = [("reference", reference, ref_seeds)] + [(n, t, proxy_seeds) for n, t in variants]
    jobs = [job(i, a, training, label, sd) for label, training, seeds in plan
            for sd in seeds for i, a in enumerate(archs)]
    deadline = None if args.time_limit is None else time.monotonic() + 60 * args.time_limit
    # Ctrl-C, `kill` and `kill -INT` (ignored by a background job otherwise) stop it alike
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    try:
        finished = run_jobs(jobs, max(1, args.jobs), cache, cache_path, deadline)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the finished runs are kept in {cache_path}; the same command "
              "resumes", file=sys.stderr)
        raise SystemExit(130) from None
    except BrokenProcessPool:  # a worker killed from outside (the kernel's OOM killer)
        print(f"a training process died (out of memory?); the finished runs are kept in "
              f"{cache_path}; the same command resumes (--jobs 1 needs less memory)",
              file=sys.stderr)
        raise SystemExit(1) from None
    if finished is None:
        raise SystemExit(3)
    results = iter(finished)
    by_plan = {label: [[next(results) for _ in archs] for _ in seeds]
               for label, _, seeds in plan}
    refs = by_plan["reference"]  # [seed][arch]
    ref_final = [[(r.get("accuracy") or [None])[-1] for r in per] for per in refs]
    rungs = rung_epochs(study.training.epochs, study.fidelity.grace_epochs,
                        study.fidelity.reduction_factor)
    out_variants = []
    for name, training in variants:
        runs = by_plan[name]
        rows = []
        for i, a in enumerate(archs):
            mine = [runs[k][i] for k in range(len(proxy_seeds))]
            theirs = [refs[k][i] for k in range(len(ref_seeds))]
            finals = [ref_final[k][i] for k in range(len(ref_seeds))]
            rows.append({"name": a["name"], "kind": a["kind"], "hash": a["hash"],
                         "params": a["params"], "macs": a["macs"],
                         "proxy_acc": mean_history(mine),
                         "proxy_acc_per_seed": [r.get("accuracy") for r in mine],
                         "proxy_cpu_s": sum(r.get("cpu_s", 0.0) for r in mine) / len(mine),
                         "reference_acc": (statistics.fmean(finals)
                                           if all(f is not None for f in finals) else None),
                         "reference_acc_per_seed": finals,
                         "reference_cpu_s": sum(r.get("cpu_s", 0.0) for r in theirs)
                         / len(theirs),
                         "errors": [r["error"] for r in mine + theirs if r.get("error")]})
        proxy_s = sum(r["proxy_cpu_s"] for r in rows)
        ref_s = sum(r["reference_cpu_s"] for r in rows)
        epochs = training.get("epochs", study.training.epochs)
        v_rungs = rung_epochs(epochs, study.fidelity.grace_epochs,
                              study.fidelity.reduction_factor)
        out_variants.append({
            "name": name, "training": training, "training_summary": _summary(training, base),
            "rung_epochs": v_rungs, "cost_share": proxy_s / ref_s if ref_s else None,
            "epoch_share": epochs / reference["epochs"],
            "correlations": correlations(rows, epochs, v_rungs, args.seed),
            "asha_rung_vs_proxy_final": asha_consistency(rows, epochs, v_rungs),
            "proxy_repeatability": repeatability(
                [[(r.get("accuracy") or [None])[-1] for r in per] for per in runs], args.seed),
            "archs": rows})
    ref_accs = [statistics.fmean(f) for f in zip(*ref_final, strict=True)
                if all(x is not None for x in f)]
    result = {
        "script": "benchmarks/proxy_fidelity.py",
        "command": "python benchmarks/proxy_fidelity.py " + " ".join(
            shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "study": study.name, "device": "cpu", "device_name": _cpu_name(),
        "torch": torch.__version__, "python": platform.python_version(),
        "threads_per_job": 1, "jobs": args.jobs, "cpu_count": os.cpu_count(),
        "load_average_1_5_15_end": list(os.getloadavg()),
        "seeds": {"architectures": args.seed, "reference_training": ref_seeds,
                  "proxy_training": proxy_seeds},
        "study_training": base, "asha_rungs_of_study": rungs,
        "reference": {**reference, "schedule": (
                      f"the study's training with {args.reference}" if args.reference else
                      f"the study's training with epochs x {args.factor:g}"),
                      "accuracy_spread": {
                          "min": min(ref_accs, default=None), "max": max(ref_accs, default=None),
                          "stdev": statistics.pstdev(ref_accs) if ref_accs else None},
                      "seeds": ref_seeds,
                      "repeatability_between_seeds": repeatability(ref_final, args.seed),
                      "split_half": split_half(ref_final, args.seed),
                      "cost_measure": "process CPU seconds of the training (1 thread)"},
        "skipped": skipped, "wall_s": time.perf_counter() - t0, "variants": out_variants,
    }
    stem = args.out or RESULTS / f"proxy_fidelity_{study.name}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(result, indent=1))
    plot(result, Path(f"{stem}.png"))
    rep = result["reference"]["repeatability_between_seeds"]
    if rep:
        print(f"reference ranking between seeds: spearman {_fmt(rep['spearman'])} "
              f"(90% CI {rep['ci90']})")
    half = result["reference"]["split_half"]
    if half:
        print(f"reference, mean of half the seeds vs the other half: spearman "
              f"{_fmt(half['spearman'])}; reliability of the all-seed mean "
              f"{_fmt(half['reliability_all_seeds'])}: a proxy that knew the true ranking "
              f"would show about {_fmt(half['ceiling'])} (an estimate, as noisy as the "
              f"correlations themselves)")
    for v in out_variants:
        print(f"{v['name']:10s} ASHA rung vs proxy final: {v['asha_rung_vs_proxy_final']}; "
              f"proxy between seeds: {(v['proxy_repeatability'] or {}).get('spearman')}")
        for label, c in v["correlations"].items():
            if label == "n":
                continue
            ci = c["ci90"]
            ci_txt = f" (90% CI {ci[0]:.2f}..{ci[1]:.2f})" if ci else ""
            single = c.get("single_seed")
            single_txt = f"  single seed {[_fmt(x) for x in single]}" if single else ""
            print(f"{v['name']:10s} {label:18s} spearman {_fmt(c['spearman'])}{ci_txt}"
                  f"{single_txt}  cost {100 * (v['cost_share'] or 0):.0f}% of the reference")
    print(f"wrote {stem}.json and .png")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _cpu_name() -> str:
    import torch

    from search_space.measure import device_name

    return device_name(torch.device("cpu"))


if __name__ == "__main__":
    main()
