"""Attention-augmented convolution (Bello et al., ICCV 2019) and the ``aa`` block.

``AAConv2d`` outputs concat[conv_kxk(X) with out_ch - dv channels, MHA(X) with dv
channels]. q, k, v come from ONE 1x1 conv in_ch -> 2dk + dv (a kxk qkv conv is a
known bug of a popular port), heads are split and merged as channel views,
the mixing is any registered attention kernel, and a 1x1 conv dv -> dv mixes
the heads. upsilon = 1 (dv = out_ch) leaves no conv channels: fully attentional.

Stride s: the conv path is a kxk stride-s conv; the attention path runs on the
strided grid, reached by a 3x3 average pool with stride s and padding 1 (Bello
et al. downsample with 3x3 average pooling) applied to the qkv conv's input, so
both paths give ceil(H/s) x ceil(W/s), odd sizes included. ``pool=True`` (the
paper's memory saver) further runs attention on a 3x3/stride-2 average-pooled
map and bilinearly upsamples the head-mixed result before the concat; relative
tables and learned positions are then sized for that pooled map. Pools do not
count padded zeros (count_include_pad=False) so border pixels are not dimmed.

Position encodings (convattn.position) act on the qkv conv's input, on the grid
the attention runs on: ``sine``/``learned`` are added, ``coord`` concatenates
2 channels (the qkv conv then takes in_ch + 2), ``relative`` only asserts that
the kernel carries relative logits.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..attention.base import drop_late_knobs, merge_heads, split_heads
from ..cost import Cost, conv_macs, out_size
from ..errors import ConfigError
from ..position import check_position, create_position, list_positions
from ..registry import attention_class, create_attention, list_attention, register_block
from .resnet import BasicResidual, BodyBlock, BottleneckResidual, bottleneck_width
from .resnet import check_positive_int as _check_int
from .wide import WIDE_KEYS, WideResidual, canonical_dropout, check_wide_keys

#: kernel options the ``aa`` block passes through when set (None = kernel default);
#: one the chosen kernel does not take is refused, naming the kernels that take it.
KERNEL_OPTIONS = ("window", "global_tokens", "proj_dim", "scale", "share_kv")


def attention_size(hw: tuple[int, int], stride: int = 1, pool: bool = False) -> tuple[int, int]:
    """(H, W) of the map the attention runs on: 3x3 avg-pool stride s (pad 1) gives
    ceil(H/s); ``pool`` halves it again the same way."""
    h, w = (out_size(n, 3, stride, 1) for n in hw)
    if pool:
        h, w = out_size(h, 3, 2, 1), out_size(w, 3, 2, 1)
    return (h, w)


def _kernel_class(attention: Any) -> type:
    if not isinstance(attention, str) or attention not in list_attention():
        raise ConfigError("attention", f"unknown attention {attention!r}; "
                                       f"known: {', '.join(list_attention())}")
    return attention_class(attention)


def _check_kernel_options(attention: str, options: dict[str, Any]) -> None:
    accepted = _kernel_class(attention).defaults
    for key in options:
        if key not in accepted:
            users = [n for n in list_attention() if key in attention_class(n).defaults]
            raise ConfigError(key, f"not used by attention {attention!r} (it takes: "
                                   f"{', '.join(sorted(accepted)) or 'none'}); "
                                   f"used by: {', '.join(users) or 'no kernel'}")


def check_augmented(in_ch: int, out_ch: int, kernel_size: int, stride: int, dk: Any, dv: Any,
                    heads: Any, attention: Any, position: Any, pool: Any,
                    input_size: tuple[int, int] | None,
                    attention_cfg: dict[str, Any]) -> None:
    """Raise ConfigError / MapSizeError for an AAConv2d that cannot be built.

    The kernel and the position encoding are then constructed on the ``meta``
    device (no memory, no values) so that their own rules (a relative kernel
    needs input_size, sine needs channels % 4 == 0, a window must be positive...)
    are checked exactly as the real build will check them.
    """
    for field, value in (("in_ch", in_ch), ("out_ch", out_ch), ("kernel_size", kernel_size),
                         ("stride", stride), ("heads", heads), ("dk", dk), ("dv", dv)):
        _check_int(field, value)
    if kernel_size % 2 == 0:
        raise ConfigError("kernel_size", f"{kernel_size} is even; allowed: odd sizes "
                                         "(1, 3, 5, ...) so the output is ceil(H/stride)")
    if dv > out_ch:
        raise ConfigError("dv", f"{dv} exceeds the {out_ch} output channels of the augmented "
                                "conv; allowed: dv <= out_ch (dv = out_ch: fully attentional)")
    for depth, value in (("dk", dk), ("dv", dv)):
        if value % heads:
            raise ConfigError("heads", f"{heads} does not divide {depth}={value}")
    if not isinstance(pool, bool):
        raise ConfigError("pool", f"{pool!r} is not a bool")
    _check_kernel_options(attention, attention_cfg)
    if not isinstance(position, str) or position not in list_positions():
        raise ConfigError("position", f"unknown position encoding {position!r}; "
                                      f"known: {', '.join(list_positions())}")
    check_position(position, attention)
    att_hw = attention_size(input_size, stride, pool) if input_size is not None else None
    _check_parts(attention, position, in_ch, heads, dk, dv, att_hw,
                 tuple(sorted(attention_cfg.items())))


@functools.lru_cache(maxsize=4096)
def _check_parts(attention: str, position: str, in_ch: int, heads: int, dk: int, dv: int,
                 att_hw: tuple[int, int] | None, attention_items: tuple) -> None:
    """Construct the kernel and position encoding on the meta device (cached: search
    spaces validate the same combination thousands of times; a refusal raises and
    is therefore never cached)."""
    attention_cfg = dict(attention_items)
    with torch.device("meta"):
        create_attention(attention, heads=heads, dk=dk, dv=dv, input_size=att_hw,
                         **attention_cfg)
        try:
            create_position(position, in_ch, input_size=att_hw)
        except ConfigError as err:
            if err.field != "channels":
                raise
            # The encoding acts on the block's input channels: name the cfg key at fault.
            raise ConfigError("position", f"{position!r} on {in_ch} input channels: "
                                          f"{err.message}") from None


class AAConv2d(nn.Module):
    """concat[conv kxk (out_ch - dv), MHA (dv)]: (B, in_ch, H, W) -> (B, out_ch, H/s, W/s).

    ``dk``/``dv`` are the total key/value depths (divisible by ``heads``);
    ``input_size`` is the (H, W) of the INPUT map (the attention map size follows
    from stride and pool); ``attention_cfg`` goes to the kernel (window, ...).
    All convs carry a bias, as in the paper's code and the parameter count of
    blocks.md; a following batch norm makes the conv-path bias redundant but harmless.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, *,
                 dk: int, dv: int, heads: int, attention: str = "relative",
                 position: str = "none", pool: bool = False,
                 input_size: tuple[int, int] | None = None, bias: bool = True,
                 **attention_cfg: Any):
        super().__init__()
        input_size = tuple(input_size) if input_size is not None else None
        check_augmented(in_ch, out_ch, kernel_size, stride, dk, dv, heads, attention, position,
                        pool, input_size, attention_cfg)
        self.in_ch, self.out_ch, self.stride, self.pool = in_ch, out_ch, stride, pool
        self.dk, self.dv, self.heads = dk, dv, heads
        self.input_size = input_size
        att_hw = attention_size(input_size, stride, pool) if input_size is not None else None
        # conv path; absent when upsilon = 1 (fully attentional)
        self.conv = (nn.Conv2d(in_ch, out_ch - dv, kernel_size, stride, kernel_size // 2,
                               bias=bias) if dv < out_ch else None)
        self.position = create_position(position, in_ch, input_size=att_hw)
        self.qkv = nn.Conv2d(self.position.out_channels, 2 * dk + dv, 1, bias=bias)
        self.attn = create_attention(attention, heads=heads, dk=dk, dv=dv, input_size=att_hw,
                                     **attention_cfg)
        self.proj = nn.Conv2d(dv, dv, 1, bias=bias)

    def attention_input(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in, H, W) -> the map the qkv conv sees (B, in(+2), Ha, Wa)."""
        if self.stride > 1:
            x = F.avg_pool2d(x, 3, self.stride, 1, count_include_pad=False)
        if self.pool:
            x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
        return self.position(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        out_hw = (-(-h // self.stride), -(-w // self.stride))
        q, k, v = self.qkv(self.attention_input(x)).split([self.dk, self.dk, self.dv], dim=1)
        o = self.attn(split_heads(q, self.heads), split_heads(k, self.heads),
                      split_heads(v, self.heads))                    # (B, Nh, dvh, Ha, Wa)
        o = self.proj(merge_heads(o))                                 # (B, dv, Ha, Wa)
        if tuple(o.shape[-2:]) != out_hw:
            # 1x1 conv and bilinear upsampling commute, so mixing heads before
            # upsampling gives the same result at a fraction of the cost.
            o = F.interpolate(o, size=out_hw, mode="bilinear", align_corners=False)
        if self.conv is None:
            return o
        return torch.cat([self.conv(x), o], dim=1)                   # (B, out, H/s, W/s)

    def cost(self, h: int, w: int) -> Cost:
        """Multiply-adds of the conv path, qkv and head-mixing 1x1 convs and the kernel,
        for one (h, w) input; attention bytes from the kernel."""
        out_hw = attention_size((h, w), self.stride)
        att_hw = attention_size((h, w), self.stride, self.pool)
        macs = conv_macs(self.qkv.in_channels, self.qkv.out_channels, 1, att_hw)
        macs += conv_macs(self.dv, self.dv, 1, att_hw)
        if self.conv is not None:
            macs += conv_macs(self.in_ch, self.conv.out_channels, self.conv.kernel_size, out_hw)
        return Cost(macs) + self.attn.cost(att_hw, att_hw)

    def extra_repr(self) -> str:
        return (f"{self.in_ch}, {self.out_ch}, stride={self.stride}, dk={self.dk}, "
                f"dv={self.dv}, heads={self.heads}, pool={self.pool}")


@register_block("aa")
class AA(BodyBlock):
    """A residual block whose conv is attention-augmented, placed as in the paper.

    ``residual``: basic -> the FIRST 3x3 conv; bottleneck -> the 3x3 conv; wide ->
    the first 3x3 conv (the paper augments the first conv of every WRN block).
    Unless given, dk and dv are kappa * Fout and upsilon * Fout rounded to the nearest
    multiple of ``heads`` (at least one per head, dv at most Fout; ``nas build`` and
    ``nas show`` print each rounding), where Fout is the
    augmented conv's output channels (out_ch, or out_ch // expansion for the
    bottleneck): a ratio is a request for a share of the channels, and the nearest
    share that splits evenly across heads is what a user means by it. Explicit dk /
    dv are taken as given and must be divisible by ``heads``. upsilon is a share of
    the output (0 < upsilon <= 1) while kappa only sizes queries and keys (kappa > 0,
    above 1 allowed: dk may exceed Fout), as in Bello et al. ``expansion`` is read
    by the bottleneck only, ``dropout`` by wide; ``bias`` (on the residual's plain
    convs; the augmented conv always has biases) and ``dropout_kind`` are wide's
    and refused for the other residuals. Kernel options (``window``,
    ``global_tokens``, ``proj_dim``, ``scale``, ``share_kv``) go to the kernel.
    """

    defaults: dict[str, Any] = {
        "residual": "basic", "kappa": 0.2, "upsilon": 0.2, "heads": 8,
        "attention": "relative", "position": "none", "pool": False, "dk": None, "dv": None,
        "window": None, "global_tokens": None, "proj_dim": None, "scale": None,
        "share_kv": None, "expansion": 4, "dropout": 0.0, **WIDE_KEYS,
    }
    added_keys = WIDE_KEYS
    residuals = ("basic", "bottleneck", "wide")

    @classmethod
    def augmented_channels(cls, out_ch: int, cfg: dict[str, Any]) -> int:
        """Fout: output channels of the conv that gets augmented."""
        if cfg["residual"] not in cls.residuals:
            raise ConfigError("residual", f"unknown residual {cfg['residual']!r}; "
                                          f"allowed: {', '.join(cls.residuals)}")
        if cfg["residual"] == "bottleneck":
            return bottleneck_width(out_ch, cfg)
        return out_ch

    @classmethod
    def depths(cls, out_ch: int, cfg: dict[str, Any]) -> tuple[int, int]:
        """(dk, dv), from cfg or from kappa / upsilon, validated."""
        fout = cls.augmented_channels(out_ch, cfg)
        heads = cfg["heads"]
        _check_int("heads", heads)
        result = []
        for depth, ratio, high in (("dk", "kappa", None), ("dv", "upsilon", 1.0)):
            if cfg[depth] is not None:
                _check_int(depth, cfg[depth])
                result.append(cfg[depth])
                continue
            r = cfg[ratio]
            if (not isinstance(r, (int, float)) or isinstance(r, bool) or r <= 0
                    or (high is not None and r > high)):
                allowed = ("0 < upsilon <= 1 (dv = upsilon x Fout of the block's output "
                           "channels come from attention: at most all of them)" if high else
                           "kappa > 0 (dk = kappa x Fout is the query/key depth, which may "
                           "exceed Fout: only upsilon is a share of the output)")
                raise ConfigError(ratio, f"{r!r} not allowed; allowed: {allowed}")
            value = heads * max(1, round(r * fout / heads))
            if high is not None and value > fout:
                value = heads * (fout // heads)
            if value < 1:
                raise ConfigError(ratio, f"{r} x {fout} channels leaves no {depth} channel "
                                         f"for {heads} heads; raise {ratio} or set {depth}")
            result.append(value)
        return result[0], result[1]

    @classmethod
    def width_notes(cls, out_ch: int, cfg: dict[str, Any]) -> list[str]:
        """Where a ratio did not give its exact share (``nas build`` / ``nas show`` say
        so): e.g. ``dk 9 = kappa 0.25 x 32 = 8 rounded to a multiple of heads 3``."""
        fout = cls.augmented_channels(out_ch, cfg)
        dk, dv = cls.depths(out_ch, cfg)
        notes = []
        for depth, value, ratio in (("dk", dk, "kappa"), ("dv", dv, "upsilon")):
            if cfg[depth] is not None:
                continue
            exact = cfg[ratio] * fout
            if abs(value - exact) > 1e-9:
                notes.append(f"{depth} {value} = {ratio} {cfg[ratio]:g} x {fout} channels "
                             f"= {exact:g}, rounded to a multiple of heads {cfg['heads']}")
        return notes

    @classmethod
    def _kernel_cfg(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        return {key: cfg[key] for key in KERNEL_OPTIONS if cfg[key] is not None}

    @classmethod
    def check(cls, in_ch: int, out_ch: int, stride: int, cfg: dict[str, Any]) -> None:
        dk, dv = cls.depths(out_ch, cfg)
        fout = cls.augmented_channels(out_ch, cfg)
        heads = cfg["heads"]
        _check_int("heads", heads)
        for depth, value, ratio in (("dk", dk, "kappa"), ("dv", dv, "upsilon")):
            if value % heads:
                how = "" if cfg[depth] is not None else f" (= round({ratio} * {fout}))"
                raise ConfigError("heads", f"{heads} does not divide {depth}={value}{how}")
        if cfg["residual"] == "wide":
            check_wide_keys(cfg)
        else:
            for key, default in WIDE_KEYS.items():
                if cfg[key] != default:
                    raise ConfigError(key, f"is read by residual 'wide' only (residual is "
                                           f"{cfg['residual']!r}); leave it out")
        fin = fout if cfg["residual"] == "bottleneck" else in_ch
        check_augmented(fin, fout, 3, stride, dk, dv, heads, cfg["attention"], cfg["position"],
                        cfg["pool"], cfg["input_size"], cls._kernel_cfg(cfg))

    @classmethod
    def canonical_config(cls, in_ch: int, out_ch: int, stride: int,
                         cfg: dict[str, Any]) -> dict[str, Any]:
        """dk / dv written out (kappa / upsilon only derive them); ``expansion`` kept for
        the bottleneck and ``dropout`` for wide only; unset kernel options dropped."""
        out = dict(cfg)
        out["dk"], out["dv"] = cls.depths(out_ch, cfg)
        del out["kappa"], out["upsilon"]
        if cfg["residual"] != "bottleneck":
            del out["expansion"]
        if cfg["residual"] != "wide":
            del out["dropout"]
            for key in WIDE_KEYS:
                del out[key]
        else:
            out = canonical_dropout(out)
        for key in KERNEL_OPTIONS:
            if out[key] is None:
                del out[key]
        return drop_late_knobs(attention_class(cfg["attention"]), out)

    @classmethod
    def check_size(cls, in_ch: int, out_ch: int, stride: int, cfg: dict[str, Any],
                   size: tuple[int, int]) -> None:
        """A kernel built for cfg's input_size (relative, linformer) runs at that size only."""
        dk, dv = cls.depths(out_ch, cfg)
        built = cfg["input_size"] if cfg["input_size"] is not None else size
        with torch.device("meta"):
            kernel = create_attention(cfg["attention"], heads=cfg["heads"], dk=dk, dv=dv,
                                      input_size=attention_size(built, stride, cfg["pool"]),
                                      **cls._kernel_cfg(cfg))
        att = attention_size(size, stride, cfg["pool"])
        kernel.check_size(att, att)

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, **cfg: Any):
        super().__init__(in_ch, out_ch, stride, **cfg)
        c = self.cfg
        dk, dv = self.depths(out_ch, c)
        kind = c["residual"]
        fout = self.augmented_channels(out_ch, c)
        fin = fout if kind == "bottleneck" else in_ch
        aug = AAConv2d(fin, fout, 3, stride, dk=dk, dv=dv, heads=c["heads"],
                       attention=c["attention"], position=c["position"], pool=c["pool"],
                       input_size=self.input_size, **self._kernel_cfg(c))
        if kind == "basic":
            self.body = BasicResidual(in_ch, out_ch, stride, conv1=aug)
        elif kind == "bottleneck":
            self.body = BottleneckResidual(in_ch, out_ch, stride, width=fout, conv2=aug)
        else:
            self.body = WideResidual(in_ch, out_ch, stride, float(c["dropout"]), conv1=aug,
                                     bias=c["bias"], dropout_kind=c["dropout_kind"])

    @property
    def augmented(self) -> AAConv2d:
        """The attention-augmented conv inside the residual body."""
        return self.body.conv2 if self.cfg["residual"] == "bottleneck" else self.body.conv1
