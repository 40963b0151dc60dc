"""CvT (Wu et al., ICCV 2021): convolutional token embedding + convolutional projection.

The pieces, all map -> map on (B, C, H, W) so that ATC (atc.py) can reuse them:

- ``ConvEmbed``: conv (with bias) + LayerNorm over channels. CvT uses (kernel,
  stride, padding) = (7, 4, 2) and (3, 2, 1). Padding here is CvT's
  (min(k // 2, (k - s + 1) // 2)), and where that would give fewer than
  ceil(H/s) rows (e.g. 7/4/2 on a 5-row map) the missing rows are zero padded at
  the bottom/right, so the output is always ceil(H/s) x ceil(W/s) and equals
  CvT's at 224 and 32 (where no extra padding is needed).
- ``ConvProjection``: CvT's q/k/v projection, Linear(BN(depthwise 3x3 conv(x))),
  the conv without bias and with the kv stride for k and v (padding 1: a
  stride-2 projection of an H-row map has ceil(H/2) rows, 1 for a 1x1 or 2x2
  map, so CIFAR's last-stage 2x2 grid gets a 1x1 key grid, no reshape trick).
- ``ConvAttention``: heads split/merged with ``split_heads``/``merge_heads``
  around a registered attention kernel (``full`` or ``linear``: both accept keys
  on a strided grid), then an output projection. ``scale`` (``linear`` only; null:
  the kernel's default, true) is passed to the kernel; ``scale: false`` is the
  efficient-attention paper's unscaled softmaxes.
- ``MapLinear``/``LayerNorm2d``: nn.Linear / nn.LayerNorm over the channels of a map.

The ``cvt`` block is one CvT transformer layer on a map: when stride > 1 or
in_ch != out_ch it first embeds (``embed_kernel``: 7 for stride 4, else 3), then
x + Attn(LN(x)), x + MLP(LN(x)) (MLP: Linear, GELU, Linear; hidden =
int(C * mlp_ratio)). In = out = C at stride 1, mlp_ratio 4 it has exactly
12C^2 + 46C parameters: q/k/v 3(9C + 2C + C^2 + C), output C^2 + C, two LNs 4C,
MLP 8C^2 + 5C.

Differences from the reference code (microsoft/CvT), on purpose:
- attention scale is the HEAD width^-0.5 (the kernels' SDPA default); the
  reference scales by the full width^-0.5 (dim_out ** -0.5) whatever the heads;
- GELU, where the reference uses QuickGELU (x * sigmoid(1.702 x));
- no cls token: a map-to-map block cannot carry one. CvT-13 has one in stage 3
  (384 parameters), so a CvT-13 built from these blocks has 19,997,480 - 384 =
  19,997,096 parameters at 1000 classes, and pools the map for the head;
- no stochastic depth / dropout (CvT-13 uses drop_path 0.1 in training).
Linear layers start as CvT's (truncated normal std 0.02, zero bias).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..attention.base import merge_heads, split_heads
from ..base import Block
from ..cost import Cost, conv_macs
from ..errors import ConfigError
from ..registry import create_attention, register_block
from .resnet import check_positive_int

#: attention kernels that accept keys on a strided grid and need no fixed map size.
KERNELS = ("full", "linear")


def ceil_hw(hw: tuple[int, int], stride: int) -> tuple[int, int]:
    return (math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))


def embed_padding(kernel: int, stride: int) -> int:
    """CvT's padding for a (kernel, stride) token embedding: 7/4 -> 2, 3/2 -> 1, 3/1 -> 1."""
    return max(0, min(kernel // 2, (kernel - stride + 1) // 2))


def default_embed_kernel(stride: int) -> int:
    return 7 if stride == 4 else 3


def check_common(out_ch: int, cfg: dict[str, Any]) -> None:
    """Checks shared by ``cvt`` and ``atc``: heads, mlp_ratio, kv_stride, attention, kernel."""
    check_positive_int("heads", cfg["heads"])
    if out_ch % cfg["heads"]:
        raise ConfigError("heads", f"{cfg['heads']} does not divide out_ch={out_ch}")
    ratio = cfg["mlp_ratio"]
    if (not isinstance(ratio, (int, float)) or isinstance(ratio, bool)
            or not ratio > 0 or int(out_ch * ratio) < 1):
        raise ConfigError("mlp_ratio", f"{ratio!r}; allowed: a number > 0 with "
                                       f"int(out_ch * mlp_ratio) >= 1")
    check_positive_int("kv_stride", cfg["kv_stride"])
    if cfg["attention"] not in KERNELS:
        raise ConfigError("attention", f"{cfg['attention']!r}; allowed: {', '.join(KERNELS)} "
                                       "(kernels that take keys on a strided grid)")
    if cfg["scale"] is not None:
        if not isinstance(cfg["scale"], bool):
            raise ConfigError("scale", f"{cfg['scale']!r} is not a bool (true or false)")
        if cfg["attention"] != "linear":
            raise ConfigError("scale", f"is read by attention 'linear' only (attention is "
                                       f"{cfg['attention']!r}); leave it out")
    k = cfg["embed_kernel"]
    if k is not None:
        check_positive_int("embed_kernel", k)
        if k % 2 == 0:
            raise ConfigError("embed_kernel", f"{k} is even; allowed: odd sizes or null "
                                              "(7 for stride 4, else 3)")


class MapLinear(nn.Linear):
    """nn.Linear over the channels of a map: (B, in, H, W) -> (B, out, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def cost(self, h: int, w: int) -> Cost:
        return Cost(self.in_features * self.out_features * h * w)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of a (B, C, H, W) map (token LN)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvEmbed(nn.Module):
    """CvT's convolutional token embedding: (B, in, H, W) -> (B, out, ceil(H/s), ceil(W/s))."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.padding = embed_padding(kernel, stride)
        self.proj = nn.Conv2d(in_ch, out_ch, kernel, stride, self.padding)   # with bias
        self.norm = LayerNorm2d(out_ch)

    def extra_padding(self, n: int) -> int:
        """Rows (or columns) to add at the end so that the conv yields ceil(n / s)."""
        need = (math.ceil(n / self.stride) - 1) * self.stride + self.kernel
        return max(0, need - n - 2 * self.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eh, ew = self.extra_padding(x.shape[-2]), self.extra_padding(x.shape[-1])
        if eh or ew:
            x = F.pad(x, (0, ew, 0, eh))
        return self.norm(self.proj(x))

    def cost(self, h: int, w: int) -> Cost:
        return Cost(conv_macs(self.proj.in_channels, self.proj.out_channels, self.kernel,
                              ceil_hw((h, w), self.stride)))


class ConvProjection(nn.Sequential):
    """CvT's q/k/v projection: depthwise kxk conv (stride, no bias) -> BN -> Linear."""

    def __init__(self, dim: int, stride: int = 1, bias: bool = True, kernel: int = 3):
        super().__init__(nn.Conv2d(dim, dim, kernel, stride, kernel // 2, groups=dim, bias=False),
                         nn.BatchNorm2d(dim), MapLinear(dim, dim, bias=bias))
        self.dim, self.stride, self.kernel = dim, stride, kernel

    def cost(self, h: int, w: int) -> Cost:
        oh, ow = ceil_hw((h, w), self.stride)
        return Cost((self.kernel ** 2 * self.dim + self.dim ** 2) * oh * ow)


class ConvAttention(nn.Module):
    """Multi-head attention on a map with map -> map q/k/v/output projections.

    q_proj keeps the grid, k_proj and v_proj may stride it (``kv_stride``); the
    kernel gets q (B, Nh, C/Nh, H, W), k and v (B, Nh, C/Nh, ceil(H/kv), ceil(W/kv)).
    ``out_proj=None`` means no output projection (ATC: the conv after attention mixes).
    """

    def __init__(self, dim: int, heads: int, attention: str, q_proj: nn.Module,
                 k_proj: nn.Module, v_proj: nn.Module, out_proj: nn.Module | None,
                 kv_stride: int, input_size: tuple[int, int] | None = None,
                 scale: bool | None = None):
        super().__init__()
        self.dim, self.heads, self.kv_stride = dim, heads, kv_stride
        self.q_proj, self.k_proj, self.v_proj = q_proj, k_proj, v_proj
        kernel_cfg = {} if scale is None else {"scale": scale}  # None: the kernel's default
        self.kernel = create_attention(attention, heads=heads, dk=dim, dv=dim,
                                       input_size=input_size, **kernel_cfg)
        self.out_proj = out_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = split_heads(self.q_proj(x), self.heads)          # (B, Nh, C/Nh, H, W)
        k = split_heads(self.k_proj(x), self.heads)          # (B, Nh, C/Nh, H/kv, W/kv)
        v = split_heads(self.v_proj(x), self.heads)
        out = merge_heads(self.kernel(q, k, v))              # (B, C, H, W)
        return out if self.out_proj is None else self.out_proj(out)

    def attention_cost(self, h: int, w: int) -> Cost:
        return self.kernel.cost((h, w), ceil_hw((h, w), self.kv_stride))

    def cost(self, h: int, w: int) -> Cost:
        cost = (self.q_proj.cost(h, w) + self.k_proj.cost(h, w) + self.v_proj.cost(h, w)
                + self.attention_cost(h, w))
        return cost if self.out_proj is None else cost + self.out_proj.cost(h, w)


class Mlp(nn.Sequential):
    """CvT's MLP on a map: Linear(C, hidden) -> GELU -> Linear(hidden, C)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(MapLinear(dim, hidden), nn.GELU(), MapLinear(hidden, dim))
        self.dim, self.hidden = dim, hidden

    def cost(self, h: int, w: int) -> Cost:
        return Cost(2 * self.dim * self.hidden * h * w)


def trunc_normal_linears(module: nn.Module) -> None:
    """CvT's init of its linear layers: truncated normal std 0.02, zero bias."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class TransformerMapBlock(Block):
    """Shared frame of ``cvt`` and ``atc``: optional embedding, then
    x + Attn(LN(x)), x + FFN(LN(x)) on the map. Subclasses build the parts."""

    strides = (1, 2, 4)
    embed: nn.Module | None
    norm1: nn.Module
    attn: ConvAttention
    norm2: nn.Module
    ffn: nn.Module

    def needs_embed(self) -> bool:
        return self.stride > 1 or self.in_ch != self.out_ch

    @classmethod
    def canonical_config(cls, in_ch: int, out_ch: int, stride: int,
                         cfg: dict[str, Any]) -> dict[str, Any]:
        """The embedding's kernel written out where there is an embedding, dropped (with
        ATC's ``embed`` kind) where there is none; ``scale`` unset written as the
        kernel's default (true), which ``added_keys`` then leaves out of the hash."""
        out = dict(cfg)
        if out.get("scale") is None:  # the linear kernel's default; full has no scale
            out["scale"] = True
        if stride > 1 or in_ch != out_ch:
            if out["embed_kernel"] is None:
                out["embed_kernel"] = default_embed_kernel(stride)
        else:
            for key in ("embed_kernel", "embed"):
                out.pop(key, None)
        return out

    def embed_kernel(self) -> int:
        k = self.cfg["embed_kernel"]
        return default_embed_kernel(self.stride) if k is None else k

    def kernel_input_size(self) -> tuple[int, int] | None:
        return None if self.input_size is None else ceil_hw(self.input_size, self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x)                                # (B, C, H/s, W/s)
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))

    def cost(self, h: int, w: int) -> Cost:
        cost = Cost()
        if self.embed is not None:
            cost = self.embed.cost(h, w)
        oh, ow = self.output_size(h, w)
        return cost + self.attn.cost(oh, ow) + self.ffn.cost(oh, ow)


@register_block("cvt")
class CvTBlock(TransformerMapBlock):
    """One CvT transformer layer on a map (see the module docstring)."""

    defaults: dict[str, Any] = {"heads": 1, "mlp_ratio": 4, "kv_stride": 2, "qkv_bias": True,
                                "attention": "full", "embed_kernel": None, "scale": None}
    added_keys = {"scale": True}

    @classmethod
    def check(cls, in_ch: int, out_ch: int, stride: int, cfg: dict[str, Any]) -> None:
        check_common(out_ch, cfg)
        if not isinstance(cfg["qkv_bias"], bool):
            raise ConfigError("qkv_bias", f"{cfg['qkv_bias']!r}; allowed: true, false")

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, **cfg: Any):
        super().__init__(in_ch, out_ch, stride, **cfg)
        c, dim = self.cfg, out_ch
        self.embed = (ConvEmbed(in_ch, dim, self.embed_kernel(), stride)
                      if self.needs_embed() else None)
        self.norm1 = LayerNorm2d(dim)
        self.attn = ConvAttention(
            dim, c["heads"], c["attention"],
            q_proj=ConvProjection(dim, 1, c["qkv_bias"]),
            k_proj=ConvProjection(dim, c["kv_stride"], c["qkv_bias"]),
            v_proj=ConvProjection(dim, c["kv_stride"], c["qkv_bias"]),
            out_proj=MapLinear(dim, dim), kv_stride=c["kv_stride"],
            input_size=self.kernel_input_size(), scale=c["scale"])
        self.norm2 = LayerNorm2d(dim)
        self.ffn = Mlp(dim, int(dim * c["mlp_ratio"]))
        trunc_normal_linears(self)
