"""The plain residual blocks: basic, bottleneck (v1.5) and wide (pre-activation)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.resnet import BasicBlock as TVBasic
from torchvision.models.resnet import Bottleneck as TVBottleneck

from convattn import ConfigError, create_block

SIZES = [(1, 1), (2, 2), (3, 3), (5, 7), (7, 5)]
PLAIN = [("basic", {}), ("bottleneck", {}), ("bottleneck", {"expansion": 2, "groups": 2}),
         ("wide", {"dropout": 0.3})]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name,cfg", PLAIN)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", SIZES)
def test_shapes_and_gradients(name, cfg, stride, hw):
    torch.manual_seed(0)
    block = create_block(name, 8, 16, stride, input_size=hw, **cfg)  # plain blocks never refuse
    x = torch.randn(2, 8, *hw)
    y = block(x)
    assert y.shape == (2, 16, math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))
    (y * torch.randn_like(y)).sum().backward()
    for pname, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name,cfg", PLAIN)
@pytest.mark.parametrize("in_ch,out_ch,stride,hw", [
    (8, 8, 1, (5, 7)), (8, 16, 1, (6, 6)), (8, 16, 2, (5, 7)), (16, 16, 2, (1, 1)),
])
def test_cost_matches_flop_counter(name, cfg, in_ch, out_ch, stride, hw):
    """Analytic macs = FlopCounterMode's conv flops / 2 (BN and ReLU are not counted)."""
    block = create_block(name, in_ch, out_ch, stride, **cfg).eval()
    with FlopCounterMode(display=False) as counter:
        block(torch.randn(1, in_ch, *hw))
    cost = block.cost(*hw)
    assert cost.macs * 2 == counter.get_total_flops()
    assert cost.attention_bytes == 0


def _downsample(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


def _copy(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters/buffers in registration order (same layer structure, other names)."""
    s, d = list(src.state_dict().values()), dst.state_dict()
    assert len(s) == len(d)
    dst.load_state_dict(dict(zip(d.keys(), s, strict=True)))


def test_basic_equals_torchvision():
    """Same layers in the same order as torchvision's BasicBlock, same outputs."""
    torch.manual_seed(0)
    tv = TVBasic(16, 32, stride=2, downsample=_downsample(16, 32, 2)).eval()
    ours = create_block("basic", 16, 32, 2).eval()
    assert n_params(ours) == n_params(tv)
    _copy(tv, ours)
    x = torch.randn(2, 16, 9, 7)
    torch.testing.assert_close(ours(x), tv(x))


def test_bottleneck_is_v15_and_equals_torchvision():
    """torchvision's Bottleneck is v1.5 (stride on the 3x3); planes = out_ch / 4."""
    torch.manual_seed(0)
    tv = TVBottleneck(64, 32, stride=2, downsample=_downsample(64, 128, 2)).eval()
    ours = create_block("bottleneck", 64, 128, 2).eval()
    assert ours.body.conv1.stride == (1, 1) and ours.body.conv2.stride == (2, 2)
    assert n_params(ours) == n_params(tv)
    _copy(tv, ours)
    x = torch.randn(2, 64, 7, 9)
    torch.testing.assert_close(ours(x), tv(x))


def test_bottleneck_width_and_groups():
    block = create_block("bottleneck", 32, 96, expansion=3, groups=4)
    assert block.body.conv2.in_channels == 32 and block.body.conv2.groups == 4
    # closed form: 1x1 32->32, grouped 3x3 32->32 in 4 groups, 1x1 32->96, BN x3, projection
    expected = 32 * 32 + 9 * 32 * 32 // 4 + 32 * 96 + 2 * (32 + 32 + 96) + 32 * 96 + 2 * 96
    assert n_params(block) == expected


def test_wide_parameter_count_closed_form():
    # BN(in) + 3x3 in->out + BN(out) + 3x3 out->out + bias-free 1x1 shortcut (shape change)
    block = create_block("wide", 16, 40, 2)
    assert n_params(block) == 2 * 16 + 9 * 16 * 40 + 2 * 40 + 9 * 40 * 40 + 16 * 40
    same = create_block("wide", 40, 40, 1)
    assert n_params(same) == 2 * 40 + 9 * 40 * 40 + 2 * 40 + 9 * 40 * 40


def test_wide_shortcuts():
    """Identity on the RAW input when the shape is kept; 1x1 conv on the PRE-ACTIVATED
    input when it changes (official WRN). Zeroing conv2 isolates the shortcut."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 5, 7)
    same = create_block("wide", 8, 8).eval()
    nn.init.zeros_(same.body.conv2.weight)
    torch.testing.assert_close(same(x), x)

    down = create_block("wide", 8, 16, 2).eval()
    nn.init.zeros_(down.body.conv2.weight)
    bn = down.body.bn1
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    pre = F.relu(F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias))
    expected = F.conv2d(pre, down.body.shortcut.weight, stride=2)
    torch.testing.assert_close(down(x), expected)


def test_wide_dropout_active_in_training_only():
    torch.manual_seed(0)
    block = create_block("wide", 8, 8, dropout=0.5)
    x = torch.randn(2, 8, 6, 6)
    block.eval()
    torch.testing.assert_close(block(x), block(x))
    block.train()
    assert not torch.equal(block(x), block(x))


def test_errors_name_the_key():
    with pytest.raises(ConfigError) as err:
        create_block("basic", 8, 8, kappa=0.2)
    assert err.value.field == "kappa" and "allowed" in str(err.value)
    with pytest.raises(ConfigError) as err:
        create_block("bottleneck", 8, 64, groups=3)
    assert err.value.field == "groups" and "16" in str(err.value)
    with pytest.raises(ConfigError) as err:
        create_block("bottleneck", 8, 2, expansion=4)
    assert err.value.field == "expansion"
    with pytest.raises(ConfigError) as err:
        create_block("wide", 8, 8, dropout=1.0)
    assert err.value.field == "dropout"
    with pytest.raises(ConfigError) as err:
        create_block("wide", 8, 8, 3)
    assert err.value.field == "stride"
    allowed = sorted(["bias", "dropout", "dropout_kind", "input_size"])
    with pytest.raises(ConfigError, match=", ".join(allowed)):
        create_block("wide", 8, 8, drop=0.1)
