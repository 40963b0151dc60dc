"""Full attention with Bello et al.'s 2D relative position logits (AA-Net).

    logit(i, j) = q_i . k_j + q_i . rW[xj - xi + W - 1] + q_i . rH[yj - yi + H - 1]

with q already scaled by dkh^-0.5 (offset = key minus query). rW (2W-1, dkh) and
rH (2H-1, dkh) are shared across heads and tied to the map size the kernel was
built for. The relative terms are computed the memory-efficient way: q . r for
all 2W-1 (resp. 2H-1) offsets, (B, Nh, H, W, 2W-1), then the "relative to
absolute" skew turns them into (B, Nh, H, W, W) without ever building a
(HW)^2 x dkh tensor.

The (HW)^2 part (logits, softmax, mixing) is one autograd Function that works in
place: the forward holds ONE (B, Nh, HW, HW) tensor (the logits, turned into the
weights where they lie) and the backward two (the saved weights and the logits'
gradient, also computed in place; the softmax row term sum_j w_ij dL/dw_ij is
dL/dout_i . out_i, an O(HW dv) product). Plain autograd holds three at its peak
(weights saved for backward, dL/dweights and dL/dlogits), as does timm's
BottleneckAttn: this is a third less memory and fewer passes over the largest
tensor (benchmarks/attention_scaling.py measures both). Under autocast with
half-precision logits the softmax and the (HW)^2 part of the backward run in
float32, as autocast's softmax policy does.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from ..base import as_size
from ..cost import Cost
from ..errors import MapSizeError
from ..registry import register_attention
from .base import AttentionKernel, from_tokens, to_tokens
from .full import map_sizes

_HALF = (torch.float16, torch.bfloat16)


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


class RelativeSoftmaxAttend(torch.autograd.Function):
    """softmax(q k^T + rel_h + rel_w) v over tokens, with one (HW)^2 tensor alive in the
    forward and two in the backward.

    q, k (B, Nh, N, dkh) with q scaled; v (B, Nh, N, dvh); rw (B, Nh, H, W, W) added
    over key rows, rh (B, Nh, H, W, H) added over key columns (N = H W, row-major)
    -> (B, Nh, N, dvh). First-order gradients only (``once_differentiable``).
    """

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                rw: torch.Tensor, rh: torch.Tensor) -> torch.Tensor:
        b, n, h, w, _ = rw.shape
        logits = q @ k.transpose(-1, -2)                      # (B, Nh, N, N), the one copy
        grid = logits.view(b, n, h, w, h, w)
        grid.add_(rh.unsqueeze(-1))                           # over key columns
        grid.add_(rw.unsqueeze(-2))                           # over key rows
        del grid
        if logits.dtype in _HALF:
            logits = logits.float()                           # autocast's fp32 softmax
        # softmax in place: the logits become the weights
        logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_()
        logits.div_(logits.sum(dim=-1, keepdim=True))
        out = logits.to(v.dtype) @ v                          # (B, Nh, N, dvh)
        ctx.save_for_backward(q, k, v, logits, out)
        ctx.grid, ctx.rel_dtypes = (h, w, h, w), (rw.dtype, rh.dtype)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor):
        q, k, v, weights, out = ctx.saved_tensors
        f = weights.dtype                                     # float32 for half inputs
        b, n = q.shape[:2]
        g = grad.to(f)
        grad_v = (weights.transpose(-1, -2) @ g).to(v.dtype)
        # dL/dlogits = w * (dL/dw - sum_j w_ij dL/dw_ij), in place in dL/dw.
        grad_logits = g @ v.to(f).transpose(-1, -2)           # (B, Nh, N, N), the 2nd copy
        grad_logits.sub_((g * out.to(f)).sum(dim=-1, keepdim=True)).mul_(weights)
        grad_q = (grad_logits @ k.to(f)).to(q.dtype)
        grad_k = (grad_logits.transpose(-1, -2) @ q.to(f)).to(k.dtype)
        grid = grad_logits.view(b, n, *ctx.grid)             # (B, Nh, H, W, H, W)
        return (grad_q, grad_k, grad_v, grid.sum(dim=-2).to(ctx.rel_dtypes[0]),
                grid.sum(dim=-1).to(ctx.rel_dtypes[1]))


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
        q = q * self.dkh ** -0.5  # scales the content AND the relative logits
        rw, rh = self.relative_logits(q)
        out = RelativeSoftmaxAttend.apply(to_tokens(q), to_tokens(k), to_tokens(v), rw, rh)
        return from_tokens(out, h, w)                                     # (B, Nh, dvh, H, W)
