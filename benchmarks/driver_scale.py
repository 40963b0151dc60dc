"""The search driver at cluster scale: can one driver keep N workers busy for 10,000 trials?

The real driver (the search core, the study's Optuna sampler, a real storage, the ledger,
the trials budget, dedup, the study's ASHA) runs trials from a deterministic surrogate of
the study's space (``_driver_surrogate.py``: durations from the cost model's MACs, the
median candidate ``--trial-seconds``; accuracy a fixed function of the spec hash, rising
with the epochs), two ways:

- ``--mode sim``: ``nas.search.local.run_in_process`` with a virtual clock: trials take no
  real time, but every call into the driver (core and ASHA) is timed and advances the
  clock, since one driver serves every worker (a worker whose trial ended waits while
  the driver is busy). Utilisation is then the driver's own limit;
- ``--mode ray``: a real local Ray (one logical CPU per worker: the workers sleep, they do
  not compute) through the same Tune searcher/scheduler/callback as ``nas search``, the
  trainable sleeping through the surrogate's reports: Ray's overhead is in the figure.

    python benchmarks/driver_scale.py --workers 64 --trials 10000 --trial-seconds 60 --json
    python benchmarks/driver_scale.py --workers 64 --trials 10000 --trial-seconds 60 \\
        --storage postgresql://nas@127.0.0.1:5432/nas --json
    python benchmarks/driver_scale.py --mode ray --workers 32 --trials 600 \\
        --trial-seconds 10 --json

Prints one JSON object (``--json``; else a summary) and writes it, with a PNG of the ask
time and the driver's memory against the trials told, to
``benchmarks/results/driver_scale_<mode>_<storage>[_<tag>].{json,png}``. Measured:
``utilisation`` (busy worker-time / (workers x span from the first start to the last
end)), ``trials_per_s``, ``ask_ms_*`` (``core.propose`` that returned a trial, the repeats
of known architectures it replaced included; ``counts["duplicates_skipped"]``: how
many), ``tell_ms_*`` (``core.finished``), ``driver_cpu_s_per_trial``
(sim: CPU time inside the driver's calls; ray: the whole driver process, Tune included),
``driver_rss_mb`` (at the end; ``rss_mb_by_trials`` on the way), ``ledger_exact`` (the
ledger's sum equals the trial time the workers reported).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
RESULTS = Path(__file__).parent / "results"
CORE_CALLS = ("propose", "started", "reported", "stopped", "finished", "failed")


class Meter:
    """Times every call into the driver (the core's methods and ASHA's decision)."""

    def __init__(self, core: Any, asha: Any):
        self.core = core
        self.asks: list[float] = []  # ms of each propose that returned a trial
        self.tells: list[float] = []  # ms of each finished
        self.cpu_s = 0.0
        self.first_start: float | None = None
        self.rss: list[dict[str, float]] = []
        for name in CORE_CALLS:
            setattr(core, name, self._wrap(name, getattr(core, name)))
        if asha is not None:
            asha.decide = self._wrap("decide", asha.decide)

    def _wrap(self, name: str, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            c0, t0 = time.process_time(), time.perf_counter()
            out = fn(*args, **kwargs)
            ms = (time.perf_counter() - t0) * 1e3
            self.cpu_s += time.process_time() - c0
            if name == "propose" and isinstance(out, dict):
                self.asks.append(ms)
            elif name == "finished":
                self.tells.append(ms)
                self._checkpoint()
            elif name == "started" and self.first_start is None:
                self.first_start = time.time()
            return out

        return timed

    def _checkpoint(self) -> None:
        told = self.core.history.told
        if told >= 1000 * (len(self.rss) + 1):
            self.rss.append({"told": told, "rss_mb": rss_mb()})


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))])


def setup(args: argparse.Namespace, workdir: Path, clock: Any):
    """The real driver of a new run: the study's Optuna study in the storage, the ledger,
    a trials budget, the core (``clock``: the virtual one in sim mode)."""
    from nas.budget import parse_budget
    from nas.run.ledger import Ledger
    from nas.run.rundir import RunDir
    from nas.search.asha import AshaRule
    from nas.search.core import SearchCore
    from nas.search.driver import open_run_study
    from nas.study import load_study

    study = load_study(args.study)
    if args.sampler:
        study = dataclasses.replace(study, sampler=dataclasses.replace(
            study.sampler, name=args.sampler))
    budget = parse_budget(f"{args.trials}trials")
    name = f"{study.name}-driver-scale-{os.getpid()}-{int(time.time())}"
    run = RunDir.create(workdir / "run", study.to_dict(), optuna_study=name,
                        storage=args.storage, seed=study.sampler.seed, budget=budget.text)
    session = run.start_session()
    ostudy = open_run_study(run, study, study.sampler.seed, False)
    kwargs = {"clock": clock} if clock is not None else {}
    core = SearchCore(study, ostudy, run=run, ledger=Ledger(run.ledger_path), budget=budget,
                      seed=study.sampler.seed, session=session, devices=1.0, **kwargs)
    return study, run, core, AshaRule.for_study(study, run)


def run_sim(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from _driver_surrogate import Surrogate

    from nas.search.local import VirtualClock, run_in_process

    clock = VirtualClock()
    study, run, core, asha = setup(args, workdir, clock)
    surrogate = Surrogate(study, args.trial_seconds)
    meter = Meter(core, asha)
    walls: dict[int, float] = {}

    def trial(config: dict[str, Any]):
        for report in surrogate.plan(config):
            walls[config["number"]] = float(report["trial_wall_s"])  # what it reported
            yield report

    t0, start = time.perf_counter(), clock()
    try:
        run_in_process(core, trial, workers=args.workers, asha=asha, clock=clock)
    finally:
        core.close_session()
    return {"span_s": clock() - start, "real_s": time.perf_counter() - t0,
            "driver_cpu_s": meter.cpu_s, "clock_driver_s": clock.driver_s,
            **measured(core, meter, walls)}


def run_ray(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import _driver_surrogate
    import ray
    from _driver_surrogate import ray_plans_actor, ray_trial

    from nas.search.ray_session import run_on_ray

    ray.cloudpickle.register_pickle_by_value(_driver_surrogate)  # workers lack benchmarks/
    t_init = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    ray_init_s = time.perf_counter() - t_init
    try:
        study, run, core, asha = setup(args, workdir, None)
        plans = ray_plans_actor(study.to_dict(), args.trial_seconds)
        ray.get(plans.reported_walls.remote())  # the surrogate is ready before the clock
        meter = Meter(core, asha)
        c0 = time.process_time()
        try:
            run_on_ray(run, study, core, asha, session=0, concurrency=args.workers,
                       address=None, data_dir=None, display=None, trainable=ray_trial)
        finally:
            core.close_session()
        end = time.time()
        cpu = time.process_time() - c0
        walls = {int(k): v for k, v in ray.get(plans.reported_walls.remote()).items()}
    finally:
        ray.shutdown()
    return {"span_s": end - (meter.first_start or end), "ray_init_s": ray_init_s,
            "driver_cpu_s": cpu, "core_cpu_s": meter.cpu_s, **measured(core, meter, walls)}


def measured(core: Any, meter: Meter, walls: dict[int, float]) -> dict[str, Any]:
    ledger = core.ledger
    reported = sum(walls.values())
    spent = ledger.spent_device_s()
    window = min(1000, max(1, len(meter.asks) // 2))
    return {
        "told": core.history.told, "counts": dict(core.history.counts),
        "stop_reason": core.stop_reason, "trained_or_checked": len(walls),
        "ledger_entries": len(ledger), "ledger_device_s": spent,
        "reported_device_s": reported,
        "ledger_exact": (len(ledger) == len(walls)
                         and abs(spent - reported) <= 1e-6 * max(1.0, reported)),
        "busy_s": reported,
        "ask_ms_p50": pct(meter.asks, 50), "ask_ms_p99": pct(meter.asks, 99),
        "ask_ms_max": max(meter.asks, default=None), "ask_window": window,
        "ask_ms_p50_first1000": pct(meter.asks[:window], 50),
        "ask_ms_p99_first1000": pct(meter.asks[:window], 99),
        "ask_ms_p50_last1000": pct(meter.asks[-window:], 50),
        "ask_ms_p99_last1000": pct(meter.asks[-window:], 99),
        "tell_ms_p50": pct(meter.tells, 50), "tell_ms_p99": pct(meter.tells, 99),
        "driver_rss_mb": rss_mb(),
        "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_mb_by_trials": meter.rss, "asks_ms": meter.asks}


def report(args: argparse.Namespace, raw: dict[str, Any]) -> dict[str, Any]:
    import optuna

    span = raw["span_s"]
    out = {"workers": args.workers, "trials": raw["told"], "mode": args.mode,
           "trial_seconds": args.trial_seconds,
           "storage": "sqlite" if not args.storage else args.storage.split(":")[0],
           "study": args.study or "digits", "sampler": args.sampler or "study's",
           "utilisation": raw["busy_s"] / (args.workers * span) if span > 0 else None,
           "trials_per_s": raw["told"] / span if span > 0 else None,
           "driver_cpu_s_per_trial": raw["driver_cpu_s"] / max(1, raw["told"]),
           **{k: v for k, v in raw.items() if k != "asks_ms"}}
    out["environment"] = {"machine": platform.machine(), "python": platform.python_version(),
                          "cpus": os.cpu_count(), "optuna": optuna.__version__,
                          "load_avg": os.getloadavg()}
    return out


def plot(out: dict[str, Any], asks: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    step = max(1, len(asks) // 50)
    xs = list(range(0, len(asks), step))
    for q, style in ((50, "-"), (99, "--")):
        a.plot(xs, [pct(asks[i:i + step], q) for i in xs], style, label=f"p{q}")
    a.set(xlabel="trials asked", ylabel="ask (ms)", yscale="log",
          title=f"{out['mode']} / {out['storage']}: {out['workers']} workers")
    a.legend()
    rss = out["rss_mb_by_trials"]
    b.plot([r["told"] for r in rss], [r["rss_mb"] for r in rss], "o-")
    b.set(xlabel="trials told", ylabel="driver RSS (MiB)", title="driver memory")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--trials", type=int, default=10000)
    p.add_argument("--trial-seconds", type=float, default=60.0)
    p.add_argument("--mode", choices=("sim", "ray"), default="sim")
    p.add_argument("--storage", help="SQLAlchemy URL (default: SQLite in a temp run dir)")
    p.add_argument("--study", help="study file or packaged name (default: digits)")
    p.add_argument("--sampler", choices=("tpe", "nsga2", "random", "gp"))
    p.add_argument("--tag", help="suffix of the result files")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--json", action="store_true", help="print the JSON object")
    args = p.parse_args(argv)
    for name in ("workers", "trials"):
        if getattr(args, name) < 1:
            p.error(f"--{name}: must be a positive integer, got {getattr(args, name)}")
    if not args.trial_seconds > 0:
        p.error(f"--trial-seconds: must be positive, got {args.trial_seconds}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="driver-scale-") as tmp:
        raw = (run_sim if args.mode == "sim" else run_ray)(args, Path(tmp))
    out = report(args, raw)
    stem = f"driver_scale_{args.mode}_{out['storage']}" + (f"_{args.tag}" if args.tag else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(out, indent=2) + "\n")
    plot(out, raw["asks_ms"], args.out / f"{stem}.png")
    if args.json:
        print(json.dumps(out))
    else:
        keys = ("workers", "trials", "utilisation", "trials_per_s", "ask_ms_p50",
                "ask_ms_p99", "ask_ms_p99_first1000", "ask_ms_p99_last1000", "tell_ms_p50",
                "driver_cpu_s_per_trial", "driver_rss_mb", "ledger_exact")
        for k in keys:
            print(f"{k:>24}: {out[k]}")
    return out


if __name__ == "__main__":
    main()
