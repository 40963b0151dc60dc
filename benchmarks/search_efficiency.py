"""Is the search worth its budget? The study's own sampler against random search and against
a single-objective TPE on the primary objective, same budget, several seeds: hypervolume of
the FEASIBLE Pareto front against device time spent.

    python benchmarks/search_efficiency.py --fast     # digits, 3 x 3 runs of 60 device-s
    python benchmarks/search_efficiency.py               # the same through run_search (Ray)
    python benchmarks/search_efficiency.py --fast --budget study --seeds 0 1 2 \
        --strategies default random tpe-primary nsga2-p20 mo-tpe --strategy \
        'nsga2-p20={"sampler": {"name": "nsga2", "options": {"population_size": 20}}}' \
        --strategy 'mo-tpe={"sampler": {"name": "tpe", "options": {}}}'
                                 # the committed result: the study's 6gpumin, 2 h of one core
                                 # ("default" was NSGA-II then; digits now defaults to tpe)
    nice -n 10 python benchmarks/search_efficiency.py --fast --budget 2gpumin --seeds 3 4 5 \\
        --strategies default random --out benchmarks/results/search_efficiency_digits_heldout
                                 # the held-out check (seeds the choice did not see)
    python benchmarks/search_efficiency.py --fast --strategy \\
        'nsga2-p50={"sampler": {"name": "nsga2", "options": {"population_size": 50}}}'

Strategies (``--strategies``; more with ``--strategy NAME=JSON``, JSON = study fields to
override, e.g. the sampler and its options, and ``"with_baselines": true`` to start the
search as ``nas search --with-baselines`` does: the study's baselines first, paid from the
budget, those that are points of the space told to the sampler with their parameters):

- ``default``: the study as written (e.g. NSGA-II; constraints reach it through
  ``trial.set_constraint``, as in every search; its ``sampler.start_from`` baselines
  first where it names some);
- ``random``: the same study with ``sampler: random`` and no start points;
- ``tpe-primary``: Optuna's TPE on the PRIMARY objective only (objectives cut to the
  first), constraints as usual, no start points.

Every strategy runs with the same budget (``--budget``, default the study's) and the same
seeds (the search seed: sampler seed and training seed). Two modes:

- default: the real search, ``nas.search.run_search`` (local Ray, concurrency from the
  study, device time from the run's ledger), one run directory per (strategy, seed);
- ``--fast``: the same search core (``nas.search.core``: sampler, dedup, budget policy,
  constraint telling, ledger), trials and ASHA rule, driven by the in-process executor
  (``nas.search.local``) one trial at a time; no Ray processes. Each trial is charged
  its PROCESS CPU TIME by default (``--clock cpu``: what it costs on an idle core, robust to
  other jobs on a shared machine; ``--clock wall`` charges wall time like the ledger).

Hypervolume: the study's objectives (for ``tpe-primary`` too: latency etc. come from the
trial's measured metrics), of the complete, feasible, non-duplicate trials seen so far,
after each trial's ledger entry (its cost), so a curve is HV against cumulative device
time. Two reference points, each shared by every run of the comparison:

- ``pooled-nadir`` (the headline): the worst value of each objective over the feasible
  points of ALL runs pooled. It frames the region the trained feasible models reach: on
  an easy dataset every trained model is far above chance, and a chance-level reference
  gives most of the volume to the first trained model whatever the strategy;
- ``chance-and-limits``: chance accuracy (1 / classes) for a maximised ``accuracy``, the
  constraint's limit for a constrained metric (every feasible value is within it), else
  the worst feasible value over all runs: fixed before any run, but dominated by accuracy.

The headline: the budget fraction at which the default strategy's mean curve first reaches
the mean FINAL hypervolume of random search. Writes
benchmarks/results/search_efficiency_<study>.{json,png}; run directories go to
runs/bench-search-efficiency/ and are reused when present (``--fresh`` to redo);
``--cache FILE`` keeps each finished run's events in FILE too, so a comparison longer
than one sitting (digit-scenes: ~22 CPU-min per run at its 20 device-minutes) resumes from a file
kept in the repository; ``--no-run`` analyses what that file holds.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import shlex
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hv_curves import first_reach, hypervolume_curve, mean_curve, median_fraction  # noqa: E402
from _search_runs import WITH_BASELINES, Event, RunCache, finished_run  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "runs" / "bench-search-efficiency"
BUILTIN = ("default", "random", "tpe-primary")


def default_reference(study: Any, points: Sequence[Sequence[float]]) -> list[float]:
    """Chance level for accuracy, the constraint's limit for a constrained metric, else the
    worst of ``points`` (all runs' feasible points) in that objective."""
    ref = []
    for k, obj in enumerate(study.objectives):
        if obj.metric == "accuracy" and obj.direction == "maximize":
            ref.append(1.0 / study.classes)
        elif obj.metric in study.constraints and obj.direction == "minimize":
            ref.append(float(study.constraints[obj.metric]))
        else:
            ref.append(nadir(points, [o.direction for o in study.objectives])[k])
    return ref


def nadir(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[float]:
    """The worst value of each objective over ``points``."""
    if not points:
        return [0.0 if d.startswith("max") else 1.0 for d in directions]
    return [min(p[k] for p in points) if d.startswith("max") else max(p[k] for p in points)
            for k, d in enumerate(directions)]


# --------------------------------------------------------------------------- strategies
def strategy_study(base: dict[str, Any], name: str, override: dict[str, Any] | None) -> dict:
    """The study dict a strategy runs."""
    d = copy.deepcopy(base)
    # random and tpe-primary are the plain samplers: no start points (a study's
    # sampler.start_from belongs to its default; a --strategy JSON may set them).
    if name == "random":
        d["sampler"] = {**d.get("sampler", {}), "name": "random", "options": {},
                        "start_from": []}
    elif name == "tpe-primary":
        d["sampler"] = {**d.get("sampler", {}), "name": "tpe", "options": {},
                        "start_from": []}
        d["objectives"] = d["objectives"][:1]
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(d.get(key), dict):
            d[key] = {**d[key], **value}
        else:
            d[key] = value
    d["name"] = f"{base['name']}-{name}".replace("_", "-")
    return d


def start_trials(sd: dict[str, Any]) -> int:
    """How many baselines a strategy's search evaluates before its sampler proposes:
    enqueued when the run's study is created, they are its trials 0 .. n-1."""
    start = list(sd.get("sampler", {}).get("start_from") or [])
    rest = [b for b in sd.get("baselines", []) if b not in start]
    return len(start) + (len(rest) if sd.get(WITH_BASELINES) else 0)


def parse_strategy(text: str) -> tuple[str, dict[str, Any]]:
    name, eq, body = text.partition("=")
    try:
        override = json.loads(body) if eq else None
    except ValueError as err:
        raise SystemExit(f"--strategy {text!r}: the part after '=' is not JSON ({err})") \
            from None
    if not name or not isinstance(override, dict):
        raise SystemExit(f"--strategy {text!r}: write NAME=JSON, JSON a map of study fields")
    return name, override


# --------------------------------------------------------------------------- analysis
def analyse(runs: list[dict[str, Any]], study: Any, budget_s: float) -> dict[str, Any]:
    """Curves, final hypervolumes and budget fractions for both reference points."""
    directions = [o.direction for o in study.objectives]
    pooled = [e.point for r in runs for e in r["events"] if e.point is not None]
    refs = {"pooled-nadir": nadir(pooled, directions),
            "chance-and-limits": default_reference(study, pooled)}
    grid = budget_grid(budget_s)
    out: dict[str, Any] = {"reference_points": refs, "by_reference": {}}
    names = list(dict.fromkeys(r["strategy"] for r in runs))
    for ref_name, ref in refs.items():
        per: dict[str, Any] = {}
        for r in runs:
            r.setdefault("curves", {})[ref_name] = hypervolume_curve(r["events"], directions,
                                                                     ref)
        for name in names:
            rs = [r for r in runs if r["strategy"] == name]
            curves = [r["curves"][ref_name] for r in rs]
            finals = [c[-1][1] for c in curves]
            per[name] = {"final_hv": finals, "final_hv_mean": statistics.fmean(finals),
                         "final_hv_std": statistics.pstdev(finals),
                         "mean_curve": mean_curve(curves, grid)}
        target = per["random"]["final_hv_mean"] if "random" in per else None
        # Each seed's random final: paired targets (one lucky first trial above the mean of
        # random's finals does not count as reaching).
        random_final = {r["seed"]: r["curves"][ref_name][-1][1] for r in runs
                        if r["strategy"] == "random"}
        for name, s in per.items():
            if target is None:
                break
            t = first_reach(s["mean_curve"], target)
            s["fraction_to_random_final"] = None if t is None else t / budget_s
            seeds = [first_reach(r["curves"][ref_name], target) for r in runs
                     if r["strategy"] == name]
            s["per_seed_fraction_to_random_final"] = [None if x is None else x / budget_s
                                                      for x in seeds]
            # The headline: each seed's own fraction, their median and its bootstrap interval.
            s["median_fraction_to_random_final"] = median_fraction(
                s["per_seed_fraction_to_random_final"])
            # Paired by seed: each seed's run against the SAME seed's random final.
            mine = [r for r in runs if r["strategy"] == name]
            reach = [first_reach(r["curves"][ref_name], random_final[r["seed"]])
                     if r["seed"] in random_final else None for r in mine]
            paired = [None if x is None else x / budget_s for x in reach]
            s["per_seed_fraction_to_same_seed_random_final"] = paired
            s["median_fraction_to_same_seed_random_final"] = median_fraction(paired)
            if name != "random":
                s["final_hv_vs_random"] = paired_difference(runs, ref_name, name)
            if any(r["start_trials"] for r in mine):
                s["own_proposals"] = own_proposals(mine, random_final, directions, ref, budget_s)
        out["by_reference"][ref_name] = {"target_random_final_mean": target,
                                         "strategies": per}
    return out


def budget_grid(budget_s: float) -> list[float]:
    """Where mean curves are read: 201 points from 0 to the budget."""
    return [budget_s * i / 200 for i in range(201)]


def own_proposals(rs: list[dict[str, Any]], random_final: dict[int, float],
                  directions: list[str], ref: list[float], budget_s: float) -> dict:
    """For a search that starts from baselines: what its sampler's OWN proposals reach.
    The front without the start trials' points (their cost still spent): the budget
    fraction at which it reaches the same seed's random final, and its final
    hypervolume, so the credit the hand-designed start points take is visible."""
    finals, paired, curves = [], [], []
    for r in rs:
        events = [e if e.trial is None or e.trial >= r["start_trials"]
                  else Event(cost_s=e.cost_s, point=None, trial=e.trial) for e in r["events"]]
        curve = hypervolume_curve(events, directions, ref)
        curves.append(curve)
        finals.append(curve[-1][1])
        x = (first_reach(curve, random_final[r["seed"]]) if r["seed"] in random_final
             else None)
        paired.append(None if x is None else x / budget_s)
    return {"final_hv": finals, "final_hv_mean": statistics.fmean(finals),
            "mean_curve": mean_curve(curves, budget_grid(budget_s)),
            "per_seed_fraction_to_same_seed_random_final": paired,
            "median_fraction_to_same_seed_random_final": median_fraction(paired)}


def paired_difference(runs: list[dict[str, Any]], ref_name: str,
                      name: str) -> dict[str, Any]:
    """Final hypervolume of ``name`` minus random search's, paired by seed (the same seed
    trains the same way): mean, standard error, 95% t-interval and the paired t-test
    (nas.results.rankstats, the test `nas rank` uses)."""
    from scipy.stats import t as student_t

    from nas.results.rankstats import compare

    final = {(r["strategy"], r["seed"]): r["curves"][ref_name][-1][1] for r in runs}
    a = {seed: v for (n, seed), v in final.items() if n == name}
    b = {seed: v for (n, seed), v in final.items() if n == "random"}
    r = compare(a, b)
    if r.get("se") and r.get("df"):
        half = float(student_t.ppf(0.975, r["df"])) * r["se"]
        r["ci95"] = [r["diff"] - half, r["diff"] + half]
    r["per_seed"] = {str(seed): a[seed] - b[seed] for seed in sorted(set(a) & set(b))}
    return r


def plot(result: dict[str, Any], runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget_s = result["budget_s"]
    refs = list(result["analysis"]["by_reference"])
    fig, axes = plt.subplots(1, len(refs), figsize=(7 * len(refs), 4.8), squeeze=False)
    names = list(dict.fromkeys(r["strategy"] for r in runs))
    colors = {n: plt.cm.tab10(i % 10) for i, n in enumerate(names)}
    for ax, ref_name in zip(axes[0], refs, strict=True):
        block = result["analysis"]["by_reference"][ref_name]
        for r in runs:
            c = r["curves"][ref_name]
            ax.step([t / budget_s for t, _ in c], [v for _, v in c], where="post",
                    color=colors[r["strategy"]], alpha=0.25, lw=0.8)
        for name in names:
            s = block["strategies"][name]
            frac = s.get("fraction_to_random_final")
            label = f"{name} (mean of {len(s['final_hv'])})"
            if name != "random" and "fraction_to_random_final" in s:
                label += (f": reaches random's final at {frac:.2f}" if frac is not None
                          else ": never reaches random's final")
            ax.step([t / budget_s for t, _ in s["mean_curve"]],
                    [v for _, v in s["mean_curve"]], where="post", color=colors[name],
                    lw=2, label=label)
            if "own_proposals" in s:  # the start baselines' points left out
                own = s["own_proposals"]["mean_curve"]
                ax.step([t / budget_s for t, _ in own], [v for _, v in own], where="post",
                        color=colors[name], lw=1.5, ls="--",
                        label=f"{name}: its sampler's own proposals only")
        if block["target_random_final_mean"] is not None:
            ax.axhline(block["target_random_final_mean"], color="k", ls=":", lw=1)
        ref = result["analysis"]["reference_points"][ref_name]
        ax.set(xlabel=f"device time spent / budget ({result['budget']}, {result['mode']})",
               ylabel="hypervolume of the feasible front",
               title=f"reference {ref_name}: " + ", ".join(f"{v:.3g}" for v in ref))
        ax.set_xlim(0, max(1.0, max(r["spent_s"] for r in runs) / budget_s))
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"search efficiency, study {result['study']} "
                 f"(objectives: {', '.join(result['objectives'])})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", default="digits", help="a study file or packaged name")
    ap.add_argument("--budget", default="1gpumin",
                    help="per run, nas.budget syntax (device time: gpumin); 'study' = the "
                         "study's own budget")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", default=list(BUILTIN))
    ap.add_argument("--strategy", action="append", default=[],
                    help="NAME=JSON: an extra strategy, JSON = study fields to override")
    ap.add_argument("--fast", action="store_true",
                    help="the in-process executor (one trial at a time), no Ray")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="--fast: charge process CPU time (default) or wall time")
    ap.add_argument("--workdir", type=Path, default=WORK)
    ap.add_argument("--fresh", action="store_true", help="redo runs already in --workdir")
    ap.add_argument("--cache", type=Path, default=None,
                    help="a JSON file of finished runs' events (e.g. one kept in the "
                         "repository): runs found there are not run again")
    ap.add_argument("--no-run", action="store_true",
                    help="analyse only the runs already in --cache (a comparison still "
                         "in progress); the missing (strategy, seed) pairs are listed")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from nas.budget import parse_budget
    from nas.study import load_study

    if args.no_run and args.cache is None:
        raise SystemExit("--no-run: analyses the runs in --cache FILE; give --cache")
    study = load_study(args.study)
    base = study.to_dict()
    budget = study.budget.text if args.budget == "study" else args.budget
    budget_s = parse_budget(budget).limit
    if parse_budget(budget).kind != "device":
        raise SystemExit(f"--budget {budget}: use device time (e.g. 3gpumin)")
    extra = dict(parse_strategy(s) for s in args.strategy)
    unknown = [s for s in args.strategies if s not in BUILTIN and s not in extra]
    if unknown:
        raise SystemExit(f"--strategies: unknown {unknown}; built in: {', '.join(BUILTIN)}; "
                         "define others with --strategy NAME=JSON")
    names = list(dict.fromkeys([*args.strategies, *extra]))
    mode = "fast" if args.fast else "real"
    tag = f"{study.name}-{mode}{'-' + args.clock if args.fast else ''}-{budget}"
    runs = []
    t_start = time.perf_counter()
    # Seeds outermost: each seed's strategies run close in time, under similar machine load.
    cache = RunCache(args.cache)
    # Ctrl-C, `kill` and `kill -INT` (ignored by a background job otherwise) stop it alike
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    try:
        for seed in args.seeds:
            for name in names:
                sd = strategy_study(base, name, extra.get(name))
                path = args.workdir / tag / f"{name}-seed{seed}"
                key = RunCache.key(tag, name, seed, sd)
                record = None if args.fresh else cache.get(key)
                if record is None and args.no_run:
                    print(f"  {name} seed {seed}: not in {args.cache}, left out", flush=True)
                    continue
                if record is None:
                    record = finished_run(path, sd, mode, budget, seed, args, study)
                    cache.put(key, record)
                events = [Event(cost_s=c, point=None if p is None else tuple(p), trial=t)
                          for c, p, t in record["events"]]
                info = record["counts"]
                spent = sum(e.cost_s for e in events)
                runs.append({"strategy": name, "seed": seed, "run_dir": str(path),
                             "events": events, "counts": info, "spent_s": spent,
                             "wall_s": record.get("wall_s"),
                             "load_average_end": record.get("load_average_end"),
                             "sampler": sd["sampler"], "objectives": sd["objectives"],
                             WITH_BASELINES: bool(sd.get(WITH_BASELINES)),
                             "start_trials": start_trials(sd)})
                print(f"  {name} seed {seed}: {info['total']} trials, {info['complete']} "
                      f"feasible complete, spent {spent:.0f} s", flush=True)
    except KeyboardInterrupt:
        kept = f"{args.cache} and " if args.cache else ""
        print(f"\ninterrupted: the finished runs are kept ({kept}{args.workdir / tag}); the "
              "same command goes on from them, the interrupted run starting over",
              file=sys.stderr)
        raise SystemExit(130) from None
    if not runs:
        raise SystemExit("no run to analyse")
    analysis = analyse(runs, study, budget_s)
    result = {
        "script": "benchmarks/search_efficiency.py",
        "command": "python benchmarks/search_efficiency.py " + " ".join(
            shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": mode, "clock": args.clock if args.fast else "wall (ledger)",
        "study": study.name, "objectives": [o.metric for o in study.objectives],
        "constraints": study.constraints, "budget": budget, "budget_s": budget_s,
        "seeds": args.seeds, "device": "cpu", "torch": torch.__version__,
        "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "threads_per_trial": max(1, int(study.resources.cpus_per_trial)),
        "concurrency": 1 if args.fast else study.resources.concurrency,
        "load_average_1_5_15_end": list(os.getloadavg()),
        "wall_s": time.perf_counter() - t_start,
        "strategies": {n: strategy_study(base, n, extra.get(n))["sampler"] for n in names},
        "started_with_baselines": list(dict.fromkeys(r["strategy"] for r in runs
                                                     if r["start_trials"])),
        "analysis": analysis,
        "runs": [{k: v for k, v in r.items() if k not in ("events", "curves")}
                 | {"curves": r["curves"],
                    "trial_costs": [[e.trial, e.cost_s, e.point] for e in r["events"]]}
                 for r in runs],
    }
    stem = args.out or RESULTS / f"search_efficiency_{study.name}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(result, indent=1))
    plot(result, runs, Path(f"{stem}.png"))
    for ref_name, block in analysis["by_reference"].items():
        print(f"reference {ref_name} {analysis['reference_points'][ref_name]}: random final "
              f"mean {block['target_random_final_mean']}")
        for name, s in block["strategies"].items():
            print(f"  {name:14s} final HV {s['final_hv_mean']:.4f} +- {s['final_hv_std']:.4f}"
                  f"  reaches random's final at "
                  f"{s.get('fraction_to_random_final')} of the budget; per seed "
                  f"{s.get('per_seed_fraction_to_random_final')}")
            m = s.get("median_fraction_to_random_final")
            if m:
                print(f"  {'':14s} median over seeds {m['median']} "
                      f"({m['level']:.0%} bootstrap {m['ci']}; {m['reached']} of {m['n']} "
                      "seeds reach it)")
            m = s.get("median_fraction_to_same_seed_random_final")
            if m:
                print(f"  {'':14s} against the same seed's random final: median {m['median']} "
                      f"({m['level']:.0%} bootstrap {m['ci']}; per seed "
                      f"{s['per_seed_fraction_to_same_seed_random_final']})")
            if "final_hv_vs_random" in s:
                d = s["final_hv_vs_random"]
                print(f"  {'':14s} minus random, paired by seed: {d['diff']:+.4f} "
                      f"(95% CI {d.get('ci95')}; {d['test']}, p {d['p']})")
            if "own_proposals" in s:
                o = s["own_proposals"]
                print(f"  {'':14s} its sampler's own proposals (start baselines left out): "
                      f"final HV {o['final_hv_mean']:.4f}; reach the same seed's random "
                      f"final at {o['per_seed_fraction_to_same_seed_random_final']}")
    print(f"wrote {stem}.json and .png")


if __name__ == "__main__":
    main()
