"""What ``nas build`` and ``nas show`` print, as plain data (tests call these too).

Cost numbers come from ``search_space.cost.estimate`` (parameters counted on the
built module, multiply-adds from the blocks' own formulas, training memory); it
agrees with the graph's per-node totals on params and macs by construction (the
estimate sums the graph).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .cost import estimate
from .graph import build_graph, totals
from .spec import ModelSpec


def summarize(spec: ModelSpec, *, batch: int = 1) -> dict[str, Any]:
    """name, hash, params, macs, attention bytes, output shape, blocks by type (+ the
    cost estimate's fields under ``cost``); macs are for ``batch``."""
    graph = build_graph(spec, costs=True)
    total = totals(graph)
    blocks = Counter(d["type"] for _, d in graph.nodes(data=True)
                     if d["path"].startswith("stages["))
    feature = graph.nodes["head"]["in_shape"]
    out: dict[str, Any] = {
        "name": spec.name,
        "hash": graph.graph["hash"],
        "params": total["params"],
        "macs": total["macs"] * batch,
        "attention_bytes": total["attention_bytes"] * batch,
        "batch": batch,
        "input_shape": [batch, *spec.input.shape],
        "feature_shape": [batch, *feature],
        "output_shape": [batch, spec.classes],
        "blocks": sum(blocks.values()),
        "blocks_by_type": dict(sorted(blocks.items())),
        "notes": width_notes(spec),
    }
    est = estimate(spec, batch=batch)
    cost = est.to_dict()
    cost.pop("per_node_macs", None)  # `nas show` prints those
    out.update(params=int(est.params), macs=int(est.macs), cost=cost,
               cost_source="search_space.cost.estimate")
    return out


def width_notes(spec: ModelSpec) -> list[str]:
    """Blocks whose widths are not exactly what their ratios ask for, one line each
    (e.g. AA rounds kappa x channels to a multiple of heads, convattn.blocks.aa)."""
    from convattn import block_class

    notes = []
    for b in spec.resolve().blocks:
        hook = getattr(block_class(b.type), "width_notes", None)
        if hook is not None:
            notes += [f"{b.path} ({b.type}): {n}" for n in hook(b.out_ch, b.cfg)]
    return notes


def node_rows(spec: ModelSpec) -> list[dict[str, Any]]:
    """One row per graph node: node, type, path, output shape, params, macs,
    attention bytes (one image)."""
    graph = build_graph(spec, costs=True)
    return [{"node": n, "type": d["type"], "path": d["path"], "out_shape": list(d["out_shape"]),
             "params": int(d["params"]), "macs": int(d["macs"]),
             "attention_bytes": int(d["attention_bytes"])}
            for n, d in graph.nodes(data=True)]
