"""``nas search [STUDY] [--budget B] [--out RUN_DIR] [--resume RUN_DIR] ...``: run a
search (Optuna proposes the trials, Ray Tune or this process runs them) into a run
directory.

With no STUDY it runs the packaged offline digits study into runs/digits-<timestamp>.
Ctrl-C (or ``kill -9``) stops it; ``nas search --resume RUN_DIR`` continues it.
A budget is the run's total: ``--resume RUN_DIR --budget B`` sets a new total B, which
must be more than the run has spent. Exit status: 0 the budget is spent or the space
exhausted; 2 a mistake in the command or study, or a study whose constraints no
candidate meets (stopped early, with which limit failed how); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import options
from .options import add_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="run (or resume) an architecture search",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("study", nargs="?", metavar="STUDY",
                   help="a study YAML file or a packaged study name (default: digits)")
    p.add_argument("--budget", metavar="B",
                   help="overrides the study's budget: 100gpuh, 30gpumin (device time), "
                        "2h, 45min (wall clock), 200trials")
    add_output(p, metavar="RUN_DIR", old_alias=True,
               help="run directory to create (default: runs/<study>-<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the search in RUN_DIR")
    p.add_argument("--address", metavar="A", help="a Ray cluster to join (default: a "
                   "local Ray on this machine)")
    p.add_argument("--executor", choices=("ray", "local"), default="ray",
                   help="who runs the trials: ray (Ray Tune, --concurrency at once; the "
                        "default) or local (this process, one trial at a time, no Ray)")
    p.add_argument("--storage", metavar="URL", help="Optuna storage as an SQLAlchemy URL, "
                   "e.g. postgresql://host/db (default: SQLite file in the run dir)")
    p.add_argument("--seed", type=options.seed, metavar="S",
                   help="sampler and training seed, 0..2**32-1 (default: the study's "
                        "sampler.seed)")
    p.add_argument("--concurrency", type=options.positive_int, metavar="N",
                   help="trials at once (default: the study's resources.concurrency)")
    options.add_device(p, "trials train (cpu: CPU workers only; cuda: the study's GPU "
                          "trials; auto: as study.resources says) and, with --dry-run, "
                          "where the plan measures a step")
    p.add_argument("--with-baselines", action="store_true",
                   help="also evaluate the study's baselines under the same protocol")
    p.add_argument("--data-dir", metavar="DIR", help="where cifar*/imagefolder data are")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (space size, budget, expected trials, resources "
                        "per trial) and exit; needs no dataset (nas.search.plan)")
    p.add_argument("--device-profile", metavar="PROFILE",
                   help="with --dry-run: price trials from this device profile (YAML from "
                        "nas profile-device, or a shipped profile's name) instead of timing "
                        "a step on this machine")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..search.driver import run_search

    if args.device_profile and not args.dry_run:
        from ..errors import UserError

        raise UserError("--device-profile: only used with --dry-run (a search measures "
                        "on the device it runs on)")
    if args.dry_run:
        from ..search.plan import dry_run

        return dry_run(args)

    summary = run_search(
        args.study, run_dir=args.output, budget=args.budget, address=args.address,
        storage=args.storage, seed=args.seed, concurrency=args.concurrency,
        with_baselines=args.with_baselines, resume=args.resume, data_dir=args.data_dir,
        progress=False if getattr(args, "quiet", 0) else None, device=args.device,
        executor=args.executor)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        c, b = summary.counts, summary.budget
        best = summary.best
        print(f"search {summary.stop_reason}: {c['total']} trials ({c['complete']} complete, "
              f"{c['infeasible']} infeasible, {c['stopped']} stopped, {c['failed']} failed "
              f"({c['interrupted']} interrupted, re-run), {c['duplicate']} duplicate; "
              f"{c['duplicates_skipped']} proposals of known architectures replaced); "
              f"budget {b['spent']:.4g} of {b['limit']:.4g} "
              f"{b['unit']}")
        if best:
            print(f"best {best['metric']} {best['value']:.4g} (trial {best['number']}); "
                  f"Pareto front: {summary.front_size} trials")
        if b["kind"] != "trials" and b["spent"] > b["limit"]:
            print(f"over budget by {b['spent'] - b['limit']:.3g} {b['unit']} "
                  f"({(b['spent'] / b['limit'] - 1):.1%}): the trials admitted last cost "
                  "more than their expected cost, and started trials always finish")
        print(f"run directory: {summary.run_dir}  (nas status {summary.run_dir})")
    if summary.stop_reason == "constraints":
        print(f"nas search: error: stopped early: {summary.extra['why']}", file=sys.stderr)
        return 2
    if summary.stop_reason == "interrupted":
        print(f"interrupted; continue with: nas search --resume {summary.run_dir}",
              file=sys.stderr)
        return 130
    return 0
