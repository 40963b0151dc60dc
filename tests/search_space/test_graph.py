"""Graph form of a spec: nodes, edge shapes, per-node params and macs, canonical hash."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from search_space import ModelSpec, infer_shapes, spec_hash, totals
from search_space.graph import canonical

CONV: dict[str, Any] = {
    "version": 1, "name": "conv", "input": {"channels": 3, "size": [13, 11]}, "classes": 5,
    "stem": {"channels": 8, "kernel": 5, "stride": 2, "pool": "max"},
    "stages": [
        {"channels": 8, "blocks": [{"type": "basic"}]},
        {"channels": 16, "stride": 2, "blocks": [{"type": "bottleneck", "expansion": 2},
                                                 {"type": "wide"}]},
    ],
    "head": {"norm": "batch", "act": "relu"},
}

ATTN: dict[str, Any] = {
    "version": 1, "name": "attn", "input": {"channels": 1, "size": [8, 6]}, "classes": 4,
    "stem": {"channels": 8},
    "stages": [
        {"channels": 8, "blocks": [{"type": "aa", "kappa": 0.5, "upsilon": 0.5, "heads": 2}]},
        {"channels": 16, "stride": 2, "blocks": [{"type": "eaa", "heads": 2}]},
    ],
    "head": {"norm": "layer"},
}


def spec_of(data: dict[str, Any], **changes: Any) -> ModelSpec:
    d = copy.deepcopy(data)
    d.update(copy.deepcopy(changes))
    return ModelSpec.from_dict(d)


# -- structure and shapes ---------------------------------------------------------------------
def test_nodes_edges_and_attributes():
    g = spec_of(CONV).graph()
    assert list(g.nodes) == ["input", "stem", "s0.b0", "s1.b0", "s1.b1", "head", "output"]
    assert list(g.edges) == [("input", "stem"), ("stem", "s0.b0"), ("s0.b0", "s1.b0"),
                             ("s1.b0", "s1.b1"), ("s1.b1", "head"), ("head", "output")]
    s1b0 = g.nodes["s1.b0"]
    assert s1b0["type"] == "bottleneck" and s1b0["path"] == "stages[1].blocks[0]"
    assert (s1b0["in_ch"], s1b0["out_ch"], s1b0["stride"]) == (8, 16, 2)
    assert s1b0["cfg"]["expansion"] == 2 and s1b0["cfg"]["groups"] == 1  # defaults filled
    assert "input_size" not in s1b0["cfg"]
    assert g.nodes["stem"]["cfg"]["padding"] == 2  # kernel 5 -> padding 2 filled in
    # 13x11 -conv5/2-> 7x6 -maxpool3/2-> 4x3 -stride 2-> 2x2
    assert g.edges["input", "stem"]["shape"] == (3, 13, 11)
    assert g.edges["stem", "s0.b0"]["shape"] == (8, 4, 3)
    assert g.edges["s1.b1", "head"]["shape"] == (16, 2, 2)
    assert g.edges["head", "output"]["shape"] == (5,)


@pytest.mark.parametrize("data", [CONV, ATTN], ids=["conv", "attn"])
def test_shapes_match_a_real_forward(data):
    spec = spec_of(data)
    model = spec.build().eval()
    seen: dict[str, tuple[int, ...]] = {}
    modules = {"stem": model.stem, "head": model.head}
    for node, i, j, _ in spec.blocks():
        modules[node] = model.stages[i][j]
    for node, module in modules.items():
        module.register_forward_hook(
            lambda _m, _a, out, node=node: seen.__setitem__(node, tuple(out.shape[1:])))
    with torch.no_grad():
        model(torch.randn(1, *spec.input.shape))
    shapes = infer_shapes(spec)
    for node, shape in seen.items():
        assert shapes[node] == shape, node
    assert shapes["output"] == (spec.classes,)


@pytest.mark.parametrize("data", [CONV, ATTN], ids=["conv", "attn"])
def test_params_per_node_equal_the_built_modules(data):
    spec = spec_of(data)
    g = spec.graph()
    model = spec.build()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert g.nodes["stem"]["params"] == count(model.stem)
    assert g.nodes["head"]["params"] == count(model.head)
    for node, i, j, _ in spec.blocks():
        assert g.nodes[node]["params"] == count(model.stages[i][j]), node
    assert totals(g)["params"] == count(model)


def test_macs_of_a_conv_net_equal_flop_counter():
    spec = spec_of(CONV)
    model = spec.build().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, *spec.input.shape))
    assert totals(spec.graph())["macs"] == counter.get_total_flops() // 2


def test_stem_and_head_macs():
    g = spec_of(CONV).graph()
    assert g.nodes["stem"]["macs"] == 3 * 8 * 5 * 5 * 7 * 6  # conv5/2 out 7x6
    assert g.nodes["head"]["macs"] == 16 * 5
    assert g.nodes["input"]["macs"] == g.nodes["output"]["macs"] == 0


def test_attention_blocks_report_attention_bytes():
    g = spec_of(ATTN).graph()
    assert g.nodes["s0.b0"]["attention_bytes"] > 0
    assert g.nodes["s0.b0"]["macs"] > 0
    assert totals(g)["attention_bytes"] == sum(g.nodes[n]["attention_bytes"]
                                               for n in ("s0.b0", "s1.b0"))


def test_graph_without_costs_has_shapes_only():
    g = spec_of(CONV).graph(costs=False)
    assert "params" not in g.nodes["stem"]
    assert g.nodes["s1.b1"]["out_shape"] == (16, 2, 2)


# -- canonical hash ---------------------------------------------------------------------------
def test_hash_ignores_formatting_defaults_name_and_meta():
    plain = spec_of(CONV)
    spelled_out = ModelSpec.from_dict({
        "meta": {"anything": [1, 2]}, "head": {"dropout": 0, "act": "relu", "pool": "avg",
                                               "norm": "batch"},
        "stages": [
            {"stride": 1, "blocks": [{"type": "basic"}], "channels": 8},
            {"blocks": [{"groups": 1, "expansion": 2, "type": "bottleneck"},
                        {"type": "wide", "dropout": 0}], "stride": 2, "channels": 16},
        ],
        "stem": {"pool": "max", "act": "relu", "norm": "batch", "padding": 2, "stride": 2,
                 "kernel": 5, "channels": 8, "kind": "conv"},
        "classes": 5, "input": {"size": [13, 11], "channels": 3}, "name": "other",
        "version": 1,
    })
    assert spelled_out.hash() == plain.hash()
    assert spec_hash(plain) == plain.hash() and len(plain.hash()) == 64


def test_hash_same_network_split_into_stages_differently():
    one = spec_of(CONV, stages=[{"channels": 8, "blocks": [{"type": "basic"}, {"type": "basic"}]}])
    two = spec_of(CONV, stages=[{"channels": 8, "blocks": [{"type": "basic"}]},
                                {"channels": 8, "stride": 1, "blocks": [{"type": "basic"}]}])
    assert one.hash() == two.hash()


def test_hash_normalises_int_and_float():
    a = spec_of(CONV, head={"dropout": 0.5})
    b = spec_of(ATTN)
    c = spec_of(ATTN, stages=[{"channels": 8, "blocks": [{"type": "aa", "kappa": 0.5,
                                                          "upsilon": 0.5, "heads": 2,
                                                          "dropout": 0}]},
                              ATTN["stages"][1]])
    assert b.hash() == c.hash()  # aa's dropout default 0.0 written as 0
    assert a.hash() != spec_of(CONV).hash()


@pytest.mark.parametrize("change", [
    {"classes": 6},
    {"input": {"channels": 3, "size": [13, 12]}},
    {"input": {"channels": 1, "size": [13, 11]}},
    {"stem": {"channels": 8, "kernel": 3, "stride": 2, "pool": "max"}},
    {"stem": {"channels": 8, "kernel": 5, "stride": 2}},
    {"head": {"norm": "batch"}},
    {"stages": [{"channels": 8, "blocks": [{"type": "wide"}]}, CONV["stages"][1]]},
    {"stages": [CONV["stages"][0], {**CONV["stages"][1], "channels": 24}]},
    {"stages": [CONV["stages"][0], {**CONV["stages"][1], "stride": 1}]},
    {"stages": [CONV["stages"][0],
                {**CONV["stages"][1], "blocks": [{"type": "bottleneck", "expansion": 4},
                                                 {"type": "wide"}]}]},
], ids=["classes", "size", "channels", "stem-kernel", "stem-pool", "head", "block-type",
        "width", "stride", "block-cfg"])
def test_hash_differs_for_different_networks(change):
    assert spec_of(CONV, **change).hash() != spec_of(CONV).hash()


def test_canonical_form_has_no_name_meta_or_input_size():
    text = repr(canonical(spec_of(CONV, meta={"x": 1})))
    assert "conv" in text  # the stem kind
    assert "input_size" not in text and "'x'" not in text and "'name'" not in text


def _with_blocks(first: dict[str, Any], second: dict[str, Any]) -> ModelSpec:
    return spec_of(ATTN, stages=[{"channels": 8, "blocks": [first]},
                                 {"channels": 16, "stride": 2, "blocks": [second]}])


def test_hash_equal_for_cfgs_that_build_the_same_network():
    eaa = {"type": "eaa", "heads": 2}
    ratios = _with_blocks({"type": "aa", "kappa": 0.5, "upsilon": 0.5, "heads": 2}, eaa)
    depths = _with_blocks({"type": "aa", "dk": 4, "dv": 4, "heads": 2, "kappa": 0.3}, eaa)
    assert ratios.hash() == depths.hash()      # kappa/upsilon only derive dk/dv (8 * 0.5 = 4)
    aa = ATTN["stages"][0]["blocks"][0]
    linear_w3 = _with_blocks(aa, {"type": "eaa", "heads": 2, "attention": "linear", "window": 3})
    linear_w7 = _with_blocks(aa, {"type": "eaa", "heads": 2, "attention": "linear", "window": 7})
    local_w3 = _with_blocks(aa, {"type": "eaa", "heads": 2, "attention": "local", "window": 3})
    local_w7 = _with_blocks(aa, {"type": "eaa", "heads": 2, "attention": "local", "window": 7})
    assert linear_w3.hash() == linear_w7.hash()    # the linear kernel has no window
    assert local_w3.hash() != local_w7.hash()
    # a built model's parameter count agrees with the hash's verdict
    count = lambda s: sum(p.numel() for p in s.build().parameters())  # noqa: E731
    assert count(ratios) == count(depths)
