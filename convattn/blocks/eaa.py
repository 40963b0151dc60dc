"""EAA: a ResNet-18 basic block augmented with an efficient-ViT block (EAANet).

EAANet (Zhang & Zhu) augments the residual blocks of ResNet-18 with the efficient
ViT block E of Multi-scale Vision Longformer (ViL), in one of two ways:

    concat:   Y = F(concat(G(X) + X, E(X)))      (E is an auxiliary branch)
    replace:  Y = F(E(X))                        (E replaces the residual block)

E works on tokens: a patch embedding (conv + LayerNorm), then ViL's pre-norm
transformer layer ``t + Attn(LN(t))``, ``t + MLP(LN(t))``. Attn projects q, k, v
with one linear layer (with bias, as ViL) and mixes them with an attention kernel
from ``convattn.create_attention`` (``attention``: local = ViL's Longformer-2D,
linformer, linear, full), then an output linear layer. The paper has no public
code, so these are the choices made here:

- ``G(X) + X`` is the registered ``basic`` block (its 1x1 conv + BN shortcut when
  the shape changes), ReLU after the sum included: "the output of the residual
  block" that the paper concatenates is the ResNet-18 block output.
- F is a 1x1 conv (no bias) followed by BatchNorm, no activation: the paper's
  linear projection, with the BN every conv of the host ResNet has, so the block
  output keeps a conv-net scale whatever E's LayerNorm-free residual stream does.
- ``dim`` (E's width) defaults to out_ch // 2 in concat mode (E is auxiliary, the
  concat is 1.5x out_ch before F) and out_ch in replace mode (E is the whole
  block), rounded to the nearest multiple of ``heads`` (at least ``heads``), so
  the default always validates. The resolved cfg carries the number.
- ``mlp_ratio`` defaults to 4, ViL's value in every stage (EAANet reuses ViL's
  blocks; the paper states none).
- Stride 2: G is strided (the basic block's stride-2 conv and shortcut) and E
  downsamples in its embedding, so E sees the same grid as G's output:
  ``patch=2`` is a 2x2 stride-2 patch embedding (the paper's preferred method,
  Table 4: 90.90 vs 90.56), ``patch=1`` a 3x3 stride-2 conv embedding (the paper's
  other method, "a stride two convolution before E with 1x1 patches"). Both
  downsampling methods of the paper are thus reachable with ``patch``.
- ``patch=2`` at stride 1: E runs on the half-resolution token grid and every
  token is copied back onto its 2x2 patch (nearest upsampling, the inverse of the
  patch split), cropped to H x W: the block keeps its output size.
- Odd sizes with ``patch=2``: the map is zero padded at the bottom/right to even
  size, so the token grid is ceil(H/2) x ceil(W/2) (no pixel is dropped).
- No position encoding: ViL's absolute/relative ones are not part of the EAA
  description; the conv branch and the zero padding give position cues.
- ``window`` goes to the local kernel, ``proj_dim`` and ``share_kv`` to
  Linformer, ``global_tokens`` to both (null: the kernel's default, 1 for local
  as ViL, 0 for Linformer as before Linformer had global tokens; ViL's Linformer
  runs with its one global token: ``global_tokens: 1``), ``scale`` to linear; a
  kernel that does not take a knob ignores it, so a search space can share the
  knobs across kernels. Knobs a kernel gained later (Linformer's global tokens,
  ``share_kv``, ``scale``) leave the hash unchanged at the kernel's default.
- ``ln_eps``: E's LayerNorm epsilon, 1e-6 as in Vision Longformer's reference
  (``MsViT`` builds every LayerNorm with eps 1e-6). Before this knob existed the
  block used PyTorch's 1e-5; a spec without the key hashes as before (same
  parameters, same state-dict keys), and ``ln_eps: 1.0e-5`` builds the old network.

Cost counts the convs, linears and the kernel's own cost (norms, GELU and the
upsampling copy are not counted, as in torch's FlopCounterMode).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..attention.base import drop_late_knobs, merge_heads, split_heads
from ..base import Block
from ..cost import Cost, conv_macs
from ..errors import ConfigError, MapSizeError
from ..registry import attention_class, create_attention, create_block, register_block

MODES = ("concat", "replace")
KERNELS = ("local", "linformer", "linear", "full")
# Kernel knobs this block forwards to the kernels that accept them.
KERNEL_KEYS = ("window", "global_tokens", "proj_dim", "scale", "share_kv")
LN_EPS = 1e-6  # Vision Longformer's LayerNorm eps


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def token_grid(patch: int, stride: int, h: int, w: int) -> tuple[int, int]:
    """E's token grid (He, We) for an input map (h, w): halved by a 2x2 patch or stride 2."""
    if patch == 1 and stride == 1:
        return (h, w)
    return (math.ceil(h / 2), math.ceil(w / 2))


