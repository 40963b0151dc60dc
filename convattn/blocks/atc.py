"""ATC, "Attend To Convolution" (Lee, Ha & Kim, 2023): CvT with conv blocks for linears.

The paper (no public code; its figures were lost in the text copy) describes ATC as
CvT's hierarchy (strided convolutional token embedding per stage) whose
transformer block "removes all linear projections of CvT and replaces them with
depth-wise separable residual blocks", with "convolution after attention" so that
the convolution sees the attention's global receptive field, and "by applying 1x1
convolution to all convolutional residual blocks, CvT can be implemented" (ATC
generalises CvT). The ``atc`` block is one such layer on a map:

    x = Embed(x)                       when stride > 1 or in_ch != out_ch
    x = x + Attn(LN(x))                q, k, v = ConvUnit(LN(x)), k/v with kv_stride
    x = x + ConvFFN(LN(x))             the convolution after attention

Choices (each one the paper leaves open):

- ConvUnit (replaces CvT's q/k/v Linear(BN(dwconv))): a residual conv unit
  u(x) = shortcut(x) + branch(x). ``conv=dwsep`` (default, the paper's "Res"):
  branch = depthwise 3x3 (stride) -> BN -> GELU -> pointwise 1x1 -> BN;
  ``conv=residual`` (the paper's "Res*", "simple residual convolution"):
  branch = plain 3x3 conv (stride) -> BN. Shortcut: identity; for the strided
  k/v units a parameter-free ceil-mode average pool; with a channel change
  (embedding only) avg-pool then 1x1 conv + BN (ResNet-D style, no pixel skipped).
  With 1x1 kernels the dwsep unit is CvT's projection plus a skip.
- No separate output projection: CvT's output Linear and its MLP are replaced
  together by the convolution after attention, which mixes the heads. (Keeping a
  ConvUnit there too adds C^2 per block and overshoots the paper's ATC-3 count,
  2.9M, by ~9% at CvT-13 widths; without it ATC-3/9/13/15 land within 5%.)
- ConvFFN (replaces the MLP; hidden = int(C * mlp_ratio), default 4 as CvT):
  ``dwsep``: pointwise C -> hidden -> BN -> GELU -> depthwise 3x3 -> BN -> GELU ->
  pointwise hidden -> C -> BN (the inverted residual: with a 1x1 depthwise it is
  CvT's MLP); ``residual``: 3x3 conv C -> hidden -> BN -> GELU -> 3x3 conv
  hidden -> C -> BN (a ResNet basic-block branch; use mlp_ratio 1 for ResNet's
  width). The pre-norm LayerNorms stay, as in CvT, so the block is CvT's layer
  with every linear made a convolution.
- Embedding: ``embed=conv`` is CvT's ConvEmbed (conv with bias + LN, kernel
  ``embed_kernel``: 7 for stride 4 else 3); ``embed=residual`` (the paper's
  "Residual Block with Downsampling", Experiment 3) is a ConvUnit of kind
  ``conv`` with kernel ``embed_kernel``, stride s and padding k // 2, then LN.
- The attention kernel (``full`` or ``linear``) scales by head width^-0.5 and the
  activation is GELU, as in the ``cvt`` block.

Parameters at in = out = C, stride 1, dwsep, mlp_ratio 4: 11C^2 + 97C
(3 units x (C^2 + 13C), FFN 8C^2 + 54C, two LNs 4C).

``conv=residual`` is the literal reading of "simple residual convolution" (every
depthwise-separable conv a plain 3x3 conv): 27C^2 for the units and 72C^2 for an
mlp_ratio-4 FFN, far above the paper's Res* counts (+0.4M over ATC-3); the
paper's numbers for that variant cannot come from plain 3x3 convs throughout.

Paper counts (CIFAR-100, 32x32; stages of ``atc`` blocks with strides 4, 2, 2,
embeddings 7/4, 3/2, 3/2, no stem; head LN + global average pool + Linear):
widths 80/144/400 (heads 1/3/5) with blocks per stage 1/1/1, 1/1/3, 1/3/1, 3/1/1,
1/2/6, 1/2/10, 1/4/10 give ATC-3, the three ATC-5, ATC-9, -13, -15 within 3.6%
of all seven of the paper's counts; CvT-13's widths 64/192/384 (heads 1/3/6)
with the same depths give ATC-3/9/13/15 within 4.6% but miss ATC-5 1/3/1 by 15%
(tests/convattn/test_cvt.py checks both).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..cost import Cost
from ..errors import ConfigError
from ..layers import convs_macs
from ..registry import register_block
from .cvt import (
    ConvAttention,
    ConvEmbed,
    LayerNorm2d,
    TransformerMapBlock,
    ceil_hw,
    check_common,
)

CONV_KINDS = ("dwsep", "residual")
EMBED_KINDS = ("conv", "residual")


def _branch(in_ch: int, out_ch: int, kind: str, kernel: int, stride: int) -> nn.Sequential:
    pad = kernel // 2
    if kind == "dwsep":
        return nn.Sequential(
            nn.Conv2d(in_ch, in_ch, kernel, stride, pad, groups=in_ch, bias=False),
            nn.BatchNorm2d(in_ch), nn.GELU(),
            nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, pad, bias=False),
                         nn.BatchNorm2d(out_ch))


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    layers: list[nn.Module] = []
    if stride > 1:
        # ceil_mode: ceil(H/s) rows like the branch; partial windows average what they cover.
        layers.append(nn.AvgPool2d(stride, stride, ceil_mode=True))
    if in_ch != out_ch:
        layers += [nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]
    return nn.Sequential(*layers) if layers else nn.Identity()


class ConvUnit(nn.Module):
    """shortcut(x) + branch(x): (B, in, H, W) -> (B, out, ceil(H/s), ceil(W/s))."""

    def __init__(self, in_ch: int, out_ch: int, kind: str = "dwsep", kernel: int = 3,
                 stride: int = 1):
        super().__init__()
        self.stride = stride
        self.branch = _branch(in_ch, out_ch, kind, kernel, stride)
        self.shortcut = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.branch(x)

    def cost(self, h: int, w: int) -> Cost:
        return Cost(convs_macs(self.branch, (h, w))
                    + convs_macs(self.shortcut, ceil_hw((h, w), self.stride)))


class ResidualEmbed(nn.Sequential):
    """Token embedding as a downsampling residual conv unit, then LN over channels."""

    def __init__(self, in_ch: int, out_ch: int, kind: str, kernel: int, stride: int):
        super().__init__(ConvUnit(in_ch, out_ch, kind, kernel, stride), LayerNorm2d(out_ch))

    def cost(self, h: int, w: int) -> Cost:
        return self[0].cost(h, w)


class ConvFFN(nn.Sequential):
    """The convolution after attention, in place of CvT's MLP (see module docstring)."""

    def __init__(self, dim: int, hidden: int, kind: str = "dwsep"):
        if kind == "dwsep":
            layers = [nn.Conv2d(dim, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.GELU(),
                      nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False),
                      nn.BatchNorm2d(hidden), nn.GELU(),
                      nn.Conv2d(hidden, dim, 1, bias=False), nn.BatchNorm2d(dim)]
        else:
            layers = [nn.Conv2d(dim, hidden, 3, 1, 1, bias=False), nn.BatchNorm2d(hidden),
                      nn.GELU(), nn.Conv2d(hidden, dim, 3, 1, 1, bias=False),
                      nn.BatchNorm2d(dim)]
        super().__init__(*layers)

    def cost(self, h: int, w: int) -> Cost:
        return Cost(convs_macs(self, (h, w)))


