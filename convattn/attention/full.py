"""Full (global) multi-head dot-product attention over feature maps.

Every query pixel attends to every key pixel, ``softmax(q k^T / sqrt(dkh)) v``, with
PyTorch's fused ``scaled_dot_product_attention``. Keys and values may sit on a
different (e.g. stride-2) grid than the queries, as in CvT's convolutional
projection, so the only size rule is that k and v share one grid.

Also home of ``map_sizes``, the input check every kernel runs first, so a wrong
head count or depth fails with a message instead of a reshape crash.
"""

from __future__ import annotations

import torch

from ..cost import Cost
from ..errors import MapSizeError
from ..registry import register_attention
from .base import AttentionKernel, from_tokens, sdpa, to_tokens


def map_sizes(kernel: AttentionKernel, q: torch.Tensor, k: torch.Tensor,
              v: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
    """Check q, k, v against the kernel's heads and depths; return (q_hw, kv_hw).

    Also runs ``kernel.check_size`` so every size rule is enforced at call time.
    """
    name = kernel.registry_name
    for label, t, depth in (("q", q, kernel.dkh), ("k", k, kernel.dkh), ("v", v, kernel.dvh)):
        if t.dim() != 5 or t.shape[1] != kernel.heads or t.shape[2] != depth:
            raise ValueError(f"attention {name!r} expects {label} of shape "
                             f"(B, {kernel.heads}, {depth}, H, W), got {tuple(t.shape)}")
    if k.shape[-2:] != v.shape[-2:] or k.shape[0] != v.shape[0] or q.shape[0] != k.shape[0]:
        raise MapSizeError(f"attention {name!r}: k {tuple(k.shape)} and v {tuple(v.shape)} must "
                           f"share batch and grid (and batch with q {tuple(q.shape)})")
    q_hw = (int(q.shape[-2]), int(q.shape[-1]))
    kv_hw = (int(k.shape[-2]), int(k.shape[-1]))
    kernel.check_size(q_hw, kv_hw)
    return q_hw, kv_hw


@register_attention("full")
class FullAttention(AttentionKernel):
    """Softmax attention of every query pixel over every key pixel (no parameters).

    Shapes: q (B, Nh, dkh, Hq, Wq), k (B, Nh, dkh, Hk, Wk), v (B, Nh, dvh, Hk, Wk)
    -> (B, Nh, dvh, Hq, Wq).
    """

    def cost(self, q_hw: tuple[int, int], kv_hw: tuple[int, int] | None = None) -> Cost:
        """Logits Nq*Nk*dk plus mixing Nq*Nk*dv MACs; one Nh*Nq*Nk float32 weight tensor."""
        nq = q_hw[0] * q_hw[1]
        nk = nq if kv_hw is None else kv_hw[0] * kv_hw[1]
        return Cost(macs=nq * nk * (self.dk + self.dv),
                    attention_bytes=self.heads * nq * nk * 4)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        (hq, wq), _ = map_sizes(self, q, k, v)
        # SDPA's default scale is 1/sqrt(last dim of q) = dkh^-0.5.
        out = sdpa(to_tokens(q), to_tokens(k), to_tokens(v))
        return from_tokens(out, hq, wq)
