"""Do the digit-scenes study's limits bite, and where? Counts, per kind of attention and
map size, how many sampled candidates each constraint rejects.

Draws ``--samples`` specs from the study's space (``nas.evaluate.candidates.sample_specs``: the
names and choices the search's sampler sees), prices each with the pre-training checks'
analytic numbers (params, MACs, estimated training memory at the training batch) and,
for those that pass them, measures batch-1 CPU latency with the study's protocol (one
thread, warmup and repeats as a trial's checks, median) in THREAD CPU time, not wall
time: on a shared, overloaded machine wall time counts the time the process waits for a
core, while CPU time is what the forward pass costs on an idle core (which is what the
checks' wall-clock ``search_space.measure`` gives there). Each candidate is tagged
with every (block / attention kind, map side) it contains, e.g. ``aa:full@32``, and for
each tag the table gives: sampled, rejected by params / macs / memory_mb (analytic) /
latency_ms (measured), feasible. Writes benchmarks/results/scenes_space_constraints.json.

    nice -n 10 python benchmarks/scenes_space_constraints.py [--samples 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from nas.evaluate.candidates import price, sample_specs
from nas.evaluate.checks import violations
from nas.study import load_study

OUT = Path(__file__).parent / "results" / "scenes_space_constraints.json"
ATTENTION_BLOCKS = ("aa", "eaa")


def tags(spec) -> set[str]:
    """'kind@side' for every block: aa/eaa by their attention kernel, others by type."""
    side = spec.input.size[0] // spec.stem.stride
    out = set()
    for stage in spec.stages:
        side = -(-side // stage.stride)
        for block in stage.blocks:
            cfg = block.to_dict()
            kind = block.type
            if kind in ATTENTION_BLOCKS:
                kind = f"{kind}:{cfg.get('attention', 'relative' if kind == 'aa' else 'local')}"
            out.add(f"{kind}@{side}")
    return out


def cpu_latency_ms(spec, batch: int, warmup: int, repeats: int) -> float:
    """Median thread CPU time of one inference forward pass, one torch thread."""
    model = spec.build().eval()
    x = torch.randn(batch, spec.input.channels, *spec.input.size)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            times = []
            for _ in range(repeats):
                t0 = time.thread_time()
                model(x)
                times.append((time.thread_time() - t0) * 1e3)
    finally:
        torch.set_num_threads(before)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="digit-scenes")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    study = load_study(args.study)
    limits = study.constraints
    m = study.measure
    rows = []
    t0 = time.perf_counter()
    for spec in sample_specs(study, args.samples, args.seed):
        c = price(study, spec)
        row = {"tags": sorted(tags(spec)), "params": c.params, "macs": c.macs,
               "memory_mb": round(c.train_memory_mb, 1), "latency_ms": None,
               "violations": dict(c.violations)}
        if c.feasible:  # the checks measure latency only after the analytic ones pass
            row["latency_ms"] = cpu_latency_ms(spec, m.batch_size, m.warmup, m.repeats)
            row["violations"] = violations({"latency_ms": row["latency_ms"]}, limits)
        rows.append(row)
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        for tag in [*row["tags"], "all"]:
            t = table[tag]
            t["sampled"] += 1
            for name in row["violations"]:
                t[f"rejected_{name}"] += 1
            t["feasible"] += not row["violations"]
    report = {"study": study.name, "constraints": limits, "samples": len(rows),
              "seed": args.seed, "training_batch": study.training.batch_size,
              "latency_protocol": {"batch": m.batch_size, "warmup": m.warmup,
                                   "repeats": m.repeats, "threads": 1, "device": "cpu",
                                   "clock": "thread CPU time (time.thread_time)"},
              "load_average_1_5_15": list(os.getloadavg()),
              "wall_s": time.perf_counter() - t0,
              "table": {k: dict(v) for k, v in sorted(table.items())}, "candidates": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    cols = ("sampled", "rejected_params", "rejected_macs", "rejected_memory_mb",
            "rejected_latency_ms", "feasible")
    print(f"{'tag':20s} " + " ".join(f"{c.replace('rejected_', '-'):>12s}" for c in cols))
    for tag, t in report["table"].items():
        print(f"{tag:20s} " + " ".join(f"{t.get(c, 0):12d}" for c in cols))


if __name__ == "__main__":
    main()
