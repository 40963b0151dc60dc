"""``nas status RUN_DIR [--json]``: trial counts by state and the budget of a search
(running or finished), its front and best trial (the rule of :mod:`nas.run.dominance`,
the same as ``nas pareto``), read from its run directory alone; Ray is not needed."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="trial counts and budget of a search run",
                       description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of `nas search`")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..run.summary import summarize

    s = summarize(args.run_dir)
    if args.json:
        out = s.to_dict()
        out.pop("stop_reason", None)
        out.pop("interrupted_recovered", None)
        out.pop("extra", None)
        print(json.dumps(out, indent=2))
        return 0
    c, b = s.counts, s.budget
    print(f"run       {s.run_dir}")
    print(f"study     {s.study} (optuna study {s.optuna_study!r} in {s.storage})")
    print(f"trials    {c['total']} total: {c['complete']} complete, {c['infeasible']} "
          f"infeasible, {c['stopped']} stopped, {c['failed']} failed "
          f"({c['interrupted']} interrupted), {c['duplicate']} duplicate "
          f"(+{c['duplicates_skipped']} proposals replaced), "
          f"{c['running']} running, {c['waiting']} waiting; {c['baseline']} baselines")
    print(f"budget    spent {b['spent']:.4g} of {b['limit']:.4g} {b['unit']} "
          f"({b['left']:.4g} left; {b['device_s']:.1f} device-seconds in "
          f"{s.ledger_entries} attempts)")
    if s.best:
        print(f"best      {s.best['metric']} {s.best['value']:.4g} (trial "
              f"{s.best['number']}); Pareto front {s.front_size} trials")
    beaten = s.dominated_by_baseline
    if beaten:
        from ..results.plot import short_name

        print(f"baselines dominate {len(beaten)} feasible trial(s), kept off the front: "
              + "; ".join(f"{n} by {', '.join(map(short_name, beaten[n]))}"
                          for n in sorted(beaten, key=int)))
    print(f"sessions  {s.sessions}")
    d = s.driver
    who = f"pid {d['pid']} on {d.get('host', '?')}" if "pid" in d else "the driver"
    if d.get("state") == "running":
        print(f"driver    running ({who})")
    elif d.get("state") == "gone":
        lost = (f"; its {d['interrupted']} running trial(s) are interrupted"
                if d.get("interrupted") else "")
        print(f"driver    gone ({who} ended without stopping the search: killed?){lost}; "
              f"resume with: {d['resume']}")
    return 0
