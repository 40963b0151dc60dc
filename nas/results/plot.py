"""Pareto plots: a static PNG (matplotlib, Agg backend: no display needed) or an
interactive, self-contained HTML page (plotly, its JavaScript embedded: no network).
Both draw the same things (:func:`_series`):

- the front (red, trial numbers labelled, the knee circled) and, in 2-D, the attainment
  staircase of the front over found trials AND baselines (one dominance rule,
  :mod:`nas.results.front`);
- other feasible trials (blue) and feasible trials a baseline dominates (orange rings);
- baselines (black stars, labelled) measured in the search or by ``nas rank``; one that
  breaks a constraint is a hollow star;
- infeasible trials (grey crosses) at their MEASURED values. A point that lacks a value
  on some axis (a candidate refused before training has no accuracy) is not drawn at a
  made-up place: it is counted in a note under the plot.

Axes carry the metric's unit and, for latency, the device, batch and threads it was
measured with; the title carries the hypervolume and its reference point.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..run.outputs import write_output
from .front import ParetoResult
from .records import TrialRecord

PLOT_SUFFIXES = (".png", ".html")
UNITS = {"accuracy": "validation top-1, fraction", "latency_ms": "ms per batch",
         "memory_mb": "MiB, peak training memory", "params": "parameters",
         "macs": "multiply-accumulates per image"}


def write_plot(result: ParetoResult, path: str | os.PathLike, title: str = "") -> Path:
    """Write a PNG or HTML plot (by the file's suffix); returns the path. ``title``
    prefixes the standard title (hypervolume and reference point)."""
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in PLOT_SUFFIXES:
        raise UserError(f"--plot {out}: unknown plot type {suffix or '(none)'!r}; allowed: "
                        ".png (static) or .html (interactive)")
    _check_dims(result)
    if suffix == ".png":
        return write_output(out, png_bytes(result, title), option="--plot")
    return write_output(out, html_figure(result, title, full_html=True), option="--plot")


def _check_dims(result: ParetoResult) -> None:
    if len(result.objectives) not in (2, 3):
        raise UserError(f"--plot: a Pareto plot needs 2 or 3 objectives, got "
                        f"{len(result.objectives)} ({', '.join(result.metrics)}); "
                        "choose them with --objectives a,b[,c]")


def plot_title(result: ParetoResult, prefix: str = "") -> str:
    """"PREFIX: hypervolume H (reference accuracy 0, params 6000)"."""
    ref = ", ".join(f"{m} {v:.4g}" for m, v in zip(result.metrics, result.reference,
                                                     strict=True))
    hv = f"hypervolume {result.hypervolume:.4g} (reference {ref})"
    return f"{prefix}: {hv}" if prefix else f"Pareto front, {hv}"


def short_name(ref: str) -> str:
    """"zoo:resnet18-cifar" -> "resnet18-cifar"; a path -> its file stem."""
    if ref.startswith("zoo:"):
        return ref[4:]
    return Path(ref).stem or ref


# --------------------------------------------------------------------------- data
GROUPS = ("infeasible", "feasible", "beaten", "front", "baselines", "baselines_infeasible")


def _series(result: ParetoResult) -> dict[str, Any]:
    """Each group's trials and coordinates (only points measured on every axis), the
    joint front's staircase points, and what could not be drawn."""
    metrics = result.metrics
    front_ids = {t.number for t in result.front}
    beaten = result.dominated_by_baseline
    measured = [b for b in result.baselines if _has_all(b, metrics)]
    groups = {
        "feasible": [t for t in result.feasible
                     if t.number not in front_ids and t.number not in beaten],
        "beaten": [t for t in result.feasible if t.number in beaten],
        "front": list(result.front),
        "infeasible": [t for t in result.infeasible if _has_all(t, metrics)],
        "baselines": [b for b in measured if b.constraints_met],
        "baselines_infeasible": [b for b in measured if not b.constraints_met],
    }
    out = {name: (ts, _coords(ts, metrics)) for name, ts in groups.items()}
    on_front = [b for b in measured if b.name in result.baseline_front]
    out["staircase"] = _coords(list(result.front) + on_front, metrics)
    notes = []
    hidden = [t for t in result.infeasible if not _has_all(t, metrics)]
    if hidden:
        why = Counter(m for t in hidden for m in metrics if t.value(m) is None)
        notes.append(f"{len(hidden)} infeasible trial(s) not drawn: never measured on "
                     + ", ".join(f"{m} ({n})" for m, n in why.items())
                     + " (refused before training)")
    for b in result.baselines:
        if not _has_all(b, metrics):
            missing = ", ".join(m for m in metrics if b.value(m) is None)
            notes.append(f"baseline {short_name(b.name)} not drawn: {b.status}, "
                         f"{missing} not measured")
    out["notes"] = notes
    return out


def _coords(ts: list[TrialRecord], metrics: list[str]) -> list[list[float]]:
    return [[t.value(m) for t in ts] for m in metrics]


def _has_all(t: TrialRecord, metrics: list[str]) -> bool:
    return all(t.value(m) is not None for m in metrics)


def axis_label(result: ParetoResult, metric: str, direction: str) -> str:
    """"latency_ms (ms per batch, median; batch 1, cpu, 1 thread; lower is better)"."""
    better = "higher" if direction == "maximize" else "lower"
    unit = UNITS.get(metric, metric)
    if metric == "latency_ms":
        proto = _common([t.protocol for t in result.feasible + result.infeasible
                         if t.protocol])
        if proto:
            threads = proto.get("threads")
            unit += (f", {proto.get('statistic', 'median').split(';')[0]}; batch "
                     f"{proto.get('batch', '?')}, {proto.get('device_name') or proto.get('device')}"
                     + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""))
    elif metric == "accuracy":
        prov = _common([t.provenance for t in result.feasible if t.provenance])
        if prov:
            unit += f"; trained on {prov.get('device_name') or prov.get('device')}"
    return f"{metric} ({unit}; {better} is better)"