@register_block("atc")
class ATCBlock(TransformerMapBlock):
    """One ATC layer on a map: embed?, x + Attn(LN(x)) with conv-unit projections,
    x + ConvFFN(LN(x)). See the module docstring for every choice."""

    defaults: dict[str, Any] = {"conv": "dwsep", "heads": 1, "mlp_ratio": 4, "kv_stride": 2,
                                "embed": "conv", "embed_kernel": None, "attention": "full",
                                "scale": None}
    added_keys = {"scale": True}  # canonical_config writes an unset scale as true

    @classmethod
    def check(cls, in_ch: int, out_ch: int, stride: int, cfg: dict[str, Any]) -> None:
        if cfg["conv"] not in CONV_KINDS:
            raise ConfigError("conv", f"{cfg['conv']!r}; allowed: {', '.join(CONV_KINDS)}")
        if cfg["embed"] not in EMBED_KINDS:
            raise ConfigError("embed", f"{cfg['embed']!r}; allowed: {', '.join(EMBED_KINDS)}")
        check_common(out_ch, cfg)

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, **cfg: Any):
        super().__init__(in_ch, out_ch, stride, **cfg)
        c, dim, kind = self.cfg, out_ch, self.cfg["conv"]
        self.embed = None
        if self.needs_embed():
            k = self.embed_kernel()
            self.embed = (ConvEmbed(in_ch, dim, k, stride) if c["embed"] == "conv"
                          else ResidualEmbed(in_ch, dim, kind, k, stride))
        self.norm1 = LayerNorm2d(dim)
        self.attn = ConvAttention(
            dim, c["heads"], c["attention"],
            q_proj=ConvUnit(dim, dim, kind),
            k_proj=ConvUnit(dim, dim, kind, stride=c["kv_stride"]),
            v_proj=ConvUnit(dim, dim, kind, stride=c["kv_stride"]),
            out_proj=None, kv_stride=c["kv_stride"], input_size=self.kernel_input_size(),
            scale=c["scale"])
        self.norm2 = LayerNorm2d(dim)
        self.ffn = ConvFFN(dim, int(dim * c["mlp_ratio"]), kind)
