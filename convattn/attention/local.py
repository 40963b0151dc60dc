"""Longformer-style 2D local-window attention with global tokens (Vision Longformer).

The map is zero-padded to multiples of the window w and cut into w x w chunks;
each query attends, in ONE softmax, to the keys of its own chunk and of the 8
neighbouring chunks (an effective 3w x 3w window) plus ``global_tokens``
learnable global key/value tokens; padded keys are masked to -inf. Cost and
memory are linear in H W: the (HW)^2 logits are never built, only
(chunks, w^2, 9 w^2 + globals).

Per axis, a map no larger than w is a single chunk with no neighbours, so that
axis is neither padded to w nor surrounded by empty neighbour chunks: the same
attention pattern (every key of the map is in the window) at a fraction of the
work on the small maps of CIFAR-sized networks.

Global tokens: the kernel owns them as learnable per-head key and value
vectors (Nh, G, dkh) and (Nh, G, dvh), so every query can reach a global
summary. In Vision Longformer the global tokens are also queries that attend to
everything, but their outputs only update the global tokens themselves, which
a block mapping a feature map to a feature map discards; we therefore do not
compute global-token queries at all (their output would be dead work).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..cost import Cost
from ..errors import ConfigError
from ..registry import register_attention
from .base import AttentionKernel
from .full import map_sizes


def _axis_plan(size: int, window: int) -> tuple[int, int, int, int]:
    """(chunk, n_chunks, key_span, key_pad) along one axis of length ``size``."""
    if size <= window:
        return size, 1, size, 0
    return window, math.ceil(size / window), 3 * window, window


def _windows(x: torch.Tensor, h: int, w: int, plan_h: tuple, plan_w: tuple) -> torch.Tensor:
    """(..., d, H, W) -> (..., nH, nW, spanH * spanW, d): each chunk's key neighbourhood."""
    ch, nh, span_h, pad_h = plan_h
    cw, nw, span_w, pad_w = plan_w
    # Pad to whole chunks (bottom/right) plus one empty neighbour chunk all round.
    x = F.pad(x, (pad_w, pad_w + nw * cw - w, pad_h, pad_h + nh * ch - h))
    x = x.unfold(-2, span_h, ch).unfold(-2, span_w, cw)   # (..., d, nH, nW, spanH, spanW)
    x = x.flatten(-2).movedim(-4, -1)                      # (..., nH, nW, span, d)
    return x


@register_attention("local")
class LocalWindowAttention(AttentionKernel):
    """Vision-Longformer 2D window attention; runs on any map size, keys on the query grid.

    cfg: ``window`` (w, default 7), ``global_tokens`` (default 1, may be 0).
    Shapes: q, k (B, Nh, dkh, H, W), v (B, Nh, dvh, H, W) -> (B, Nh, dvh, H, W).
    """

    defaults = {"window": 7, "global_tokens": 1}
    supports_kv_stride = False

    def __init__(self, heads: int, dk: int, dv: int,
                 input_size: tuple[int, int] | None = None, **cfg: Any):
        super().__init__(heads, dk, dv, input_size, **cfg)
        window, n_glo = self.cfg["window"], self.cfg["global_tokens"]
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ConfigError("window", f"{window!r} is not a positive int")
        if not isinstance(n_glo, int) or isinstance(n_glo, bool) or n_glo < 0:
            raise ConfigError("global_tokens", f"{n_glo!r} is not an int >= 0")
        self.window, self.global_tokens = window, n_glo
        if n_glo:
            # Small init (as ViT's tokens): globals start near a uniform share.
            self.global_k = nn.Parameter(torch.randn(heads, n_glo, self.dkh) * 0.02)
            self.global_v = nn.Parameter(torch.randn(heads, n_glo, self.dvh) * 0.02)

    def cost(self, q_hw: tuple[int, int], kv_hw: tuple[int, int] | None = None) -> Cost:
        """What the kernel computes, padded positions included:
        Hp Wp (spanH spanW + G) (dk + dv) MACs and Nh Hp Wp (spanH spanW + G) weights."""
        ch, nh, span_h, _ = _axis_plan(q_hw[0], self.window)
        cw, nw, span_w, _ = _axis_plan(q_hw[1], self.window)
        queries = nh * ch * nw * cw
        keys = span_h * span_w + self.global_tokens
        return Cost(macs=queries * keys * (self.dk + self.dv),
                    attention_bytes=self.heads * queries * keys * 4)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        (h, w), _ = map_sizes(self, q, k, v)
        b, nh_, dvh = q.shape[0], self.heads, self.dvh
        plan_h, plan_w = _axis_plan(h, self.window), _axis_plan(w, self.window)
        ch, nh, _, _ = plan_h
        cw, nw, _, _ = plan_w

        # Queries by chunk: (B, Nh, d, Hp, Wp) -> (B, Nh, nH, nW, ch*cw, d).
        qp = F.pad(q * self.dkh ** -0.5, (0, nw * cw - w, 0, nh * ch - h))
        qc = qp.reshape(b, nh_, self.dkh, nh, ch, nw, cw).permute(0, 1, 3, 5, 4, 6, 2)
        qc = qc.reshape(b, nh_, nh, nw, ch * cw, self.dkh)
        kw = _windows(k, h, w, plan_h, plan_w)                     # (B, Nh, nH, nW, S, dkh)
        vw = _windows(v, h, w, plan_h, plan_w)                     # (B, Nh, nH, nW, S, dvh)
        valid = _windows(torch.ones(1, h, w, device=q.device, dtype=q.dtype),
                         h, w, plan_h, plan_w)[..., 0] > 0          # (nH, nW, S) real keys

        logits = qc @ kw.transpose(-1, -2)                          # (B, Nh, nH, nW, Q, S)
        logits = logits.masked_fill(~valid[:, :, None, :], float("-inf"))
        if self.global_tokens:
            g_logits = torch.einsum("bnxyqd,ngd->bnxyqg", qc, self.global_k.to(q.dtype))
            logits = torch.cat([g_logits, logits], dim=-1)
        weights = logits.softmax(dim=-1)
        out = weights[..., self.global_tokens:] @ vw                 # (B, Nh, nH, nW, Q, dvh)
        if self.global_tokens:
            out = out + torch.einsum("bnxyqg,ngd->bnxyqd", weights[..., :self.global_tokens],
                                     self.global_v.to(v.dtype))

        # Back to a map: permute chunks and in-chunk positions, THEN reshape; crop padding.
        out = out.reshape(b, nh_, nh, nw, ch, cw, dvh).permute(0, 1, 6, 2, 4, 3, 5)
        return out.reshape(b, nh_, dvh, nh * ch, nw * cw)[..., :h, :w]
