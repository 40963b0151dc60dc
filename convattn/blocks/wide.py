"""Wide-ResNet block (Zagoruyko & Komodakis), pre-activation.

BN-ReLU-conv3x3(stride)-BN-ReLU-dropout-conv3x3, added to the input; when the
shape changes, the shortcut is a bias-free 1x1 conv (stride) on the
PRE-ACTIVATED input, as in the official WRN code. No ReLU after the sum: the
next block's BN-ReLU comes first.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..cost import Cost
from ..errors import ConfigError
from ..layers import conv, convs_macs, layer_cost
from ..registry import register_block
from .resnet import BodyBlock


class WideResidual(nn.Module):
    """(B, in_ch, H, W) -> (B, out_ch, ceil(H/s), ceil(W/s)); ``conv1`` replaces the
    first 3x3 (the one the AA paper augments in every WRN block) when given."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dropout: float = 0.0,
                 conv1: nn.Module | None = None):
        super().__init__()
        self.stride = stride
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv1 if conv1 is not None else conv(in_ch, out_ch, 3, stride)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(out_ch, out_ch, 3)
        self.shortcut = (None if stride == 1 and in_ch == out_ch
                         else conv(in_ch, out_ch, 1, stride))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.relu(self.bn1(x))                  # pre-activation, (B, in, H, W)
        skip = x if self.shortcut is None else self.shortcut(o)
        y = self.relu(self.bn2(self.conv1(o)))      # (B, out, H/s, W/s)
        y = self.conv2(self.dropout(y))
        return y + skip

    def cost(self, h: int, w: int) -> Cost:
        out_hw = (math.ceil(h / self.stride), math.ceil(w / self.stride))
        skip = convs_macs(self.shortcut, (h, w)) if self.shortcut is not None else 0
        return layer_cost(self.conv1, (h, w)) + layer_cost(self.conv2, out_hw) + Cost(skip)


def check_dropout(value: Any) -> None:
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not 0.0 <= value < 1.0):
        raise ConfigError("dropout", f"{value!r} is not a probability in [0, 1)")


@register_block("wide")
class Wide(BodyBlock):
    """Pre-activation Wide-ResNet block; cfg ``dropout`` between the two convs."""

    defaults: dict[str, Any] = {"dropout": 0.0}

    @classmethod
    def check(cls, in_ch: int, out_ch: int, stride: int, cfg: dict[str, Any]) -> None:
        check_dropout(cfg["dropout"])

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, **cfg: Any):
        super().__init__(in_ch, out_ch, stride, **cfg)
        self.body = WideResidual(in_ch, out_ch, stride, float(self.cfg["dropout"]))
