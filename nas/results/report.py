"""``nas report``: one self-contained HTML page about a search.

Self-contained = it opens offline and can be mailed as one file: the Pareto plot is an
inline PNG (base64 ``data:`` URI), or with ``interactive=True`` a plotly figure with
plotly.js embedded; no stylesheet, script or image is fetched from anywhere.

Sections: the study (description, objectives, constraints, training protocol), the budget
spent and trial counts, the Pareto front (plot, hypervolume and reference point, front
table, baselines measured in the search or by ``nas rank``, trials a baseline
dominates), the ranking table (if ``nas rank`` was run: RUN_DIR/rank.json) and the chosen
architecture: the trial that ``pick`` (default ``knee``, the rule of ``nas export
--pick``) selects NOW, named with its rule and reason, its spec, and the exports already
made (RUN_DIR/exports/exports.jsonl), each marked whether it is that trial.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..run.dominance import read_rank
from ..run.outputs import write_output, write_side
from .export import hide_password, pick_trial, read_exports
from .front import ParetoResult, baseline_verdict, pareto
from .plot import html_figure, plot_title, png_bytes, short_name
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


def build_report(results: RunResults, *, interactive: bool = False,
                 pick: str = "knee") -> str:
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
    parts.append(_export_section(results, pick))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(results: RunResults, out: str | os.PathLike, *,
                 interactive: bool = False, pick: str = "knee") -> Path:
    return write_output(out, build_report(results, interactive=interactive, pick=pick))


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
    out.append(f"<p>Hypervolume <b>{front.hypervolume:.6g}</b> of the found trials "
               f"({front.hypervolume_with_baselines:.6g} with the baselines) against the "
               f"reference point {_e(ref)} (maximised objectives negated). "
               f"{len(front.front)} front trial(s) of {len(front.feasible)} feasible, "
               f"{len(front.infeasible)} infeasible. Rule: {_e(front.to_dict()['dominance_rule'])}."
               "</p>")
    if len(front.objectives) in (2, 3) and (front.feasible or front.infeasible):
        title = plot_title(front, f"{results.study.name}: Pareto front")
        if interactive:
            out.append(html_figure(front, title, full_html=False))
        else:
            png = png_bytes(front, f"{results.study.name}: Pareto front")
            write_side(results.run.plots_dir / "pareto.png", png)
            data = base64.b64encode(png).decode("ascii")
            out.append(f"<img alt=\"{_e(title)}\" src=\"data:image/png;base64,{data}\">")
    num = set(range(1, 1 + len(front.metrics)))
    if not front.front:
        out.append("<p>No found trial on the front: " + (
            "a baseline dominates every feasible trial.</p>" if front.feasible else
            "no feasible trial at full fidelity yet.</p>"))
    else:
        knee = front.knee.number if front.knee else None
        rows = [[f"{t.number}{' (knee)' if t.number == knee else ''}"]
                + [_num(t.value(m)) for m in front.metrics]
                + [(t.hash or "")[:12], t.block_mix()] for t in front.front]
        out.append(_table(["trial"] + front.metrics + ["hash", "blocks"], rows, num))
    d = front.to_dict()
    if d["dominated_by_baseline"]:
        rows = [[b["trial"]] + [_num(b["values"][m]) for m in front.metrics]
                + [", ".join(map(short_name, b["baselines"]))]
                for b in d["dominated_by_baseline"]]
        out.append("<p>Feasible trials a baseline dominates (off the front, never "
                   "picked):</p>")
        out.append(_table(["trial"] + front.metrics + ["dominated by"], rows, num))
    if d["baselines"]:
        brows = [[short_name(b["name"])] + [_num(b["values"][m]) for m in front.metrics]
                 + [baseline_verdict(b), b["source"]] for b in d["baselines"]]
        out.append("<p>Baselines (same protocol):</p>")
        out.append(_table(["baseline"] + front.metrics + ["vs the front", "measured in"],
                          brows, num))
    return "\n".join(out)


def _rank_section(results: RunResults) -> str:
    rank = read_rank(results.run.path)
    if rank is None:
        return ("<h2>Ranking</h2><p class=\"muted\">Not run: <code>nas rank "
                f"{_e(results.run.path)}</code> re-evaluates the best architectures and "
                "the baselines over several seeds.</p>")
    metrics = [o["metric"] for o in rank["objectives"]]
    proto = rank.get("protocol", {})
    compared = proto.get("compared_on", {})
    rows = []
    for r in rank["rows"]:
        cells = [short_name(r["name"]) if r["kind"] == "baseline" else r["name"], r["kind"],
                 r["pareto_rank"] or "-"]
        for m in metrics:
            s = r["metrics"].get(compared.get(m, m))
            cells.append(f"{s['mean']:.4g} ± {s.get('sem', 0):.2g}" if s else "-")
        cells += [r["status"], ", ".join(short_name(x) for x in r["dominates"])]
        rows.append(cells)
    table = _table(["name", "kind", "Pareto rank"]
                   + [f"{compared.get(m, m)} (mean ± se)" for m in metrics]
                   + ["status", "dominates"], rows)
    tests = [[t["found"], short_name(t["baseline"]), t["compared_on"],
              f"{t['diff']:+.4g} ± {t['se']:.2g}" if t["se"] else f"{t['diff']:+.4g} (exact)",
              t["test"], _num(t["p_holm"], 3), t["verdict"], t.get("seeds_needed") or ""]
             for t in rank.get("comparisons", [])]
    if tests:
        table += ("<p>Found minus baseline:</p>" + _table(
            ["found", "baseline", "objective", "difference ± se", "test", "p (Holm)",
             "verdict", "seeds to separate"], tests))
    load = rank.get("load_average_1_5_15", {})
    test = rank.get("test", {})
    return (f"<h2>Ranking</h2><p>{len(rank['seeds'])} seed(s) per architecture, "
            f"{_e(rank.get('executed', ''))}; device {_e(proto.get('device', '?'))}, "
            f"precision {_e(proto.get('precision', '?'))}, torch "
            f"{_e(proto.get('torch', '?'))}, {_e(proto.get('threads_pinned', '?'))} "
            f"thread(s); load average {_e(load.get('start', '?'))} at the start. Test: "
            f"{_e(test.get('name', '?'))}, alpha {_e(test.get('alpha', '?'))}. "
            f"{_e(rank.get('dominance_rule', ''))}. Seeds: "
            f"{_e(rank.get('seeds_guidance', {}).get('text', ''))}.</p>{table}")


def _export_section(results: RunResults, pick: str) -> str:
    """The architecture ``pick`` chooses now (stated: rule, trial, reason) and the exports
    made so far, each marked whether it is that trial."""
    out = ["<h2>Chosen architecture</h2>"]
    try:
        picked = pick_trial(results, pick)
    except UserError as err:
        picked = None
        out.append(f"<p>Pick rule <code>{_e(pick)}</code>: {_e(err)}</p>")
    if picked is not None:
        t = picked.measured
        values = ", ".join(f"{o.metric} {_num(t.value(o.metric))}"
                           for o in results.study.objectives)
        out.append(f"<p>Pick rule <code>{_e(pick)}</code> (as <code>nas export --pick "
                   f"{_e(pick)}</code>) chooses <b>trial {picked.trial.number}</b>: "
                   f"{_e(picked.reason)}; {_e(values)}; hash "
                   f"<code>{_e((picked.trial.hash or '')[:16])}</code>, blocks "
                   f"{_e(picked.trial.block_mix())}.</p>")
    exports = read_exports(results)
    if not exports:
        out.append(f"<p class=\"muted\">Not exported yet: <code>nas export "
                   f"{_e(results.run.path)} --pick {_e(pick)} -o arch.yaml</code></p>")
        return "\n".join(out)
    chosen = picked.trial.number if picked is not None else None
    rows = [[e.get("time", ""), e["pick"], e["trial"], "yes" if e["trial"] == chosen else "no",
             e["path"]] for e in exports]
    out.append("<p>Exports made (<code>nas export</code>):</p>")
    out.append(_table(["time", "pick", "trial", f"is the {pick} choice", "written to"], rows))
    match = [e for e in exports if e["trial"] == chosen]
    if match:
        text = None
        for candidate in (match[-1].get("copy"), match[-1].get("path")):
            if candidate and Path(candidate).is_file():
                text = Path(candidate).read_text()
                break
        if text is not None:
            out.append(f"<p>Its exported spec ({_e(match[-1]['name'])}):</p><pre>{_e(text)}</pre>")
    return "\n".join(out)
