"""``nas pareto RUN_DIR [--objectives a,b[,c]] [--json] [--plot FILE.png|FILE.html]``:
the feasible non-dominated trials of a search with their objective values, spec hash and
block mix, the hypervolume against a stated reference point, and the baselines."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pareto", help="the Pareto front of a search and its hypervolume",
                       description=__doc__)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of `nas search`")
    p.add_argument("--objectives", metavar="a,b[,c]",
                   help="metrics to compare (default: the study's objectives); any of "
                        "accuracy, latency_ms, memory_mb, params, macs")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE", help="write a plot: FILE.png (static) or "
                   "FILE.html (interactive, self-contained)")
    p.set_defaults(func=run)


def parse_objectives(text: str | None) -> list[str] | None:
    from ..errors import UserError

    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not 1 <= len(names) <= 3:
        raise UserError(f"--objectives {text!r}: give 1 to 3 comma-separated metrics, "
                        "e.g. accuracy,latency_ms")
    return names


def run(args: argparse.Namespace) -> int:
    from ..results.front import pareto
    from ..results.plot import write_plot
    from ..results.records import open_run

    names = parse_objectives(args.objectives)
    results = open_run(args.run_dir)
    result = pareto(results, names)
    plot = write_plot(result, args.plot, title=f"{results.study.name}: Pareto front"
                      ) if args.plot else None
    if args.json:
        out = result.to_dict()
        if plot is not None:
            out["plot"] = str(plot)
        print(json.dumps(out, indent=2))
        return 0
    print(format_text(result))
    if plot is not None:
        print(f"plot written to {plot}")
    return 0


def format_text(result) -> str:
    from ..results.front import baseline_verdict
    from ..results.plot import short_name
    from ..results.rank import NOISY_SPREAD

    d = result.to_dict()
    metrics = result.metrics
    lines = ["objectives  " + ", ".join(f"{o['metric']} ({o['direction']})"
                                         for o in d["objectives"])]
    ref = ", ".join(f"{m} {d['reference_point'][m]:.4g} [{d['reference_rule'][m]}]"
                    for m in metrics)
    lines.append(f"reference   {ref}")
    c = d["counts"]
    lines.append(f"hypervolume {d['hypervolume']:.6g} of the found trials, "
                 f"{d['hypervolume_with_baselines']:.6g} with the baselines (maximised "
                 f"objectives negated; {c['front']} front of {c['feasible']} feasible, "
                 f"{c['infeasible']} infeasible trials)")
    lines.append(f"rule        {d['dominance_rule']}")
    if not d["front"]:
        lines.append("no found trial on the front: " + (
            "a baseline dominates every feasible trial" if c["feasible"] else
            "no feasible trial at full fidelity yet"))
    else:
        header = ["trial"] + metrics + ["hash", "blocks"]
        rows = [[str(f["trial"]) + ("*" if f["trial"] == d["knee"] else "")]
                + [_num(f["values"][m]) + ("!" if m == "latency_ms" and f.get("latency_noisy")
                                           else "") for m in metrics]
                + [f["hash"][:12], f["blocks"]] for f in d["front"]]
        lines += [""] + _table(header, rows) + ["(* the knee)"]
        if "latency_ms" in metrics and any(f.get("latency_noisy") for f in d["front"]):
            lines.append("(! latency spread (p90 - p10) / median above "
                         f"{NOISY_SPREAD:g}: too noisy to rank by; re-measure with "
                         "`nas rank`)")
    beaten = d["dominated_by_baseline"]
    if beaten:
        brows = [[str(b["trial"])] + [_num(b["values"][m]) for m in metrics]
                 + [", ".join(map(short_name, b["baselines"]))
                    + (" (else on the front)" if b["would_be_on_front"] else "")]
                 for b in beaten]
        lines += ["", "feasible trials a baseline dominates (off the front, never picked):"]
        lines += _table(["trial"] + metrics + ["dominated by"], brows)
    if d["baselines"]:
        brows = [[short_name(b["name"])] + [_num(b["values"][m]) for m in metrics]
                 + [baseline_verdict(b), b["source"]] for b in d["baselines"]]
        lines += ["", "baselines:"] + _table(["baseline"] + metrics + ["vs front", "measured"],
                                             brows)
    return "\n".join(lines)


def _num(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()  # noqa: E731
    return [fmt(header)] + [fmt(r) for r in rows]
