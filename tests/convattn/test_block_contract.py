"""The Block contract, checked on every registered block.

For every block in ``convattn.list_blocks()`` (with representative cfgs, one per
attention kernel where the block takes one), on tiny, odd and non-square maps at
every allowed stride: either ``Block.resolve_config`` refuses with a
ConfigError/MapSizeError and building refuses too, or the block builds, maps
(B, in, H, W) -> (B, out, ceil(H/s), ceil(W/s)), every parameter gets a finite
gradient and ``cost`` reports positive multiply-adds. Validation and building
must agree: a cfg that resolves must build and run, a cfg that does not
resolve must not build.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import convattn
from convattn import ConfigError, block_class, create_block, list_attention, list_blocks

IN_CH, OUT_CH, BATCH = 16, 32, 2
SIZES = [(1, 1), (2, 2), (3, 3), (5, 7), (7, 5)]
KERNELS = ["full", "linear", "linformer", "local", "relative"]

# Representative cfgs per known block (16 -> 32 channels). Blocks not listed here
# are still checked, with their defaults.
_AA = {"heads": 2, "kappa": 0.25, "upsilon": 0.25}
REPRESENTATIVE: dict[str, list[dict[str, Any]]] = {
    "aa": [
        {**_AA, "attention": "relative", "position": "relative"},
        {**_AA, "attention": "full", "pool": True, "residual": "wide"},
        {**_AA, "attention": "linear", "position": "sine"},
        {**_AA, "attention": "local", "window": 3, "residual": "bottleneck", "expansion": 2},
        {**_AA, "attention": "linformer", "proj_dim": 4},
    ],
    "eaa": [
        {"mode": "concat", "patch": 1, "attention": "local", "heads": 2, "window": 3},
        {"mode": "replace", "patch": 2, "attention": "local", "heads": 2},
        {"mode": "concat", "patch": 1, "attention": "linformer", "proj_dim": 4},
        {"mode": "concat", "patch": 2, "attention": "linear"},
        {"mode": "replace", "patch": 1, "attention": "full"},
    ],
    "acmix": [{"heads": 4}, {"heads": 4, "residual": "basic"}],
    "cvt": [{"heads": 2, "attention": "full"}, {"heads": 2, "attention": "linear"}],
    "atc": [{"heads": 2}, {"heads": 2, "conv": "residual", "embed": "residual"}],
}


def _cfgs(name: str) -> list[dict[str, Any]]:
    return REPRESENTATIVE.get(name, [{}])


def _label(cfg: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in cfg.items()) or "defaults"


def _block_cases() -> list:
    return [pytest.param(name, cfg, id=f"{name}[{_label(cfg)}]")
            for name in list_blocks() for cfg in _cfgs(name)]


def _map_cases() -> list:
    cases = []
    for name in list_blocks():
        for cfg in _cfgs(name):
            for stride in block_class(name).strides:
                for h, w in SIZES:
                    cases.append(pytest.param(name, cfg, stride, (h, w),
                                              id=f"{name}[{_label(cfg)}]-s{stride}-{h}x{w}"))
    return cases


def _resolves(name: str, stride: int, cfg: dict[str, Any]) -> ConfigError | None:
    try:
        block_class(name).resolve_config(IN_CH, OUT_CH, stride, dict(cfg))
    except ConfigError as err:
        return err
    return None


@pytest.mark.parametrize(("name", "cfg", "stride", "size"), _map_cases())
def test_block_maps_or_refuses_consistently(name, cfg, stride, size):
    torch.manual_seed(0)
    cfg = {**cfg, "input_size": size}
    refusal = _resolves(name, stride, cfg)
    if refusal is not None:
        # validation refused: building must refuse the same way, never half-build
        with pytest.raises(ConfigError):
            create_block(name, IN_CH, OUT_CH, stride, **cfg)
        assert refusal.field, f"{name}: refusal names no cfg key: {refusal}"
        return
    # validation accepted: the block must build and run (no reshape crash, no late refusal)
    block = create_block(name, IN_CH, OUT_CH, stride, **cfg)
    block.train()
    x = torch.randn(BATCH, IN_CH, *size)
    y = block(x)
    expected = (BATCH, OUT_CH, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
    assert tuple(y.shape) == expected
    assert block.output_size(*size) == expected[2:]
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    for pname, p in block.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: no gradient reaches {pname}"
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"
    cost = block.cost(*size)
    assert isinstance(cost, convattn.Cost)
    assert cost.macs > 0
    assert cost.attention_bytes >= 0


@pytest.mark.parametrize(("name", "cfg"), _block_cases())
def test_representative_cfg_is_valid_on_a_plain_map(name, cfg):
    """Guards the table above: a cfg that never resolves would test only refusals."""
    cls = block_class(name)
    for stride in cls.strides:
        assert _resolves(name, stride, {**cfg, "input_size": (8, 8)}) is None
        block = create_block(name, IN_CH, OUT_CH, stride, **cfg, input_size=(8, 8))
        assert block.cost(8, 8).macs > 0
        # the resolved cfg (what a spec stores and hashes) resolves to itself and
        # builds the same block
        resolved = cls.resolve_config(IN_CH, OUT_CH, stride, {**cfg, "input_size": (8, 8)})
        assert cls.resolve_config(IN_CH, OUT_CH, stride, dict(resolved)) == resolved
        again = create_block(name, IN_CH, OUT_CH, stride, **resolved)
        assert [p.shape for p in again.parameters()] == [p.shape for p in block.parameters()]


@pytest.mark.parametrize(("name", "cfg"), _block_cases())
def test_without_input_size_validation_and_building_agree(name, cfg):
    """input_size is optional: a block that resolves without it has no size-bound
    parameters, so it must build and run on any map; one that needs it refuses early."""
    refusal = _resolves(name, 1, cfg)
    if refusal is not None:
        with pytest.raises(ConfigError):
            create_block(name, IN_CH, OUT_CH, 1, **cfg)
        return
    block = create_block(name, IN_CH, OUT_CH, 1, **cfg)
    for size in [(5, 7), (8, 8)]:
        assert block(torch.randn(BATCH, IN_CH, *size)).shape == (BATCH, OUT_CH, *size)


@pytest.mark.parametrize("name", list_blocks())
def test_unknown_cfg_key_lists_allowed_keys(name):
    with pytest.raises(ConfigError) as info:
        create_block(name, IN_CH, OUT_CH, not_a_key=1)
    assert info.value.field == "not_a_key"
    for key in [*block_class(name).defaults, "input_size"]:
        assert key in info.value.message


@pytest.mark.parametrize("name", list_blocks())
def test_disallowed_stride_is_a_config_error(name):
    cls = block_class(name)
    stride = next(s for s in (3, 5, 7, 8) if s not in cls.strides)
    with pytest.raises(ConfigError) as info:
        create_block(name, IN_CH, OUT_CH, stride)
    assert info.value.field == "stride"


@pytest.mark.parametrize("name", list_blocks())
def test_block_is_registered_under_its_name(name):
    cls = block_class(name)
    assert cls.registry_name == name
    assert issubclass(cls, convattn.Block)
    assert set(cls.strides) >= {1}


def test_unknown_block_lists_known_blocks():
    with pytest.raises(ConfigError) as info:
        create_block("nope", IN_CH, OUT_CH)
    assert "nope" in str(info.value)
    for name in list_blocks():
        assert name in str(info.value)


def test_all_five_kernels_are_registered():
    assert list_attention() == KERNELS


def test_expected_blocks_are_registered():
    assert {"basic", "bottleneck", "wide", "aa", "eaa", "acmix", "cvt", "atc"} <= set(
        list_blocks())
