"""How close a device profile's predicted training-step time is to the measured one.

    python benchmarks/profile_fidelity.py                          # CPU, shipped CPU profile
    python benchmarks/profile_fidelity.py --device cuda \
        --profile benchmarks/results/cuda/device_profile.yaml

For specs sampled at random from the packaged studies' spaces (``--samples`` per study,
seeded), the step time ``nas.evaluate.device_profile.predict_step_s`` predicts from the profile
against one real training step measured with ``search_space.measure.measure``
(``train=True``: forward, loss, backward, SGD-momentum step; median of ``--repeats``
after ``--warmup``) on the device, at the profile's batch, precision, memory format and
threads. Reports the relative error (predicted - measured) / measured per spec, its
median and worst absolute value, and the Spearman rank correlation.

Writes benchmarks/results/profile_fidelity_cpu.{json,png} (cuda:
benchmarks/results/cuda/profile_fidelity.{json,png}).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CPU_STUDIES = ("digits", "cifar10-eaanet", "cifar100-atc")
GPU_STUDIES = ("cifar10-eaanet", "cifar100-atc", "cifar100-wrn-aa", "imagenet-resnet50")
DEFAULT_CPU_PROFILE = HERE.parent / "nas" / "profiles" / "cpu-1thread.yaml"


def sampled(study_name: str, n: int, seed: int) -> list[Any]:
    from nas.evaluate.candidates import sample_specs
    from nas.study import load_study

    return sample_specs(load_study(study_name), n=n, seed=seed)


def compare(spec: Any, profile: dict[str, Any], device: str, batch: int, warmup: int,
            repeats: int) -> dict[str, Any]:
    from nas.evaluate.device_profile import predict_step_s
    from search_space.measure import measure

    s = profile["setting"]
    predicted = predict_step_s(spec, profile, batch)
    m = measure(spec, batch=batch, device=device, precision=s["precision"], train=True,
                warmup=warmup, repeats=repeats, channels_last=s["channels_last"],
                threads=profile["device"].get("threads"), memory=False)
    measured = m.latency_ms["median"] / 1e3
    macs = sum(int(d["macs"]) for _, d in spec.graph(costs=True).nodes(data=True))
    return {"name": spec.name, "macs_per_image": macs,
            "predicted_s": predicted["step_s"], "measured_s": measured,
            "measured_iqr_s": m.latency_ms["iqr"] / 1e3,
            "relative_error": (predicted["step_s"] - measured) / measured,
            "parts_s": {k: v for k, v in predicted.items() if k != "step_s"}}


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for study in summary["studies"]:
        rows = [r for r in summary["specs"] if r["study"] == study and "measured_s" in r]
        ax.scatter([r["measured_s"] for r in rows], [r["predicted_s"] for r in rows], s=16,
                   label=study)
    values = [v for r in summary["specs"] if "measured_s" in r
              for v in (r["measured_s"], r["predicted_s"])]
    if values:
        lo, hi = min(values) / 1.5, max(values) * 1.5
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured training step (s)")
    ax.set_ylabel("predicted from the profile (s)")
    e = summary["abs_relative_error"]
    ax.set_title(f"{summary['device_name']}, batch {summary['batch']}\n|rel. error| median "
                 f"{e['median']:.0%}, worst {e['max']:.0%} over {summary['n']} specs",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--profile", default=None, help="profile YAML or shipped name "
                    "(default on CPU: nas/profiles/cpu-1thread.yaml)")
    ap.add_argument("--studies", nargs="+", default=None)
    ap.add_argument("--samples", type=int, default=8, help="specs per study")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=None, help="default: the profile's")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch
    from scipy.stats import spearmanr

    from nas.evaluate.device_profile import describe, load_profile
    from search_space.measure import device_name

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("profile_fidelity: --device cuda but CUDA is not available")
    if args.profile is None and cuda:
        sys.exit("profile_fidelity: --device cuda needs --profile (measure one with "
                 "nas profile-device on the GPU)")
    profile = load_profile(args.profile or DEFAULT_CPU_PROFILE)
    if profile["device"]["type"] != args.device:
        sys.exit(f"profile_fidelity: the profile is of a {profile['device']['type']}, "
                 f"not {args.device}")
    batch = args.batch or int(profile["setting"]["batch"])
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    repeats = args.repeats if args.repeats is not None else (10 if cuda else 3)
    studies = args.studies or list(GPU_STUDIES if cuda else CPU_STUDIES)
    out = args.out or (RESULTS / "cuda" / "profile_fidelity.json" if cuda
                       else RESULTS / "profile_fidelity_cpu.json")

    rows = []
    for study in studies:
        for spec in sampled(study, args.samples, args.seed):
            try:
                row = {"study": study, **compare(spec, profile, args.device, batch, warmup,
                                                 repeats)}
            except Exception as err:  # noqa: BLE001 - e.g. a CUDA OOM: recorded, not fatal
                row = {"study": study, "name": spec.name, "error": str(err).splitlines()[0]}
                if cuda:
                    torch.cuda.empty_cache()
            rows.append(row)
            if "error" in row:
                print(f"{study:18s} {spec.name[:28]:28s} error: {row['error'][:80]}",
                      file=sys.stderr, flush=True)
            else:
                print(f"{study:18s} {spec.name[:28]:28s} predicted {row['predicted_s']:.4f} s"
                      f" measured {row['measured_s']:.4f} s ({row['relative_error']:+.0%})",
                      file=sys.stderr, flush=True)
    ok = [r for r in rows if "error" not in r]
    errors = sorted(abs(r["relative_error"]) for r in ok)
    summary = {
        "device": args.device, "device_name": device_name(torch.device(args.device)),
        "torch": str(torch.__version__), "cuda": torch.version.cuda if cuda else None,
        "profile": profile["path"], "profile_describe": describe(profile),
        "batch": batch, "warmup": warmup, "repeats": repeats,
        "threads": profile["device"].get("threads"), "studies": studies,
        "samples_per_study": args.samples, "seed": args.seed, "n": len(ok),
        "failed": len(rows) - len(ok),
        "abs_relative_error": {"median": statistics.median(errors) if errors else None,
                               "max": max(errors) if errors else None,
                               "p90": errors[int(0.9 * (len(errors) - 1))] if errors else None},
        "spearman": (float(spearmanr([r["predicted_s"] for r in ok],
                                     [r["measured_s"] for r in ok]).statistic)
                     if len(ok) > 2 else None),
        "load_average_1_5_15": list(os.getloadavg()), "cpu_count": os.cpu_count(),
        "command": "python benchmarks/profile_fidelity.py " + shlex.join(argv or sys.argv[1:]),
        "specs": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    if ok:
        plot(summary, out.with_suffix(".png"))
    e = summary["abs_relative_error"]
    if ok:
        rho = "n/a" if summary["spearman"] is None else f"{summary['spearman']:.3f}"
        print(f"{len(ok)} specs on {summary['device_name']}: |relative error| median "
              f"{e['median']:.1%}, p90 {e['p90']:.1%}, worst {e['max']:.1%}; Spearman "
              f"{rho} -> {out}")
    return summary


if __name__ == "__main__":
    main()
