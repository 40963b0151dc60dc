"""Pareto plots: a static PNG (matplotlib, Agg backend: no display needed) or an
interactive, self-contained HTML page (plotly, its JavaScript embedded: no network).

What is drawn, for 2 objectives (x = first, y = second) or 3 (a 3-D scatter):
feasible trials (blue), the front (red, joined by its staircase in 2-D, trial numbers
labelled, the knee circled), infeasible trials (grey crosses; a value they never
measured, e.g. the accuracy of a candidate that was never trained, is drawn at the
worst edge of that axis, just beyond the worst feasible value) and the baselines
(black stars, labelled with their names).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..outputs import write_output
from .front import ParetoResult
from .records import TrialRecord

PLOT_SUFFIXES = (".png", ".html")


def write_plot(result: ParetoResult, path: str | os.PathLike, title: str = "") -> Path:
    """Write a PNG or HTML plot (by the file's suffix); returns the path."""
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


def short_name(ref: str) -> str:
    """"zoo:resnet18-cifar" -> "resnet18-cifar"; a path -> its file stem."""
    if ref.startswith("zoo:"):
        return ref[4:]
    return Path(ref).stem or ref


# --------------------------------------------------------------------------- data
def _series(result: ParetoResult) -> dict[str, Any]:
    """Coordinates of every group, missing values filled at the worst edge."""
    metrics = result.metrics
    front_ids = {t.number for t in result.front}
    groups = {
        "feasible": [t for t in result.feasible if t.number not in front_ids],
        "front": list(result.front),
        "infeasible": list(result.infeasible),
        "baselines": [b for b in result.baselines
                      if any(b.value(m) is not None for m in metrics)],
    }
    # Unmeasured values go just beyond the worst FEASIBLE value (not to accuracy 0, which
    # would squash the interesting part of the plot against one edge).
    shown = groups["feasible"] + groups["front"] + groups["baselines"]
    edge = []
    for o in result.objectives:
        vals = [v for t in shown if (v := t.value(o.metric)) is not None]
        vals = vals or [v for t in groups["infeasible"]
                        if (v := t.value(o.metric)) is not None] or [0.0]
        margin = 0.05 * ((max(vals) - min(vals)) or abs(vals[0]) or 1.0)
        edge.append(min(vals) - margin if o.direction == "maximize" else max(vals) + margin)

    def coords(ts: list[TrialRecord]) -> list[list[float]]:
        return [[t.value(m) if t.value(m) is not None else edge[k]
                 for t in ts] for k, m in enumerate(metrics)]

    return {name: (ts, coords(ts)) for name, ts in groups.items()}


def _label(metric: str, direction: str) -> str:
    return f"{metric} ({'higher' if direction == 'maximize' else 'lower'} is better)"


# --------------------------------------------------------------------------- PNG
def png_bytes(result: ParetoResult, title: str = "") -> bytes:
    """The plot as PNG bytes (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    _check_dims(result)
    s = _series(result)
    three = len(result.objectives) == 3
    fig = Figure(figsize=(7.5, 5.5), dpi=110)
    ax = fig.add_subplot(projection="3d" if three else None)
    n_bad = len(s["infeasible"][0])
    styles = {"infeasible": dict(c="0.65", marker="x", s=28,
                                 label=f"infeasible ({n_bad}; unmeasured: at the edge)"),
              "feasible": dict(c="tab:blue", marker="o", s=24, alpha=0.7, label="feasible"),
              "front": dict(c="tab:red", marker="o", s=40, label="Pareto front"),
              "baselines": dict(c="black", marker="*", s=140, label="baselines")}
    for name in ("infeasible", "feasible", "front", "baselines"):
        ts, xyz = s[name]
        if ts:
            ax.scatter(*xyz, **styles[name])
    ts, xyz = s["front"]
    if ts and not three:
        _staircase(ax, xyz, result.directions)
    for i, t in enumerate(ts):
        ax.text(*[c[i] for c in xyz], f" #{t.number}", fontsize=7, color="tab:red")
    if result.knee is not None and ts:
        i = ts.index(result.knee)
        ax.scatter(*[[c[i]] for c in xyz], s=180, facecolors="none",
                   edgecolors="tab:red", linewidths=1.5, label=f"knee (#{result.knee.number})")
    bs, bxyz = s["baselines"]
    for i, b in enumerate(bs):
        ax.text(*[c[i] for c in bxyz], f"  {short_name(b.name)}", fontsize=8)
    ax.set_xlabel(_label(result.metrics[0], result.directions[0]))
    ax.set_ylabel(_label(result.metrics[1], result.directions[1]))
    if three:
        ax.set_zlabel(_label(result.metrics[2], result.directions[2]))
    else:
        ax.grid(True, alpha=0.3)
    ax.set_title(title or f"Pareto front: hypervolume {result.hypervolume:.4g}", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _staircase(ax: Any, xy: list[list[float]], directions: list[str]) -> None:
    """The front's attainment staircase (2-D): from each point along x to the next
    point's x, then along y to it. Sorted best-first in x (the axes map monotonically
    to minimisation space, so the corners are (x_next, y_this) either way)."""
    sign = 1.0 if directions[0] == "minimize" else -1.0
    pts = sorted(zip(*xy, strict=True), key=lambda p: sign * p[0])
    xs, ys = [pts[0][0]], [pts[0][1]]
    for (_, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        xs += [x1, x1]
        ys += [y0, y1]
    ax.plot(xs, ys, color="tab:red", alpha=0.4, lw=1, zorder=1)


# --------------------------------------------------------------------------- HTML
def html_figure(result: ParetoResult, title: str = "", *, full_html: bool = True) -> str:
    """The plot as plotly HTML with plotly.js embedded (works offline)."""
    import plotly.graph_objects as go

    _check_dims(result)
    s = _series(result)
    three = len(result.objectives) == 3
    metrics = result.metrics
    colours = {"infeasible": "#aaaaaa", "feasible": "#1f77b4", "front": "#d62728",
               "baselines": "#000000"}
    symbols = {"infeasible": "x", "feasible": "circle", "front": "circle",
               "baselines": "diamond" if three else "star"}
    fig = go.Figure()
    for name in ("infeasible", "feasible", "front", "baselines"):
        ts, xyz = s[name]
        if not ts:
            continue
        texts = [short_name(t.name) if name == "baselines" else f"#{t.number}" for t in ts]
        hover = [_hover(t, metrics) for t in ts]
        common = dict(name=name, text=texts, hovertext=hover, hoverinfo="text",
                      mode="markers+text" if name in ("front", "baselines") else "markers",
                      marker=dict(color=colours[name], symbol=symbols[name],
                                  size=12 if name == "baselines" else 8))
        if three:
            fig.add_trace(go.Scatter3d(x=xyz[0], y=xyz[1], z=xyz[2], **common))
        else:
            fig.add_trace(go.Scatter(x=xyz[0], y=xyz[1], textposition="top center",
                                     **common))
    labels = [_label(m, d) for m, d in zip(metrics, result.directions, strict=True)]
    title = title or f"Pareto front: hypervolume {result.hypervolume:.4g}"
    if three:
        fig.update_layout(title=title, scene=dict(xaxis_title=labels[0],
                                                  yaxis_title=labels[1],
                                                  zaxis_title=labels[2]))
    else:
        fig.update_layout(title=title, xaxis_title=labels[0], yaxis_title=labels[1])
    return fig.to_html(include_plotlyjs=True, full_html=full_html)


def _hover(t: TrialRecord, metrics: list[str]) -> str:
    parts = [t.name if t.kind == "baseline" else f"trial {t.number}", f"status {t.status}"]
    for m in metrics:
        v = t.value(m)
        parts.append(f"{m} {v:.4g}" if v is not None else f"{m} not measured")
    if t.block_mix():
        parts.append(f"blocks {t.block_mix()}")
    if t.hash:
        parts.append(f"hash {t.hash[:12]}")
    return "<br>".join(parts)