def _common(dicts: list[dict[str, Any]]) -> dict[str, Any]:
    """The most common of several protocol dicts (they differ only across devices)."""
    if not dicts:
        return {}
    keyed = Counter(repr(sorted(d.items(), key=str)) for d in dicts)
    top = keyed.most_common(1)[0][0]
    return next(d for d in dicts if repr(sorted(d.items(), key=str)) == top)


# --------------------------------------------------------------------------- PNG
_PNG_STYLES = {
    "infeasible": dict(c="0.6", marker="x", s=28, label="infeasible (measured values)"),
    "feasible": dict(c="tab:blue", marker="o", s=24, alpha=0.7, label="feasible"),
    "beaten": dict(facecolors="none", edgecolors="tab:orange", marker="o", s=40,
                   linewidths=1.5, label="feasible, dominated by a baseline"),
    "front": dict(c="tab:red", marker="o", s=40, label="Pareto front (found)"),
    "baselines": dict(c="black", marker="*", s=140, label="baselines"),
    "baselines_infeasible": dict(facecolors="none", edgecolors="black", marker="*", s=140,
                                 label="baselines breaking a constraint"),
}


def png_bytes(result: ParetoResult, title: str = "") -> bytes:
    """The plot as PNG bytes (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    _check_dims(result)
    s = _series(result)
    three = len(result.objectives) == 3
    fig = Figure(figsize=(8, 6), dpi=110)
    ax = fig.add_subplot(projection="3d" if three else None)
    for name in GROUPS:
        ts, xyz = s[name]
        if ts:
            ax.scatter(*xyz, **_PNG_STYLES[name])
    if s["staircase"][0] and not three:
        _staircase(ax, s["staircase"], result.directions)
    ts, xyz = s["front"]
    for i, t in enumerate(ts):
        ax.text(*[c[i] for c in xyz], f" #{t.number}", fontsize=7, color="tab:red")
    if result.knee is not None and ts:
        i = ts.index(result.knee)
        ax.scatter(*[[c[i]] for c in xyz], s=180, facecolors="none",
                   edgecolors="tab:red", linewidths=1.5, label=f"knee (#{result.knee.number})")
    for name in ("baselines", "baselines_infeasible"):
        bs, bxyz = s[name]
        for i, b in enumerate(bs):
            ax.text(*[c[i] for c in bxyz], f"  {short_name(b.name)}", fontsize=8)
    labels = [axis_label(result, m, d) for m, d in zip(result.metrics, result.directions,
                                                       strict=True)]
    ax.set_xlabel(labels[0], fontsize=8)
    ax.set_ylabel(labels[1], fontsize=8)
    if three:
        ax.set_zlabel(labels[2], fontsize=8)
    else:
        ax.grid(True, alpha=0.3)
    ax.set_title(plot_title(result, title), fontsize=9)
    ax.legend(fontsize=7, loc="best")
    if s["notes"]:
        fig.text(0.01, 0.005, "\n".join(s["notes"]), fontsize=7, color="0.35", va="bottom")
    fig.tight_layout(rect=(0, 0.03 * len(s["notes"]), 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def staircase_xy(xy: list[list[float]], directions: list[str]) -> tuple[list, list]:
    """The front's attainment staircase (2-D): from each point along x to the next
    point's x, then along y to it. Sorted best-first in x (the axes map monotonically
    to minimisation space, so the corners are (x_next, y_this) either way)."""
    sign = 1.0 if directions[0] == "minimize" else -1.0
    pts = sorted(zip(*xy, strict=True), key=lambda p: sign * p[0])
    xs, ys = [pts[0][0]], [pts[0][1]]
    for (_, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        xs += [x1, x1]
        ys += [y0, y1]
    return xs, ys


def _staircase(ax: Any, xy: list[list[float]], directions: list[str]) -> None:
    xs, ys = staircase_xy(xy, directions)
    ax.plot(xs, ys, color="tab:red", alpha=0.4, lw=1, zorder=1)


# --------------------------------------------------------------------------- HTML
_HTML_MARKERS = {
    "infeasible": dict(color="#999999", symbol="x", size=8),
    "feasible": dict(color="#1f77b4", symbol="circle", size=8),
    "beaten": dict(color="rgba(0,0,0,0)", symbol="circle-open", size=10,
                   line=dict(color="#ff7f0e", width=2)),
    "front": dict(color="#d62728", symbol="circle", size=9),
    "baselines": dict(color="#000000", symbol="star", size=14),
    "baselines_infeasible": dict(color="#000000", symbol="star-open", size=14),
}
_HTML_NAMES = {"infeasible": "infeasible (measured values)", "feasible": "feasible",
               "beaten": "feasible, dominated by a baseline", "front": "Pareto front (found)",
               "baselines": "baselines", "baselines_infeasible":
               "baselines breaking a constraint"}


def html_figure(result: ParetoResult, title: str = "", *, full_html: bool = True) -> str:
    """The plot as plotly HTML with plotly.js embedded (works offline)."""
    import plotly.graph_objects as go

    _check_dims(result)
    s = _series(result)
    three = len(result.objectives) == 3
    metrics = result.metrics
    fig = go.Figure()
    scatter = go.Scatter3d if three else go.Scatter
    if s["staircase"][0] and not three:
        xs, ys = staircase_xy(s["staircase"], result.directions)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="front staircase",
                                 hoverinfo="skip", line=dict(color="#d62728", width=1),
                                 opacity=0.5))
    for name in GROUPS:
        ts, xyz = s[name]
        if not ts:
            continue
        labelled = name in ("front", "baselines", "baselines_infeasible")
        texts = [short_name(t.name) if t.kind == "baseline" else f"#{t.number}" for t in ts]
        marker = dict(_HTML_MARKERS[name])
        if three:
            marker["symbol"] = {"star": "diamond", "star-open": "diamond-open",
                                "circle-open": "circle-open"}.get(marker["symbol"],
                                                                  marker["symbol"])
            marker["symbol"] = marker["symbol"] if marker["symbol"] in (
                "circle", "circle-open", "diamond", "diamond-open", "x") else "circle"
        common = dict(name=_HTML_NAMES[name], text=texts,
                      hovertext=[_hover(t, metrics, result) for t in ts], hoverinfo="text",
                      mode="markers+text" if labelled else "markers", marker=marker)
        axes = dict(zip("xyz", xyz, strict=False))
        if not three:
            common["textposition"] = "top center"
        fig.add_trace(scatter(**axes, **common))
    ts, xyz = s["front"]
    if result.knee is not None and ts:
        i = ts.index(result.knee)
        knee = dict(zip("xyz", [[c[i]] for c in xyz], strict=False))
        fig.add_trace(scatter(**knee, mode="markers", name=f"knee (#{result.knee.number})",
                              hoverinfo="skip", marker=dict(
                                  color="rgba(0,0,0,0)", size=20, symbol="circle-open",
                                  line=dict(color="#d62728", width=2))))
    labels = [axis_label(result, m, d) for m, d in zip(metrics, result.directions,
                                                       strict=True)]
    text = plot_title(result, title)
    if s["notes"]:
        text += "<br><sup>" + "; ".join(s["notes"]) + "</sup>"
    if three:
        fig.update_layout(title=text, scene=dict(xaxis_title=labels[0],
                                                 yaxis_title=labels[1],
                                                 zaxis_title=labels[2]))
    else:
        fig.update_layout(title=text, xaxis_title=labels[0], yaxis_title=labels[1])
    return fig.to_html(include_plotlyjs=True, full_html=full_html)


def _hover(t: TrialRecord, metrics: list[str], result: ParetoResult) -> str:
    parts = [t.name if t.kind == "baseline" else f"trial {t.number}", f"status {t.status}"]
    if t.kind == "baseline":
        parts.append(f"measured in {t.user_attrs.get('source', 'search')}")
    if t.number in result.dominated_by_baseline:
        parts.append("dominated by " + ", ".join(result.dominated_by_baseline[t.number]))
    for m in metrics:
        v = t.value(m)
        parts.append(f"{m} {v:.4g}" if v is not None else f"{m} not measured")
    if t.block_mix():
        parts.append(f"blocks {t.block_mix()}")
    if t.hash:
        parts.append(f"hash {t.hash[:12]}")
    return "<br>".join(parts)
