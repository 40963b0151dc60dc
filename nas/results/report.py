"""``nas report``: one self-contained HTML page about a search.

Self-contained = it opens offline and can be mailed as one file: the Pareto plot is an
inline PNG (base64 ``data:`` URI), or with ``interactive=True`` a plotly figure with
plotly.js embedded; no stylesheet, script or image is fetched from anywhere.

Sections: the study (description, objectives, constraints, training protocol), the budget
spent and trial counts, the Pareto front (plot, hypervolume and reference point, front
table, baselines), the ranking table (if ``nas rank`` was run: RUN_DIR/rank.json) and
the chosen spec (the latest ``nas export``: RUN_DIR/exports/exports.jsonl and its YAML).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import os
from pathlib import Path
from typing import Any

from ..outputs import write_output, write_side
from .export import hide_password, read_exports
from .front import ParetoResult, pareto
from .plot import html_figure, png_bytes, short_name
from .rank import load_rank
from .records import RunResults

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.6em}table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}pre{background:#f7f7f7;
padding:.8em;overflow:auto;font-size:.85em}.muted{color:#777}img{max-width:100%}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _table(header: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td class=\"num\">{_e(c)}</td>" if i in numeric else
                         f"<td>{_e(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv(pairs: list[tuple[str, Any]]) -> str:
    return _table(["", ""], [[k, v] for k, v in pairs]).replace(
        "<thead><tr><th></th><th></th></tr></thead>", "")


def build_report(results: RunResults, *, interactive: bool = False) -> str:
    """The report's HTML text."""
    study = results.study
    summary = results.summary()
    front = pareto(results)
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>nas report: {_e(study.name)}</title><style>{_CSS}</style></head><body>",
             f"<h1>Search report: {_e(study.name)}</h1>",
             f"<p class=\"muted\">{_e(results.run.path)} &middot; generated "
             f"{_e(_dt.datetime.now().isoformat(timespec='seconds'))}</p>"]
    parts.append(_study_section(results, summary))
    parts.append(_budget_section(summary))
    parts.append(_front_section(results, front, interactive))
    parts.append(_rank_section(results))
    parts.append(_export_section(results))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(results: RunResults, out: str | os.PathLike, *,
                 interactive: bool = False) -> Path:
    return write_output(out, build_report(results, interactive=interactive))


def _study_section(results: RunResults, summary: dict[str, Any]) -> str:
    s = results.study
    t = s.training
    data = s.data.dataset + (f" (root {s.data.root})" if s.data.root else "")
    pairs = [
        ("description", s.description or "-"),
        ("data", f"{data}; input {s.input_channels}x{s.input_size[0]}x{s.input_size[1]}, "
                 f"{s.classes} classes; validation fraction {s.data.val_fraction}"),
        ("objectives", ", ".join(f"{o.metric} ({o.direction})" for o in s.objectives)),
        ("constraints", ", ".join(f"{k} <= {v:g}" for k, v in s.constraints.items()) or
         "none"),
        ("proxy training", f"{t.epochs} epochs, batch {t.batch_size}, {t.optimizer} lr "
                           f"{t.lr:g}, {t.schedule} schedule, precision {t.precision}"),
        ("latency protocol", f"batch {s.measure.batch_size}, {s.measure.warmup} warmup, "
                             f"{s.measure.repeats} repeats"),
        ("sampler", f"{s.sampler.name} (seed {s.sampler.seed}); early stopping "
                    f"{s.fidelity.scheduler}"),
        ("storage", f"Optuna study {results.optuna_name!r} in "
                    f"{hide_password(results.run.storage_url())}"),
        ("sessions", summary.get("sessions")),
    ]
    return "<h2>Study</h2>" + _kv(pairs)


def _budget_section(summary: dict[str, Any]) -> str:
    b, c = summary["budget"], summary["counts"]
    pairs = [
        ("budget", f"spent {b['spent']:.4g} of {b['limit']:.4g} {b['unit']} "
                   f"({b['left']:.4g} left)"),
        ("device time", f"{b['device_s']:.1f} device-seconds in "
                        f"{summary['ledger_entries']} attempts"),
        ("trials", f"{c['total']} total: {c['complete']} complete, {c['infeasible']} "
                   f"infeasible, {c['stopped']} stopped early, {c['failed']} failed, "
                   f"{c['duplicate']} duplicate; {c.get('baseline', 0)} baselines"),
    ]
    return "<h2>Budget</h2>" + _kv(pairs)


