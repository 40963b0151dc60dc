"""``nas rank RUN_DIR [--seeds N] [--top K] [--alpha A] [--json]``: re-evaluate the K
best found architectures and the study's baselines under the identical protocol (checks,
proxy training, latency measurement, pinned threads) with seeds 0..N-1, in this process
one after another (no Ray). Prints per objective the mean +- standard error of each, its
Pareto rank (by the means), and per found-vs-baseline pair the difference, its standard
error (paired by seed) and the verdict of a two-sided t-test (paired, else Welch) at
alpha (``--alpha``, 0.05 by default), Holm-corrected across all pairs and objectives;
for differences not yet significant, how many seeds would make them so. Then per pair
whether the found dominates the baseline: better on every objective by an
intersection-union test (the largest one-sided p-value over the objectives),
Holm-corrected across the pairs. Latency is compared on the 10th percentile of the
repeats (load delays some repeats, never speeds one up) and the load average is
recorded. Saves RUN_DIR/rank.json. Each finished evaluation is kept in
RUN_DIR/rank_evals.jsonl: after Ctrl-C the same command continues, more --seeds or a
larger --top evaluate only what is new, and another --alpha judges the saved
evaluations again without training anything."""

from __future__ import annotations

import argparse
import json
import sys

from ..results.rank_log import RANK_EVALS
from ..results.rankstats import ALPHA
from . import options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rank", help="re-evaluate the best found architectures against the "
                       "baselines over several seeds", description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of `nas search`")
    p.add_argument("--seeds", type=options.positive_int, default=3, metavar="N",
                   help="seeds (default 3)")
    p.add_argument("--top", type=options.positive_int, default=3, metavar="K",
                   help="found architectures to re-evaluate (default 3)")
    p.add_argument("--alpha", type=options.significance, default=ALPHA, metavar="A",
                   help="family-wise error rate of the tests, Holm-corrected (default 0.05)")
    options.add_device(p, "networks are re-trained and measured")
    p.add_argument("--data-dir", metavar="D", help="where cifar*/imagefolder data are")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..results.rank import rank_run
    from ..results.records import open_run

    results = open_run(args.run_dir)
    try:
        report = rank_run(results, seeds=args.seeds, top=args.top, device=args.device,
                          data_dir=args.data_dir, alpha=args.alpha)
    except KeyboardInterrupt:
        print(f"nas rank: interrupted; every finished evaluation is saved in "
              f"{results.run.path / RANK_EVALS}: the same command continues from them",
              file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(format_text(report))
    return 0


def format_text(report: dict) -> str:
    from ..results.plot import short_name

    metrics = [o["metric"] for o in report["objectives"]]
    compared = report["protocol"].get("compared_on", {})
    header = ["name", "kind", "rank"] + [f"{m} mean±se" for m in metrics] + ["status"]
    rows = []
    for r in report["rows"]:
        name = short_name(r["name"]) if r["kind"] == "baseline" else r["name"]
        cells = [name, r["kind"], str(r["pareto_rank"] or "-")]
        for m in metrics:
            s = r["metrics"].get(compared.get(m, m))
            cells.append(f"{s['mean']:.4g} ± {s['sem']:.2g}" if s else "-")
        cells.append(r["status"])
        rows.append(cells)
    lines = _table(header, rows)
    if report["comparisons"]:
        header = ["found", "baseline", "objective", "diff ± se", "test", "p (Holm)",
                  "verdict"]
        rows = []
        for t in report["comparisons"]:
            se = "exact" if not t["se"] else f"{t['se']:.2g}"
            p = "-" if t["p_holm"] is None else f"{t['p_holm']:.3g}"
            verdict = t["verdict"] + (f" (~{t['seeds_needed']} seeds)"
                                      if t.get("seeds_needed") else "")
            rows.append([t["found"], short_name(t["baseline"]), t["compared_on"],
                         f"{t['diff']:+.4g} ± {se}", t["test"].split(" (")[0], p, verdict])
        lines += ["", "found - baseline:"] + _table(header, rows)
    pairs = report.get("dominance", {}).get("pairs", [])
    if pairs:
        header = ["found", "baseline", "p (one-sided, weakest objective)", "p (Holm)",
                  "dominates"]
        rows = [[p["found"], short_name(p["baseline"]),
                 "-" if p["p"] is None else f"{p['p']:.3g} ({p['weakest']})",
                 "-" if p["p_holm"] is None else f"{p['p_holm']:.3g}",
                 "yes" if p["dominates"] else "no"] for p in pairs]
        lines += ["", "does the found dominate the baseline:"] + _table(header, rows)
    seeds = report["seeds"]
    load = report.get("load_average_1_5_15", {})
    lines += ["", f"{len(seeds)} seed(s) {seeds}; rank = Pareto rank of the means "
              "(1 = non-dominated); ± = standard error of the mean",
              f"test: {report['test']['name']}, alpha {report['test']['alpha']}",
              f"dominates: {report['dominance_rule']}",
              f"seeds: {report['seeds_guidance']['text']}",
              f"latency compared on {compared.get('latency_ms', 'latency_ms')} of the repeats "
              f"with {report['protocol'].get('threads_pinned')} thread(s); load average "
              f"(1 min) {_load(load, 'start')} at the start, {_load(load, 'end')} at the "
              f"end on {report.get('cpu_count')} CPUs",
              f"saved to {report['run_dir']}/rank.json"]
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(c[i]) for c in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


def _load(load: dict, when: str) -> str:
    values = load.get(when) or []
    return f"{values[0]:.2f}" if values else "?"
