"""The graph form of a spec: shapes, per-node cost, and the canonical hash.

Nodes, in order: ``input``, ``stem``, one per block (``s{i}.b{j}``), ``head``,
``output``; each edge carries the tensor shape flowing along it (``shape``:
(C, H, W) for maps, (classes,) into ``output``). Node attributes: ``type``
(block name, or input/stem/head/output), ``path`` (the spec field), ``cfg``
(resolved, defaults filled), ``in_shape``/``out_shape``, and with costs:
``params``, ``macs`` and ``attention_bytes`` for one image.

Per-node params are counted by building each node on the meta device (no
memory, no init work); macs come from the block's own ``cost`` formula, the
stem conv and the head's Linear layers (norms, activations and pooling count 0 MACs,
as in torch's FlopCounterMode).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import networkx as nx
import torch
from torch import nn

from convattn import block_class, create_block
from convattn.cost import conv_macs

from .validate import ResolvedSpec

# Specs (search_space.ModelSpec) arrive as arguments: ModelSpec.graph() and .hash() call
# this module, so it must not import the spec module.

HASH_VERSION = 1


@contextmanager
def _meta() -> Iterator[None]:
    with torch.device("meta"):
        yield


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _build_meta(factory) -> nn.Module:
    """Build on the meta device; fall back to the CPU for a module whose
    constructor needs real values (e.g. computes a table with .item())."""
    try:
        with _meta():
            return factory()
    except (NotImplementedError, RuntimeError):
        return factory()


def build_graph(spec, *, costs: bool = True,
                resolved: ResolvedSpec | None = None) -> nx.DiGraph:
    """The DiGraph of ``spec`` (validated first: SpecError if it would not build)."""
    from .builder import Head, head_widths, make_stem

    res = resolved or spec.resolve()
    g = nx.DiGraph(name=spec.name, hash=spec_hash(spec, resolved=res))
    g.add_node("input", type="input", path="input", cfg={}, in_shape=res.input_shape,
               out_shape=res.input_shape)
    g.add_node("stem", type="stem", path="stem", cfg=dict(res.stem), in_shape=res.input_shape,
               out_shape=res.stem_shape)
    g.add_edge("input", "stem", shape=res.input_shape)
    prev = "stem"
    for b in res.blocks:
        g.add_node(b.id, type=b.type, path=b.path, cfg=dict(b.cfg), in_ch=b.in_ch,
                   out_ch=b.out_ch, stride=b.stride, in_shape=b.in_shape, out_shape=b.out_shape)
        g.add_edge(prev, b.id, shape=b.in_shape)
        prev = b.id
    feat = res.feature_shape
    g.add_node("head", type="head", path="head", cfg=dict(res.head), in_shape=feat,
               out_shape=(res.classes,))
    g.add_edge(prev, "head", shape=feat)
    g.add_node("output", type="output", path="classes", cfg={}, in_shape=(res.classes,),
               out_shape=(res.classes,))
    g.add_edge("head", "output", shape=(res.classes,))
    if not costs:
        return g

    for node in ("input", "output"):
        g.nodes[node].update(params=0, macs=0, attention_bytes=0)
    stem = res.stem
    stem_macs = 0 if stem["kind"] == "none" else conv_macs(
        res.input_shape[0], stem["channels"], stem["kernel"],
        _conv_hw(res.input_shape[1:], stem))
    g.nodes["stem"].update(params=_count(_build_meta(lambda: make_stem(stem,
                                                                        res.input_shape[0]))),
                           macs=stem_macs, attention_bytes=0)
    for b in res.blocks:
        block = _build_meta(lambda b=b: create_block(b.type, b.in_ch, b.out_ch, b.stride,
                                                     **b.given, input_size=b.in_size))
        cost = block.cost(*b.in_size)
        g.nodes[b.id].update(params=_count(block), macs=int(cost.macs),
                             attention_bytes=int(cost.attention_bytes))
    head = _build_meta(lambda: Head(res.head, feat[0], res.classes))
    widths = head_widths(res.head, feat[0], res.classes)
    g.nodes["head"].update(params=_count(head), attention_bytes=0,
                           macs=sum(a * b for a, b in itertools.pairwise(widths)))
    return g


def _conv_hw(hw: tuple[int, int], stem: dict[str, Any]) -> tuple[int, int]:
    from convattn.cost import out_size
    k, s, p = stem["kernel"], stem["stride"], stem["padding"]
    return (out_size(hw[0], k, s, p), out_size(hw[1], k, s, p))


def totals(g: nx.DiGraph) -> dict[str, int]:
    """Sum of params, macs and attention_bytes over the nodes of a costed graph."""
    keys = ("params", "macs", "attention_bytes")
    return {k: sum(int(d[k]) for _, d in g.nodes(data=True)) for k in keys}


def infer_shapes(spec) -> dict[str, tuple[int, ...]]:
    """Output shape of every node (``output`` is (classes,)); SpecError if invalid."""
    return {n: d["out_shape"] for n, d in build_graph(spec, costs=False).nodes(data=True)}


# -- canonical hash -------------------------------------------------------------------
def _normalise(value: Any) -> Any:
    """Plain JSON values with one spelling per number: integral floats become ints
    (``dropout: 0`` == ``dropout: 0.0``), tuples become lists, keys are strings."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return repr(value)  # a resolved value of another type: its repr is still stable


def canonical(spec, *, resolved: ResolvedSpec | None = None) -> dict[str, Any]:
    """The resolved network as plain data: what the hash covers.

    Blocks are listed flat with their (in, out, stride) because the stage split does
    not change the network: two stages of width 64 and stride 1 are one stage of
    both blocks. ``name`` and ``meta`` are not part of the network."""
    res = resolved or spec.resolve()
    return _normalise({
        "hash_version": HASH_VERSION,
        "input": list(res.input_shape),
        "classes": res.classes,
        "stem": res.stem,
        "blocks": [{"type": b.type, "in": b.in_ch, "out": b.out_ch, "stride": b.stride,
                    "cfg": _block_canonical(b)} for b in res.blocks],
        "head": res.head,
    })


def _block_canonical(b) -> dict[str, Any]:
    """The block's canonical cfg without the keys added after hash version 1 that sit
    at the value every earlier spec was built with (their hash stays)."""
    cls = block_class(b.type)
    cfg = cls.canonical_config(b.in_ch, b.out_ch, b.stride, b.cfg)
    return {k: v for k, v in cfg.items()
            if not (k in cls.added_keys and v == cls.added_keys[k])}


def canonical_json(spec, *, resolved: ResolvedSpec | None = None) -> str:
    return json.dumps(canonical(spec, resolved=resolved), sort_keys=True,
                      separators=(",", ":"), allow_nan=False)


def spec_hash(spec, *, resolved: ResolvedSpec | None = None) -> str:
    """sha256 hex digest of ``canonical_json``: equal for specs describing the same
    network however the YAML is written, different for different networks."""
    return hashlib.sha256(canonical_json(spec, resolved=resolved).encode()).hexdigest()