def _front_section(results: RunResults, front: ParetoResult, interactive: bool) -> str:
    out = ["<h2>Pareto front</h2>"]
    ref = ", ".join(f"{m} {_num(v)} ({r})" for m, v, r in
                    zip(front.metrics, front.reference, front.reference_rules, strict=True))
    out.append(f"<p>Hypervolume <b>{front.hypervolume:.6g}</b> against the reference point "
               f"{_e(ref)} (maximised objectives negated). {len(front.front)} front "
               f"trial(s) of {len(front.feasible)} feasible, {len(front.infeasible)} "
               "infeasible.</p>")
    if len(front.objectives) in (2, 3) and (front.feasible or front.infeasible):
        if interactive:
            out.append(html_figure(front, full_html=False))
        else:
            png = png_bytes(front)
            write_side(results.run.plots_dir / "pareto.png", png)
            data = base64.b64encode(png).decode("ascii")
            out.append(f"<img alt=\"Pareto plot\" src=\"data:image/png;base64,{data}\">")
    if not front.front:
        out.append("<p>No feasible trial at full fidelity yet.</p>")
        return "\n".join(out)
    knee = front.knee.number if front.knee else None
    rows = [[f"{t.number}{' (knee)' if t.number == knee else ''}"]
            + [_num(t.value(m)) for m in front.metrics] + [(t.hash or "")[:12], t.block_mix()]
            for t in front.front]
    num = set(range(1, 1 + len(front.metrics)))
    out.append(_table(["trial"] + front.metrics + ["hash", "blocks"], rows, num))
    d = front.to_dict()
    if d["baselines"]:
        brows = []
        for b in d["baselines"]:
            if not b["feasible"]:
                verdict = f"{b['status']}: not comparable"
            elif b["dominated_by"]:
                verdict = "dominated by trial " + ", ".join(map(str, b["dominated_by"]))
            else:
                verdict = "not dominated by the front"
            brows.append([short_name(b["name"])] + [_num(b["values"][m])
                                                    for m in front.metrics] + [verdict])
        out.append("<p>Baselines (same protocol, evaluated in the search):</p>")
        out.append(_table(["baseline"] + front.metrics + ["vs the front"], brows, num))
    return "\n".join(out)


def _rank_section(results: RunResults) -> str:
    rank = load_rank(results)
    if rank is None:
        return ("<h2>Ranking</h2><p class=\"muted\">Not run: <code>nas rank "
                f"{_e(results.run.path)}</code> re-evaluates the best architectures and "
                "the baselines over several seeds.</p>")
    metrics = [o["metric"] for o in rank["objectives"]]
    rows = []
    for r in rank["rows"]:
        cells = [short_name(r["name"]) if r["kind"] == "baseline" else r["name"], r["kind"],
                 r["pareto_rank"] or "-"]
        for m in metrics:
            s = r["metrics"].get(m)
            cells.append(f"{s['mean']:.4g} ± {s['std']:.2g}" if s else "-")
        cells += [r["status"], ", ".join(short_name(x) for x in r["dominates"])]
        rows.append(cells)
    table = _table(["name", "kind", "Pareto rank"] + [f"{m} (mean ± std)" for m in metrics]
                   + ["status", "dominates"], rows)
    proto = rank.get("protocol", {})
    return (f"<h2>Ranking</h2><p>{len(rank['seeds'])} seed(s) per architecture, "
            f"{_e(rank.get('executed', ''))}; device {_e(proto.get('device', '?'))}, "
            f"precision {_e(proto.get('precision', '?'))}, torch "
            f"{_e(proto.get('torch', '?'))}. {_e(rank['dominance_rule'])}.</p>{table}")


def _export_section(results: RunResults) -> str:
    exports = read_exports(results)
    if not exports:
        return ("<h2>Chosen architecture</h2><p class=\"muted\">None exported yet: "
                f"<code>nas export {_e(results.run.path)} --pick knee -o arch.yaml</code>"
                "</p>")
    last = exports[-1]
    text = None
    for candidate in (last.get("copy"), last.get("path")):
        if candidate and Path(candidate).is_file():
            text = Path(candidate).read_text()
            break
    values = ", ".join(f"{k} {_num(v)}" for k, v in last.get("values", {}).items())
    body = (f"<p>Trial {_e(last['trial'])} picked by <code>{_e(last['pick'])}</code> "
            f"({_e(last.get('why', ''))}; {_e(values)}), written to "
            f"<code>{_e(last['path'])}</code>, hash <code>{_e(last['hash'][:16])}</code>.</p>")
    if text is not None:
        body += f"<pre>{_e(text)}</pre>"
    return "<h2>Chosen architecture</h2>" + body
