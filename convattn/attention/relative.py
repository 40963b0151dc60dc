"""Full attention with Bello et al.'s 2D relative position logits (AA-Net).

    logit(i, j) = q_i . k_j + q_i . rW[xj - xi + W - 1] + q_i . rH[yj - yi + H - 1]

with q already scaled by dkh^-0.5 (offset = key minus query). rW (2W-1, dkh) and
rH (2H-1, dkh) are shared across heads and tied to the map size the kernel was
built for. The relative terms are computed the memory-efficient way: q . r for
all 2W-1 (resp. 2H-1) offsets, (B, Nh, H, W, 2W-1), then the "relative to
absolute" skew turns them into (B, Nh, H, W, W) without ever building a
(HW)^2 x dkh tensor.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..base import as_size
from ..cost import Cost
from ..errors import MapSizeError
from ..registry import register_attention
from .base import AttentionKernel, from_tokens, to_tokens
from .full import map_sizes


def rel_to_abs(x: torch.Tensor) -> torch.Tensor:
    """Skew relative logits (..., L, 2L-1) to absolute ones (..., L, L).

    out[..., i, j] = x[..., i, j - i + L - 1]. Pad one column, flatten, pad L-1,
    re-view as (L+1, 2L-1) rows: each row is then shifted by one more place, which
    lines offset (j - i) up under key j. Only O(L^2) extra memory.
    """
    *lead, length, _ = x.shape
    x = F.pad(x, (0, 1))                                   # (..., L, 2L)
    x = x.reshape(*lead, length * 2 * length)
    x = F.pad(x, (0, length - 1))                          # (..., 2L^2 + L - 1)
    x = x.reshape(*lead, length + 1, 2 * length - 1)
    return x[..., :length, length - 1:]


@register_attention("relative")
class RelativeAttention(AttentionKernel):
    """Full attention plus 2D relative logits; runs only at its built ``input_size``.

    Shapes: q, k (B, Nh, dkh, H, W), v (B, Nh, dvh, H, W) -> (B, Nh, dvh, H, W).
    """

    supports_kv_stride = False

    def __init__(self, heads: int, dk: int, dv: int,
                 input_size: tuple[int, int] | None = None, **cfg: Any):
        super().__init__(heads, dk, dv, input_size, **cfg)
        if input_size is None:
            raise MapSizeError("attention 'relative' needs input_size=(H, W) at construction: "
                               "its relative tables rW (2W-1, dkh) and rH (2H-1, dkh) depend on it")
        self.input_size = as_size(input_size)
        h, w = self.input_size
        std = self.dkh ** -0.5  # Bello's appendix passes this as the mean by mistake.
        self.rel_w = nn.Parameter(torch.randn(2 * w - 1, self.dkh) * std)
        self.rel_h = nn.Parameter(torch.randn(2 * h - 1, self.dkh) * std)

    def check_size(self, q_hw: tuple[int, int], kv_hw: tuple[int, int]) -> None:
        super().check_size(q_hw, kv_hw)
        if tuple(q_hw) != self.input_size:
            h, w = self.input_size
            raise MapSizeError(f"attention 'relative' was built for a {h}x{w} map (its relative "
                               f"tables depend on it) and cannot run on {q_hw[0]}x{q_hw[1]}")

    def relative_logits(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Relative logits of an (already scaled) q (B, Nh, dkh, H, W).

        Returns (rel_w, rel_h): rel_w[b, n, yi, xi, xj] = q_i . rW[xj - xi + W - 1],
        rel_h[b, n, yi, xi, yj] = q_i . rH[yj - yi + H - 1].
        """
        b, n, _, h, w = q.shape
        qp = q.permute(0, 1, 3, 4, 2)                                      # (B, Nh, H, W, d)
        rw = torch.einsum("bnhwd,md->bnhwm", qp, self.rel_w.to(q.dtype))  # (B, Nh, H, W, 2W-1)
        rw = rel_to_abs(rw)                                                # (B, Nh, H, W, W)
        # Height: same skew with the roles of rows and columns swapped.
        rh = torch.einsum("bnhwd,md->bnwhm", qp, self.rel_h.to(q.dtype))  # (B, Nh, W, H, 2H-1)
        rh = rel_to_abs(rh).transpose(2, 3)                                # (B, Nh, H, W, H)
        return rw, rh

    def cost(self, q_hw: tuple[int, int], kv_hw: tuple[int, int] | None = None) -> Cost:
        """Content logits + mixing (HW)^2 (dk + dv), relative terms HW (2H + 2W - 2) dk.

        Bytes: the Nh (HW)^2 logits plus the Nh HW (2W-1 + 2H-1) relative logits
        that exist alongside them before the skew.
        """
        h, w = q_hw
        n = h * w
        rel = n * (2 * h + 2 * w - 2)
        return Cost(macs=n * n * (self.dk + self.dv) + rel * self.dk,
                    attention_bytes=self.heads * (n * n + rel) * 4)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        (h, w), _ = map_sizes(self, q, k, v)
        b, n = q.shape[:2]
        q = q * self.dkh ** -0.5  # scales the content AND the relative logits
        logits = to_tokens(q) @ to_tokens(k).transpose(-1, -2)           # (B, Nh, HW, HW)
        rw, rh = self.relative_logits(q)
        logits = (logits.view(b, n, h, w, h, w)
                  + rh.unsqueeze(-1)                                      # over key columns
                  + rw.unsqueeze(-2))                                     # over key rows
        weights = logits.view(b, n, h * w, h * w).softmax(dim=-1)
        return from_tokens(weights @ to_tokens(v), h, w)
