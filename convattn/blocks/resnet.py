"""ResNet residual blocks: ``basic`` (ResNet-18/34) and ``bottleneck`` (ResNet-50 v1.5).

The residual structure lives in plain modules (``BasicResidual``,
``BottleneckResidual``) that accept a replacement for the one conv an augmenting
block swaps out (the first 3x3 of ``basic``, the 3x3 of ``bottleneck``), so the
``aa`` block reuses them instead of copying them. The registered blocks wrap a
body built with the plain convs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..base import Block
from ..cost import Cost
from ..errors import ConfigError
from ..layers import conv, convs_macs, layer_cost, projection_shortcut
from ..registry import register_block


def _out_hw(h: int, w: int, stride: int) -> tuple[int, int]:
    return (math.ceil(h / stride), math.ceil(w / stride))


class BasicResidual(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).

    (B, in_ch, H, W) -> (B, out_ch, ceil(H/s), ceil(W/s)); conv1 is 3x3 stride s
    unless ``conv1`` (any module with the same mapping and a ``cost(h, w)``) is given.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1,
                 conv1: nn.Module | None = None):
        super().__init__()
        self.stride = stride
        self.conv1 = conv1 if conv1 is not None else conv(in_ch, out_ch, 3, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = conv(out_ch, out_ch, 3)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = projection_shortcut(in_ch, out_ch, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))      # (B, out, H/s, W/s)
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))

    def cost(self, h: int, w: int) -> Cost:
        out_hw = _out_hw(h, w, self.stride)
        return (layer_cost(self.conv1, (h, w)) + layer_cost(self.conv2, out_hw)
                + Cost(convs_macs(self.shortcut, (h, w))))


class BottleneckResidual(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 in->width, 3x3 width->width (stride, groups),
    1x1 width->out_ch, + shortcut, ReLU. ``conv2`` replaces the 3x3 when given."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, width: int | None = None,
                 groups: int = 1, conv2: nn.Module | None = None):
        super().__init__()
        width = width if width is not None else out_ch // 4
        self.stride = stride
        self.conv1 = conv(in_ch, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        # v1.5: the stride sits on the 3x3, not on the first 1x1 (torchvision's choice).
        self.conv2 = conv2 if conv2 is not None else conv(width, width, 3, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv(width, out_ch, 1)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut = projection_shortcut(in_ch, out_ch, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))      # (B, width, H, W)
        y = self.relu(self.bn2(self.conv2(y)))      # (B, width, H/s, W/s)
        y = self.bn3(self.conv3(y))                 # (B, out, H/s, W/s)
        return self.relu(y + self.shortcut(x))

    def cost(self, h: int, w: int) -> Cost:
        out_hw = _out_hw(h, w, self.stride)
        return (layer_cost(self.conv1, (h, w)) + layer_cost(self.conv2, (h, w))
                + layer_cost(self.conv3, out_hw) + Cost(convs_macs(self.shortcut, (h, w))))


def check_positive_int(field: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(field, f"{value!r} is not a positive int")


def bottleneck_width(out_ch: int, cfg: dict[str, Any]) -> int:
    """Width of the bottleneck's 3x3 (out_ch // expansion), validated."""
    check_positive_int("expansion", cfg["expansion"])
    width = out_ch // cfg["expansion"]
    if width < 1:
        raise ConfigError("expansion", f"out_ch={out_ch} // expansion={cfg['expansion']} "
                                       "leaves no channels; allowed: expansion <= out_ch")
    return width


class BodyBlock(Block):
    """A registered block whose layers live in ``self.body``."""

    body: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def cost(self, h: int, w: int) -> Cost:
        return self.body.cost(h, w)


@register_block("basic")
class Basic(BodyBlock):
    """ResNet basic block (two 3x3 conv-BN, projection shortcut when the shape changes)."""

    defaults: dict[str, Any] = {}

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, **cfg: Any):
        super().__init__(in_ch, out_ch, stride, **cfg)
        self.body = BasicResidual(in_ch, out_ch, stride)


@register_block("bottleneck")
class Bottleneck(BodyBlock):
    """ResNet v1.5 bottleneck; ``out_ch`` is the block output, the 3x3 has
    ``out_ch // expansion`` channels split in ``groups``."""

    defaults: dict[str, Any] = {"expansion": 4, "groups": 1}

    @classmethod
    def check(cls, in_ch: int, out_ch: int, stride: int, cfg: dict[str, Any]) -> None:
        width = bottleneck_width(out_ch, cfg)
        check_positive_int("groups", cfg["groups"])
        if width % cfg["groups"]:
            raise ConfigError("groups", f"{cfg['groups']} does not divide the bottleneck "
                                        f"width {width} (= out_ch // expansion)")

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, **cfg: Any):
        super().__init__(in_ch, out_ch, stride, **cfg)
        self.body = BottleneckResidual(in_ch, out_ch, stride,
                                       width=out_ch // self.cfg["expansion"],
                                       groups=self.cfg["groups"])
