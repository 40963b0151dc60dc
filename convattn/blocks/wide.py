"""Wide-ResNet block (Zagoruyko & Komodakis), pre-activation.

BN-ReLU-conv3x3(stride)-BN-ReLU-dropout-conv3x3, added to the input; when the
shape changes, the shortcut is a 1x1 conv (stride) on the PRE-ACTIVATED input,
as in the official WRN code. No ReLU after the sum: the next block's BN-ReLU
comes first. The convs are bias-free (a BN follows each) unless ``bias``; the
seed project's WRN and many WRN ports (meliketoy's) give all three a bias.
``dropout_kind``: ``element`` (nn.Dropout, the WRN paper's) or ``channel``
(nn.Dropout2d, whole feature maps, as the seed project's WRN).
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

#: ``dropout_kind`` -> the dropout module.
DROPOUTS = {"element": nn.Dropout, "channel": nn.Dropout2d}


class WideResidual(nn.Module):
    """(B, in_ch, H, W) -> (B, out_ch, ceil(H/s), ceil(W/s)); ``conv1`` replaces the
    first 3x3 (the one the AA paper augments in every WRN block) when given."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dropout: float = 0.0,
                 conv1: nn.Module | None = None, bias: bool = False,
                 dropout_kind: str = "element"):
        super().__init__()
        self.stride = stride
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv1 if conv1 is not None else conv(in_ch, out_ch, 3, stride, bias=bias)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.dropout = DROPOUTS[dropout_kind](dropout)
        self.conv2 = conv(out_ch, out_ch, 3, bias=bias)
        self.shortcut = (None if stride == 1 and in_ch == out_ch
                         else conv(in_ch, out_ch, 1, stride, bias=bias))
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


#: the wide residual's keys added after the first spec format, at today's behaviour.
WIDE_KEYS: dict[str, Any] = {"bias": False, "dropout_kind": "element"}


def check_wide_keys(cfg: dict[str, Any]) -> None:
    """``dropout``, ``bias`` and ``dropout_kind`` of a wide residual."""
    check_dropout(cfg["dropout"])
    if not isinstance(cfg["bias"], bool):
        raise ConfigError("bias", f"{cfg['bias']!r} is not a bool (true or false)")
    if cfg["dropout_kind"] not in DROPOUTS:
        raise ConfigError("dropout_kind", f"{cfg['dropout_kind']!r} not allowed; allowed: "
                                          f"{', '.join(DROPOUTS)}")


def canonical_dropout(cfg: dict[str, Any]) -> dict[str, Any]:
    """Without dropout its kind builds nothing: written as the default kind."""
    return {**cfg, "dropout_kind": "element"} if not cfg["dropout"] else dict(cfg)


@register_block("wide")
class Wide(BodyBlock):
    """Pre-activation Wide-ResNet block; cfg ``dropout`` (of ``dropout_kind``) between
    the two convs, ``bias`` on its convs."""

    defaults: dict[str, Any] = {"dropout": 0.0, **WIDE_KEYS}
    added_keys = WIDE_KEYS

    @classmethod
    def check(cls, in_ch: int, out_ch: int, stride: int, cfg: dict[str, Any]) -> None:
        check_wide_keys(cfg)

    @classmethod
    def canonical_config(cls, in_ch: int, out_ch: int, stride: int,
                         cfg: dict[str, Any]) -> dict[str, Any]:
        return canonical_dropout(cfg)

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, **cfg: Any):
        super().__init__(in_ch, out_ch, stride, **cfg)
        c = self.cfg
        self.body = WideResidual(in_ch, out_ch, stride, float(c["dropout"]), bias=c["bias"],
                                 dropout_kind=c["dropout_kind"])
