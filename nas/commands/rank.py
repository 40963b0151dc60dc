"""``nas rank RUN_DIR [--seeds N] [--top K] [--json]``: re-evaluate the K best found
architectures and the study's baselines under the identical protocol (checks, proxy
training, latency measurement) with seeds 0..N-1, in this process one after another
(no Ray). Prints mean and std per objective, the Pareto rank of each (by the means), and
for each found architecture the baselines it dominates, where "dominates" means better
on EVERY objective by more than the seed spread (|mean_a - mean_b| > std_a + std_b).
Saves RUN_DIR/rank.json."""

from __future__ import annotations

import argparse
import json

from . import options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rank", help="re-evaluate the best found architectures against the "
                       "baselines over several seeds", description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of `nas search`")
    p.add_argument("--seeds", type=options.positive_int, default=3, metavar="N",
                   help="seeds (default 3)")
    p.add_argument("--top", type=options.positive_int, default=3, metavar="K",
                   help="found architectures to re-evaluate (default 3)")
    options.add_device(p, "networks are re-trained and measured")
    p.add_argument("--data-dir", metavar="D", help="where cifar*/imagefolder data are")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..results.rank import rank_run
    from ..results.records import open_run

    results = open_run(args.run_dir)
    report = rank_run(results, seeds=args.seeds, top=args.top, device=args.device,
                      data_dir=args.data_dir)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(format_text(report))
    return 0


def format_text(report: dict) -> str:
    from ..results.plot import short_name

    metrics = [o["metric"] for o in report["objectives"]]
    header = ["name", "kind", "rank"] + [f"{m} mean±std" for m in metrics] + ["status",
                                                                              "dominates"]
    rows = []
    for r in report["rows"]:
        name = short_name(r["name"]) if r["kind"] == "baseline" else r["name"]
        cells = [name, r["kind"], str(r["pareto_rank"] or "-")]
        for m in metrics:
            s = r["metrics"].get(m)
            cells.append(f"{s['mean']:.4g} ± {s['std']:.2g}" if s else "-")
        cells.append(r["status"])
        cells.append(", ".join(map(short_name, r["dominates"])) if r["kind"] == "found"
                     else "")
        rows.append(cells)
    widths = [max(len(c[i]) for c in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    seeds = report["seeds"]
    lines += ["", f"{len(seeds)} seed(s) {seeds}; rank = Pareto rank of the means "
              "(1 = non-dominated)", f"dominates: {report['dominance_rule']}",
              f"saved to {report['run_dir']}/rank.json"]
    return "\n".join(lines)