def _embed_geometry(patch: int, stride: int) -> tuple[int, int, int]:
    """(kernel, stride, padding) of E's embedding conv (see the module docstring)."""
    if patch == 2:
        return 2, 2, 0          # 2x2 patches; odd maps are zero padded beforehand
    if stride == 2:
        return 3, 2, 1          # the paper's stride-2 conv before 1x1-patch tokens
    return 1, 1, 0              # 1x1 patches: a per-pixel linear embedding


class EfficientViT(nn.Module):
    """ViL's efficient transformer layer E on a feature map.

    (B, in_ch, H, W) -> embed -> (B, dim, He, We) with He = H (patch 1, stride 1) or
    ceil(H/2) (patch 2, or stride 2); then on tokens (B, He*We, dim):
    t = LN0(t); t = t + Proj(Kernel(QKV(LN1(t)))); t = t + MLP(LN2(t)).
    """

    def __init__(self, in_ch: int, dim: int, heads: int, mlp_ratio: float, patch: int,
                 stride: int, attention: str, kernel_cfg: dict[str, Any],
                 grid: tuple[int, int] | None, ln_eps: float = LN_EPS):
        super().__init__()
        kernel, step, pad = _embed_geometry(patch, stride)
        self.patch, self.stride, self.heads, self.dim = patch, stride, heads, dim
        self.hidden = max(1, round(dim * mlp_ratio))
        self.embed = nn.Conv2d(in_ch, dim, kernel, step, pad)   # bias, as ViL's PatchEmbed
        self.norm0 = nn.LayerNorm(dim, eps=ln_eps)
        self.norm1 = nn.LayerNorm(dim, eps=ln_eps)
        self.qkv = nn.Linear(dim, 3 * dim)
        # dk = dv = dim: ViL's attention keeps the width; the kernel sees (He, We) maps.
        self.kernel = create_attention(attention, heads=heads, dk=dim, dv=dim,
                                       input_size=grid, **kernel_cfg)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=ln_eps)
        self.mlp = nn.Sequential(nn.Linear(dim, self.hidden), nn.GELU(),
                                 nn.Linear(self.hidden, dim))
        for m in self.modules():
            if isinstance(m, nn.Linear):       # ViT/ViL init of the token layers
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.patch == 2:
            # zero pad bottom/right to even size so that every pixel is in a patch
            x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        e = self.embed(x)                               # (B, dim, He, We)
        b, d, he, we = e.shape
        t = self.norm0(e.flatten(2).transpose(1, 2))    # (B, N, dim)
        t = t + self.attend(self.norm1(t), he, we)
        t = t + self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(b, d, he, we)  # (B, dim, He, We)

    def attend(self, t: torch.Tensor, he: int, we: int) -> torch.Tensor:
        """(B, N, dim) tokens -> (B, N, dim) attention output (before the residual)."""
        b, n, d = t.shape
        qkv = self.qkv(t).transpose(1, 2).reshape(b, 3 * d, he, we)   # (B, 3dim, He, We)
        q, k, v = (split_heads(z, self.heads) for z in qkv.split(d, dim=1))  # (B, Nh, d/Nh, ..)
        out = merge_heads(self.kernel(q, k, v))                        # (B, dim, He, We)
        return self.proj(out.flatten(2).transpose(1, 2))               # (B, N, dim)

    def cost(self, h: int, w: int) -> Cost:
        he, we = token_grid(self.patch, self.stride, h, w)
        n = he * we
        k = self.embed.kernel_size
        macs = conv_macs(self.embed.in_channels, self.dim, k, (he, we))
        macs += n * (3 * self.dim * self.dim + self.dim * self.dim
                     + 2 * self.dim * self.hidden)
        return Cost(macs=macs) + self.kernel.cost((he, we), (he, we))


