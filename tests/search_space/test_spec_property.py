"""Property: a random spec that validates builds and runs a forward pass with the
shape inference predicted; one that does not validate fails with SpecError before
any module is built (never a PyTorch error)."""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import convattn
from search_space import ModelSpec, SpecError

# Values to try per cfg key, beyond the block's own default. Strings come from the
# registries so that new kernels and positions are exercised as they land.
_STRINGS = {
    "attention": convattn.list_attention(),
    "position": ["none", "sine", "coord", "learned", "relative"],
    "residual": ["basic", "bottleneck", "wide"],
    "mode": ["concat", "replace"],
    "conv": ["dwsep", "residual"],
    "embed": ["conv", "residual"],
}
_INTS = [1, 2, 3, 4, 8]
_FLOATS = [0.0, 0.1, 0.25, 0.5, 1.0]


@st.composite
def block_cfg(draw: st.DrawFn, block_type: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {"type": block_type}
    for key, default in convattn.block_class(block_type).defaults.items():
        if draw(st.integers(0, 3)):
            continue  # mostly leave it to the default, so that a fair share validates
        if isinstance(default, bool):
            value = draw(st.booleans())
        elif isinstance(default, int):
            value = draw(st.sampled_from(sorted({*_INTS, default})))
        elif isinstance(default, float):
            value = draw(st.sampled_from(sorted({*_FLOATS, default})))
        elif isinstance(default, str):
            value = draw(st.sampled_from(sorted({*_STRINGS.get(key, []), default})))
        else:  # None: an optional int (dk, dv, window, proj_dim, dim, ...)
            value = draw(st.sampled_from([4, 8]))
        cfg[key] = value
    return cfg


@st.composite
def spec_dicts(draw: st.DrawFn) -> dict[str, Any]:
    blocks = convattn.list_blocks()
    stages = []
    for _ in range(draw(st.integers(1, 3))):
        stages.append({
            "channels": draw(st.sampled_from([4, 8, 16])),
            "stride": draw(st.sampled_from([1, 2])),
            "blocks": [draw(block_cfg(draw(st.sampled_from(blocks))))
                       for _ in range(draw(st.integers(1, 2)))],
        })
    stem = draw(st.sampled_from([
        {"kind": "none"},
        {"channels": 8},
        {"channels": 8, "kernel": 3, "stride": 2, "norm": "none", "act": "none"},
        {"channels": 4, "kernel": 5, "pool": "max"},
    ]))
    return {
        "version": 1, "name": "random",
        "input": {"channels": draw(st.sampled_from([1, 3])),
                  "size": [draw(st.integers(1, 12)), draw(st.integers(1, 12))]},
        "classes": draw(st.integers(1, 5)),
        "stem": stem, "stages": stages,
        "head": draw(st.sampled_from([{}, {"norm": "batch", "act": "relu"},
                                      {"norm": "layer", "dropout": 0.5}])),
    }


outcomes: dict[str, int] = {"valid": 0, "invalid": 0}
reasons: list[str] = []


# derandomized: the same examples every run; no shrinking, which would take minutes
@settings(max_examples=80, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec_dicts())
def test_valid_specs_build_and_run(data):
    try:
        spec = ModelSpec.from_dict(data)
    except SpecError as err:
        outcomes["invalid"] += 1
        reasons.append(str(err))
        unchecked = ModelSpec.from_dict(data, validate=False)
        try:
            unchecked.build()
        except SpecError:
            return
        raise AssertionError("an invalid spec built") from None
    outcomes["valid"] += 1
    assert spec.to_dict() == data
    model = spec.build().eval()
    res = spec.resolve()
    x = torch.randn(2, *spec.input.shape)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert tuple(feats.shape[1:]) == res.feature_shape
        assert model.head(feats).shape == (2, spec.classes)
    assert sum(p.numel() for p in model.parameters()) == sum(
        d["params"] for _, d in spec.graph().nodes(data=True))


def test_the_property_saw_both_kinds():
    # runs after the property (file order): it must not be vacuous either way
    if outcomes["valid"] + outcomes["invalid"] == 0:
        test_valid_specs_build_and_run()
    assert outcomes["valid"] >= 10, outcomes
    assert outcomes["invalid"] >= 3, outcomes
