"""Where each attention kind of the digit-scenes space wins or loses: accuracy, memory and
latency of one network per kind, side by side (issue 14, item 5).

The networks: the AA-ResNet scenes baseline (attention at 16x16 and 8x8) with relative
logits (``studies/baselines/aa-resnet-scenes.yaml``), full and linear attention
(``benchmarks/attention_kinds/``: the same network, only the kind changed), and the EAANet
scenes baselines with Longformer-2D local windows and Linformer; then the AA networks and
EAANet-Linformer with their 32x32 stage's block attending too (``*32-scenes.yaml``:
1,024 tokens). Not at 32x32: the Longformer window (its unfold-based CPU kernel already
makes the 16x16 network the slowest of the table).

- accuracy: the proxy's validation accuracy per seed, read from the files that
  ``benchmarks/baseline_separation.py`` wrote (``--accuracy``; it trains them, one torch
  thread each, as a search trial);
- memory: ``search_space.measure`` (CPU: the bytes autograd saved in a real training step
  at the study's batch, plus parameters, gradients, optimizer state) and the cost model's
  estimate; MACs and params from the cost model;
- latency: inference at batch 1 and a training step at the study's batch, one torch
  thread, the networks measured in turns in this one process (``--rounds``), so
  they share the machine's load alike; the median of each network's per-round medians.

    python benchmarks/baseline_separation.py --models \\
        benchmarks/attention_kinds/aa-{full,linear,relative32,full32,linear32}-scenes.yaml \\
        benchmarks/attention_kinds/eaanet-linformer32-scenes.yaml \\
        --out benchmarks/results/attention_kinds_training.json
    python benchmarks/attention_kinds.py --accuracy benchmarks/results/baseline_separation.json \\
        benchmarks/results/attention_kinds_training.json

Writes ``benchmarks/results/attention_kinds_scenes.{json,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import torch

from search_space import load_spec
from search_space.cost import estimate
from search_space.measure import measure

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
MIB = 2 ** 20

#: name -> (attention kind, the map sides it attends at, spec file)
KINDS = ROOT / "benchmarks/attention_kinds"
NETWORKS = {
    "aa-resnet-scenes": ("relative (AA)", "16, 8",
                         ROOT / "studies/baselines/aa-resnet-scenes.yaml"),
    "aa-full-scenes": ("full (AA)", "16, 8", KINDS / "aa-full-scenes.yaml"),
    "aa-linear-scenes": ("linear (AA)", "16, 8", KINDS / "aa-linear-scenes.yaml"),
    "eaanet-longformer-scenes": ("local 5x5 (EAA)", "16, 8",
                                 ROOT / "studies/baselines/eaanet-longformer-scenes.yaml"),
    "eaanet-linformer-scenes": ("Linformer (EAA)", "16, 8",
                                ROOT / "studies/baselines/eaanet-linformer-scenes.yaml"),
    # the same networks attending at 32x32 too (1,024 tokens)
    "aa-relative32-scenes": ("relative (AA)", "32, 16, 8", KINDS / "aa-relative32-scenes.yaml"),
    "aa-full32-scenes": ("full (AA)", "32, 16, 8", KINDS / "aa-full32-scenes.yaml"),
    "aa-linear32-scenes": ("linear (AA)", "32, 16, 8", KINDS / "aa-linear32-scenes.yaml"),
    "eaanet-linformer32-scenes": ("Linformer (EAA)", "32, 16, 8",
                                  KINDS / "eaanet-linformer32-scenes.yaml"),
}


def accuracies(paths: list[Path]) -> dict[str, dict[int, float]]:
    """Per network, per seed: the proxy accuracy of the study's task (later files win)."""
    found: dict[str, dict[int, float]] = {}
    training = None
    for path in paths:
        report = json.loads(path.read_text())
        # fields added to the training section since (compile) are off when absent
        this = {k: v for k, v in report["training"].items() if v not in (None, False)}
        if training is not None and this != training:
            raise SystemExit(f"{path}: trained under another proxy than {paths[0]}")
        training = this
        for row in report["tasks"].get("study", {}).get("runs", []):
            if row["model"] in NETWORKS and row.get("accuracy") is not None:
                found.setdefault(row["model"], {})[row["seed"]] = row["accuracy"]
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accuracy", type=Path, nargs="+", required=True,
                    help="baseline_separation.py result files")
    ap.add_argument("--batch", type=int, default=64, help="the study's training batch")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS / "attention_kinds_scenes.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    acc = accuracies(args.accuracy)
    specs = {name: load_spec(path) for name, (_, _, path) in NETWORKS.items()}
    infer: dict[str, list[float]] = {n: [] for n in specs}
    step: dict[str, list[float]] = {n: [] for n in specs}
    memory: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, spec in specs.items():
            m = measure(spec, batch=1, device="cpu", threads=1, memory=False,
                        warmup=3, repeats=15)
            infer[name].append(m.latency_ms["median"])
            m = measure(spec, batch=args.batch, device="cpu", threads=1, train=True,
                        warmup=1, repeats=3, memory=name not in memory)
            step[name].append(m.latency_ms["median"])
            if name not in memory:
                memory[name] = m.peak_memory_bytes / MIB
    rows = []
    for name, spec in specs.items():
        est = estimate(spec, batch=args.batch)
        per_image = estimate(spec, batch=1)
        seeds = acc.get(name, {})
        values = list(seeds.values())
        rows.append({
            "network": name, "attention": NETWORKS[name][0],
            "attends_at": NETWORKS[name][1], "params": est.params,
            "macs_per_image": per_image.macs,
            "attention_macs_per_image": per_image.attention_macs, "accuracy_by_seed": seeds,
            "accuracy_mean": statistics.fmean(values) if values else None,
            "accuracy_std": statistics.stdev(values) if len(values) > 1 else None,
            "train_memory_measured_mb": memory[name],
            "train_memory_estimated_mb": est.train_memory_bytes / MIB,
            "infer_ms_batch1": statistics.median(infer[name]),
            "train_step_ms": statistics.median(step[name])})
    report = {"batch": args.batch, "rounds": args.rounds, "threads": 1,
              "accuracy_files": [str(p) for p in args.accuracy],
              "load_average_1_5_15": list(os.getloadavg()), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    plot(rows, args.out.with_suffix(".png"))
    for r in rows:
        print(f"{r['attention']:17s} @{r['attends_at']:9s} acc {r['accuracy_mean']} "
              f"+- {r['accuracy_std']} "
              f"mem {r['train_memory_measured_mb']:.0f} MiB infer "
              f"{r['infer_ms_batch1']:.1f} ms step {r['train_step_ms']:.0f} ms")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "train_step_ms", "training step at the study's batch (ms)"),
                           (axes[1], "train_memory_measured_mb", "training memory (MiB)")):
        for r in rows:
            if r["accuracy_mean"] is None:
                continue
            ax.errorbar(r[key], r["accuracy_mean"], yerr=r["accuracy_std"] or 0, fmt="o",
                        capsize=3)
            ax.annotate(f"{r['attention']} @{r['attends_at']}",
                        (r[key], r["accuracy_mean"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
        ax.set_xscale("log")  # the 32x32 relative logits are ~10x the others
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(label + ", log scale")
        ax.set_ylabel("proxy accuracy (mean +- seed std)")
    fig.suptitle("digit-scenes: attention kinds, CPU, one thread")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