@register_block("eaa")
class EAABlock(Block):
    """ResNet-18 basic block augmented (concat) or replaced (replace) by ViL's E.

    (B, in_ch, H, W) -> (B, out_ch, ceil(H/s), ceil(W/s)); see the module docstring
    for the formula and every modelling choice.
    """

    defaults = {
        "mode": "concat", "patch": 1, "attention": "local", "heads": 4, "dim": None,
        "mlp_ratio": 4, "window": 7, "global_tokens": None, "proj_dim": 256, "scale": None,
        "share_kv": None, "ln_eps": LN_EPS,
    }
    added_keys = {"ln_eps": LN_EPS}
    strides = (1, 2)

    # -- validation ------------------------------------------------------------
    @staticmethod
    def resolved_dim(out_ch: int, cfg: dict[str, Any]) -> int:
        """E's width: ``dim`` if given, else the mode's default rounded to ``heads``."""
        if cfg["dim"] is not None:
            return cfg["dim"]
        heads = cfg["heads"]
        base = out_ch // 2 if cfg["mode"] == "concat" else out_ch
        return max(heads, (base + heads // 2) // heads * heads)

    @classmethod
    def resolve_config(cls, in_ch: int, out_ch: int, stride: int,
                       cfg: dict[str, Any]) -> dict[str, Any]:
        merged = super().resolve_config(in_ch, out_ch, stride, cfg)
        merged["dim"] = cls.resolved_dim(out_ch, merged)   # so equal networks resolve alike
        if merged["global_tokens"] is None:  # the kernel's own default
            merged["global_tokens"] = attention_class(merged["attention"]).defaults.get(
                "global_tokens")
        return merged

    @classmethod
    def canonical_config(cls, in_ch: int, out_ch: int, stride: int,
                         cfg: dict[str, Any]) -> dict[str, Any]:
        """Kernel knobs kept only for the kernel that reads them (a shared search-space
        knob such as ``window`` does not change a Linformer block), and knobs the kernel
        gained later only away from the kernel's default."""
        kernel = attention_class(cfg["attention"])
        return drop_late_knobs(kernel, {k: v for k, v in cfg.items()
                                        if k not in KERNEL_KEYS or k in kernel.defaults})

    @classmethod
    def check(cls, in_ch: int, out_ch: int, stride: int, cfg: dict[str, Any]) -> None:
        if cfg["mode"] not in MODES:
            raise ConfigError("mode", f"{cfg['mode']!r} not allowed; allowed: {', '.join(MODES)}")
        if cfg["patch"] not in (1, 2) or isinstance(cfg["patch"], bool):
            raise ConfigError("patch", f"{cfg['patch']!r} not allowed; allowed: 1, 2")
        if cfg["attention"] not in KERNELS:
            raise ConfigError("attention", f"{cfg['attention']!r} not allowed for block 'eaa'; "
                                           f"allowed: {', '.join(KERNELS)}")
        try:
            attention_class(cfg["attention"])
        except ConfigError as err:      # allowed here but not registered (yet)
            raise ConfigError("attention", err.message) from None
        for key in ("heads", "window", "proj_dim"):
            if not _is_int(cfg[key]) or cfg[key] < 1:
                raise ConfigError(key, f"{cfg[key]!r} is not a positive int")
        glo = cfg["global_tokens"]
        if glo is not None and (not _is_int(glo) or glo < 0):
            raise ConfigError("global_tokens", f"{glo!r} is not an int >= 0 (or null for "
                                               "the kernel's default)")
        for key in ("scale", "share_kv"):
            if cfg[key] is not None and not isinstance(cfg[key], bool):
                raise ConfigError(key, f"{cfg[key]!r} is not a bool (or null for the "
                                       "kernel's default)")
        eps = cfg["ln_eps"]
        if (not isinstance(eps, (int, float)) or isinstance(eps, bool)
                or not math.isfinite(eps) or not 0 < eps < 1):
            raise ConfigError("ln_eps", f"{eps!r} is not a number in (0, 1)")
        if cfg["dim"] is not None and (not _is_int(cfg["dim"]) or cfg["dim"] < 1):
            raise ConfigError("dim", f"{cfg['dim']!r} is not a positive int (or null for the "
                                     "default)")
        ratio = cfg["mlp_ratio"]
        if (not isinstance(ratio, (int, float)) or isinstance(ratio, bool)
                or not math.isfinite(ratio) or ratio <= 0):
            raise ConfigError("mlp_ratio", f"{ratio!r} is not a positive number")
        dim = cls.resolved_dim(out_ch, cfg)
        if dim % cfg["heads"]:
            raise ConfigError("heads", f"{cfg['heads']} does not divide dim={dim}")
        if round(dim * ratio) < 1:
            raise ConfigError("mlp_ratio", f"{ratio!r} gives an MLP of width 0 at dim={dim}")
        if cfg["attention"] == "linformer" and cfg["input_size"] is None:
            raise MapSizeError("attention 'linformer' needs input_size=(H, W): its sequence "
                               "projections only run at the map size they were built for")

    # -- build ------------------------------------------------------------------
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, **cfg: Any):
        super().__init__(in_ch, out_ch, stride, **cfg)
        c = self.cfg
        self.mode, self.patch, self.dim = c["mode"], c["patch"], c["dim"]
        kernel_cls = attention_class(c["attention"])
        kernel_cfg = {k: c[k] for k in KERNEL_KEYS
                      if k in kernel_cls.defaults and c[k] is not None}
        grid = None if self.input_size is None else token_grid(self.patch, stride,
                                                               *self.input_size)
        self.evit = EfficientViT(in_ch, self.dim, c["heads"], c["mlp_ratio"], self.patch,
                                 stride, c["attention"], kernel_cfg, grid,
                                 float(c["ln_eps"]))
        cat_ch = self.dim
        if self.mode == "concat":
            self.residual = create_block("basic", in_ch, out_ch, stride,
                                         input_size=self.input_size)
            cat_ch += out_ch
        # F: the linear projection of the paper, as a 1x1 conv + BN
        self.fuse = nn.Sequential(nn.Conv2d(cat_ch, out_ch, 1, bias=False),
                                  nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ho, wo = self.output_size(h, w)
        e = self.evit(x)                                   # (B, dim, He, We)
        if e.shape[-2:] != (ho, wo):
            # patch=2 at stride 1: copy each token back onto its 2x2 patch, crop the pad
            e = e.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)[..., :ho, :wo]
        if self.mode == "concat":
            e = torch.cat([self.residual(x), e], dim=1)    # (B, out_ch + dim, Ho, Wo)
        return self.fuse(e)                                # (B, out_ch, Ho, Wo)

    def cost(self, h: int, w: int) -> Cost:
        ho, wo = self.output_size(h, w)
        total = self.evit.cost(h, w)
        if self.mode == "concat":
            total = total + self.residual.cost(h, w)
        cat_ch = self.fuse[0].in_channels
        return total + Cost(macs=conv_macs(cat_ch, self.out_ch, 1, (ho, wo)))
