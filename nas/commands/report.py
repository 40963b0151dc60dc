"""``nas report RUN_DIR -o report.html [--interactive]``: one self-contained HTML page
(no network needed to open it) with the study, the budget spent, the Pareto plot and
front, the ranking table (if `nas rank` was run) and the chosen architecture: the trial
--pick (default knee) selects, named with its rule, and the exports made so far. The
plot is an inline PNG, or with --interactive a plotly figure with its
JavaScript embedded (a bigger file)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of a search",
                       description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of `nas search`")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the HTML to write")
    p.add_argument("--interactive", action="store_true",
                   help="embed an interactive plotly plot instead of a PNG")
    p.add_argument("--pick", default="knee", metavar="PICK",
                   help="the rule that chooses the architecture the report names, as in "
                        "`nas export --pick` (default: knee)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..results.export import parse_pick
    from ..results.records import open_run
    from ..results.report import write_report

    parse_pick(args.pick)  # a bad rule is refused before anything is written
    path = write_report(open_run(args.run_dir), args.output, interactive=args.interactive,
                        pick=args.pick)
    print(f"report written to {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0
