"""Cost per trial and reachable accuracy of a packaged study (default digits).

Evaluates (1) a few hand-picked specs (digits only) and (2) specs sampled at random from
the study's space, each with ``nas.evaluate.trial.evaluate_candidate`` on the CPU with one torch
thread (the
study's ``resources.cpus_per_trial``), in one process (the dataset is loaded once, as
in a search worker). Writes benchmarks/results/<study>_trial.json (dashes become
underscores: digits_trial.json, digit_scenes_trial.json): per trial its status, wall
time, CPU time (what it would take on an idle core), check time, epochs and accuracy;
the median wall time of trained trials; the best hand-picked accuracy; and the
machine's load average (the machine may be shared: timings under load are slower).

    python benchmarks/digits_trial.py [--study digits] [--samples 12] [--epochs N] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from nas.evaluate.candidates import sample_specs
from nas.evaluate.data import cached_data
from nas.evaluate.trial import evaluate_candidate
from nas.study import load_study

RESULTS = Path(__file__).parent / "results"


def _spec(name: str, stem: int, stages: list[tuple[int, int, list[dict]]]) -> dict:
    return {"version": 1, "name": name, "input": {"channels": 1, "size": [8, 8]},
            "classes": 10, "stem": {"kind": "conv", "channels": stem, "kernel": 3},
            "stages": [{"channels": c, "stride": s, "blocks": b} for c, s, b in stages]}


HAND_PICKED = [
    _spec("conv", 24, [(32, 1, [{"type": "basic"}]), (48, 2, [{"type": "basic"}])]),
    _spec("aa-relative", 24, [
        (32, 1, [{"type": "aa", "kappa": 0.5, "upsilon": 0.5, "heads": 4,
                  "attention": "relative"}]),
        (48, 2, [{"type": "basic"}])]),
    _spec("acmix-cvt", 24, [
        (32, 1, [{"type": "acmix", "heads": 4, "kernel_att": 5, "residual": "basic"}]),
        (48, 2, [{"type": "cvt", "heads": 2, "mlp_ratio": 2, "kv_stride": 1}])]),
    _spec("eaa-local", 24, [
        (32, 1, [{"type": "basic"}]),
        (32, 2, [{"type": "eaa", "mode": "concat", "attention": "local", "heads": 4,
                  "window": 3, "mlp_ratio": 2}])]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="digits", help="a packaged study name or a file")
    ap.add_argument("--samples", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=None, help="default: the study's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None,
                    help="default: benchmarks/results/<study>_trial.json")
    args = ap.parse_args()

    study = load_study(args.study)
    out_path = args.out or RESULTS / f"{study.name.replace('-', '_')}_trial.json"
    epochs = args.epochs or study.training.epochs
    t0 = time.perf_counter()
    data = cached_data(study.data)
    load_s = time.perf_counter() - t0

    rows = []

    def run(kind: str, spec) -> None:
        cpu0 = time.process_time()
        out = evaluate_candidate(spec, study, seed=args.seed, device="cpu", data=data,
                                 epochs=epochs)
        cpu_s = time.process_time() - cpu0
        m = out.metrics
        row = {"kind": kind, "name": getattr(spec, "name", None) or spec["name"],
               "status": out.status, "wall_s": out.wall_s, "cpu_s": cpu_s,
               "check_s": out.check_s,
               "epochs": out.epochs_done, "accuracy": m.get("accuracy"),
               "params": m.get("params"), "latency_ms": m.get("latency_ms"),
               "memory_mb": m.get("memory_mb", m.get("memory_est_mb")),
               "violations": out.violations, "message": out.message}
        rows.append(row)
        acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        print(f"{kind:6s} {row['name']:14s} {out.status:10s} {out.wall_s:6.2f}s "
              f"(cpu {cpu_s:6.2f}s) "
              f"(checks {out.check_s:.2f}s) acc {acc} params {row['params']}", flush=True)

    for spec in HAND_PICKED if study.name == "digits" else []:
        run("hand", spec)
    for i, spec in enumerate(sample_specs(study, args.samples, seed=args.seed)):
        run("random", spec.__class__.from_dict({**spec.to_dict(), "name": f"sample-{i}"}))

    trained = [r for r in rows if r["status"] in ("ok", "stopped")]
    checked_only = [r for r in rows if r["status"] == "infeasible"]
    hand = [r for r in rows if r["kind"] == "hand" and r["accuracy"] is not None]
    best = max(hand, key=lambda r: r["accuracy"]) if hand else None
    summary = {
        "study": study.name, "epochs": epochs, "threads": 1,
        "torch_threads_default": torch.get_num_threads(),
        "load_average_1_5_15": list(os.getloadavg()), "cpu_count": os.cpu_count(),
        "data_load_s": load_s,
        "median_trained_trial_s": statistics.median(r["wall_s"] for r in trained)
        if trained else None,
        "mean_trained_trial_s": statistics.fmean(r["wall_s"] for r in trained)
        if trained else None,
        # CPU time of the process: what a trial costs on an otherwise idle core.
        "median_trained_trial_cpu_s": statistics.median(r["cpu_s"] for r in trained)
        if trained else None,
        "median_infeasible_trial_s": statistics.median(r["wall_s"] for r in checked_only)
        if checked_only else None,
        "infeasible_share": len(checked_only) / len(rows),
        "best_hand_picked": {"name": best["name"], "accuracy": best["accuracy"]}
        if best else None,
        "trials": rows,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "trials"}, indent=1))


if __name__ == "__main__":
    main()
