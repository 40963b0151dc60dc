"""What `nas search` costs on top of the trials themselves, and what the checks cost.

1. Framework overhead per trial. The same number N of near-zero-cost trials (a tiny
   synthetic study: 2 epochs of 1 step, a 768-architecture space so nothing repeats)
   run (a) through ``run_search`` on a local Ray (one worker: concurrency 1, reused
   actor, a SQLite Optuna storage, the ledger, the logs), and (b) in a plain in-process
   Optuna loop (in-memory storage) calling the same ``evaluate_candidate``.
   ``overhead = (ours - plain) / N``, with ``ours`` the wall time of run_search (Tuner
   set-up, the worker's start and teardown included; ``ray.init`` reported apart, as a
   user pays it once per process). ``steady_overhead`` is the per-trial gap once the
   worker is warm: (span from the first trial's end to the last's - the trials' own
   wall time) / (N - 1).
2. Share of the budget spent on pre-training checks, on the packaged digits study:
   sum of the trials' ``check_s`` (``pre_training_s``, an upper bound, for trials ASHA
   stopped: they never report check_s) / the ledger's device time.

Writes benchmarks/results/search_overhead.json. Run from the repository root:

    python benchmarks/search_overhead.py [--trials 100] [--digits-budget B]

(the digits part runs the study's own budget by default: it is then exactly the README's
``nas search`` main-job command, timed.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "search_overhead.json"

NEAR_ZERO = {
    "version": 1, "name": "overhead",
    "description": "benchmark: near-zero-cost trials",
    "data": {"dataset": "synthetic",
             "synthetic": {"channels": 1, "size": [8, 8], "classes": 4, "train": 32,
                           "val": 32}},
    "training": {"epochs": 2, "batch_size": 32, "max_steps_per_epoch": 1},
    "objectives": [{"metric": "accuracy", "direction": "maximize"}],
    "measure": {"batch_size": 1, "warmup": 0, "repeats": 1},
    "space": {"input": {"channels": 1, "size": [8, 8]}, "classes": 4,
              "stem": {"kind": "conv", "channels": list(range(4, 68, 4)), "kernel": 3},
              "stages": [{"channels": list(range(4, 68, 4)), "depth": [1, 2, 3],
                          "stride": 2, "blocks": ["basic"]}]},
    "sampler": {"name": "random", "seed": 0},
    "resources": {"concurrency": 1, "cpus_per_trial": 1, "gpus_per_trial": 0},
    "fidelity": {"scheduler": "none"},
}


def _trials(run_dir: Path):
    import optuna

    meta = json.loads((run_dir / "run.json").read_text())
    return optuna.load_study(study_name=meta["optuna_study"],
                             storage=f"sqlite:///{run_dir / 'optuna.db'}").trials


def ours(n: int, workdir: Path) -> dict:
    from nas.run.ledger import Ledger
    from nas.search.driver import run_search

    run_dir = workdir / "overhead"
    started = time.time()
    t0 = time.perf_counter()
    summary = run_search(NEAR_ZERO, run_dir=run_dir, budget=f"{n}trials", progress=False)
    total = time.perf_counter() - t0
    # repeats of known architectures: told duplicate trials and those replaced in place
    dups = summary.counts["duplicate"] + summary.counts["duplicates_skipped"]
    entries = sorted(Ledger(run_dir / "ledger.jsonl").entries, key=lambda e: e.time)
    walls = [e.wall_s for e in entries]
    span = entries[-1].time - entries[0].time
    steady = (span - sum(walls[1:])) / max(1, len(entries) - 1)
    first_start = min(json.loads(p.read_text().splitlines()[0])["t"]
                      for p in (run_dir / "logs").glob("*.jsonl"))
    return {"wall_s": total, "told": summary.counts["total"], "duplicates": dups,
            "trained": len(entries), "trial_wall_median_s": statistics.median(walls),
            "trial_wall_sum_s": sum(walls), "first_trial_wall_s": walls[0],
            "steady_overhead_s": steady,
            "to_first_start_s": first_start - started}


def plain(n: int) -> dict:
    """The same trials in a plain in-process Optuna loop (in-memory storage, the same
    sampler and seed, the same evaluation, the same skipping of repeated architectures):
    what Ray and our bookkeeping are compared with."""
    import optuna
    import torch

    from nas.evaluate.data import cached_data
    from nas.evaluate.trial import evaluate_candidate
    from nas.study import load_study

    torch.set_num_threads(1)  # as a Ray worker with cpus_per_trial 1
    study = load_study(NEAR_ZERO)
    walls, seen = [], {}

    def objective(trial):
        spec = study.space.sample(trial)
        h = spec.hash()
        if h not in seen:
            out = evaluate_candidate(spec, study, seed=0, data=cached_data(study.data))
            walls.append(out.wall_s)
            seen[h] = out.metrics.get("accuracy", 0.0)
        return seen[h]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    ostudy = optuna.create_study(direction="maximize",
                                 sampler=optuna.samplers.RandomSampler(seed=0))
    ostudy.optimize(objective, n_trials=n)
    return {"wall_s": time.perf_counter() - t0, "trials": n, "trained": len(walls),
            "trial_wall_median_s": statistics.median(walls), "trial_wall_sum_s": sum(walls)}


def digits_checks(budget: str | None, workdir: Path) -> dict:
    from nas.run.ledger import Ledger
    from nas.search.driver import run_search

    run_dir = workdir / "digits"
    t0 = time.perf_counter()
    summary = run_search(None, run_dir=run_dir, budget=budget, progress=False)
    wall = time.perf_counter() - t0
    trials = _trials(run_dir)
    device_s = Ledger(run_dir / "ledger.jsonl").spent_device_s()
    walls = [t.user_attrs["wall_s"] for t in trials
             if t.user_attrs.get("status") in ("ok", "stopped")]
    # A trial ASHA stops never reports its check_s (it ends inside training): its
    # pre_training_s (wall time before its first epoch: checks + model build) stands in,
    # an upper bound; on trials that report both, the bias is measured.
    by_status: dict[str, dict] = {}
    bias = []
    for t in trials:
        a = t.user_attrs
        if a.get("duplicate_of") is not None or a.get("status") is None:
            continue
        row = by_status.setdefault(a["status"], {"trials": 0, "check_s": 0.0,
                                                 "device_s": 0.0, "measured": 0,
                                                 "check_s_estimated": 0})
        row["trials"] += 1
        row["device_s"] += float(a.get("device_s", 0.0))
        row["measured"] += int("latency_ms" in a.get("metrics", {}))
        if "check_s" in a:
            row["check_s"] += float(a["check_s"])
            if "pre_training_s" in a:
                bias.append(float(a["pre_training_s"]) - float(a["check_s"]))
        elif "pre_training_s" in a:
            row["check_s"] += float(a["pre_training_s"])
            row["check_s_estimated"] += 1
    check_s = sum(r["check_s"] for r in by_status.values())
    return {"budget": summary.budget["text"], "wall_s": wall, "counts": summary.counts,
            "device_s": device_s, "check_s": check_s,
            "checks_share": check_s / device_s if device_s else None,
            "trained_trial_wall_median_s": statistics.median(walls) if walls else None,
            "by_status": by_status,
            "pre_training_minus_check_s_median": statistics.median(bias) if bias else None,
            "best": summary.best}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--digits-budget", default=None,
                    help="default: the digits study's own budget")
    ap.add_argument("--skip-digits", action="store_true")
    args = ap.parse_args()
    import ray

    load_before = os.getloadavg()
    # The plain loop runs before and after ours (the machine is shared: the mean of the
    # two is the reference; both are reported).
    plain_before = plain(args.trials)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        ray.init(num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False,
                 log_to_driver=False, logging_level="WARNING")
        ray_init_s = time.perf_counter() - t0
        try:
            ours_r = ours(args.trials, work)
            digits = None if args.skip_digits else digits_checks(args.digits_budget, work)
        finally:
            ray.shutdown()
        plain_after = plain(args.trials)
    plain_r = {"before": plain_before, "after": plain_after,
               "wall_s": (plain_before["wall_s"] + plain_after["wall_s"]) / 2}
    n = args.trials
    result = {
        "command": "python benchmarks/search_overhead.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
                    "load_avg_before": load_before, "load_avg_after": os.getloadavg()},
        "ray_init_s": ray_init_s,
        "overhead": {
            "trials": n, "ours": ours_r, "plain": plain_r,
            "overhead_per_trial_s": (ours_r["wall_s"] - plain_r["wall_s"]) / n,
            "steady_overhead_per_trial_s": ours_r["steady_overhead_s"],
            "target_s": 0.25},
        "checks": digits,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    o = result["overhead"]
    print(f"overhead per trial: {o['overhead_per_trial_s']:.3f} s "
          f"(steady {o['steady_overhead_per_trial_s']:.3f} s; ray.init {ray_init_s:.1f} s)")
    if digits:
        print(f"checks share on digits: {100 * (digits['checks_share'] or 0):.2f}% of "
              f"{digits['device_s']:.0f} device-s")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
