"""Efficient attention with linear complexity (Shen et al.), per head.

    rho_q(Q): softmax of each query over its dkh channels
    rho_k(K): softmax of each key channel over the key positions
    context = rho_k(K)^T V            (dkh, dvh): one global summary per head
    out     = rho_q(Q) context        (Nq, dvh)

Cost O(HW dk dv) and memory O(dk dv + HW (dk + dv)) instead of (HW)^2. Keys may
sit on any grid (e.g. stride 2): nothing ties a key position to a query.

Scaling (cfg ``scale``, default True): q and k are each multiplied by dkh^-1/4
before their softmaxes. The reference module has no scaling, so the softmax
temperature grows with sqrt(dkh) as in unscaled dot-product attention and the
softmaxes saturate at large head depths; scaling both by dkh^-1/4 imitates the
dkh^-1/2 of scaled dot-product attention (q.k dkh^-1/2 = (q dkh^-1/4).(k dkh^-1/4)),
split evenly because q and k are normalised by separate softmaxes (the
reference's author agrees). ``scale=False`` gives the reference behaviour.
"""

from __future__ import annotations

import torch

from ..cost import Cost
from ..errors import ConfigError
from ..registry import register_attention
from .base import AttentionKernel, from_tokens, to_tokens
from .full import map_sizes


def normalize_queries(q: torch.Tensor) -> torch.Tensor:
    """rho_q on tokens (B, Nh, N, dkh): each query's weights sum to 1 over its channels."""
    return q.softmax(dim=-1)


def normalize_keys(k: torch.Tensor) -> torch.Tensor:
    """rho_k on tokens (B, Nh, N, dkh): each key channel sums to 1 over the positions."""
    return k.softmax(dim=-2)


@register_attention("linear")
class LinearAttention(AttentionKernel):
    """Shen et al.'s efficient attention (no parameters).

    Shapes: q (B, Nh, dkh, Hq, Wq), k (B, Nh, dkh, Hk, Wk), v (B, Nh, dvh, Hk, Wk)
    -> (B, Nh, dvh, Hq, Wq).
    """

    defaults = {"scale": True}

    def __init__(self, heads: int, dk: int, dv: int,
                 input_size: tuple[int, int] | None = None, **cfg):
        super().__init__(heads, dk, dv, input_size, **cfg)
        if not isinstance(self.cfg["scale"], bool):
            raise ConfigError("scale", f"{self.cfg['scale']!r} is not a bool (true or false)")

    def cost(self, q_hw: tuple[int, int], kv_hw: tuple[int, int] | None = None) -> Cost:
        """Context Nk dkh dvh plus output Nq dkh dvh MACs per head.

        Bytes: the normalised queries and keys (the attention weights) and the
        per-head (dkh, dvh) context.
        """
        nq = q_hw[0] * q_hw[1]
        nk = nq if kv_hw is None else kv_hw[0] * kv_hw[1]
        per_head = self.dkh * self.dvh
        return Cost(macs=self.heads * (nk + nq) * per_head,
                    attention_bytes=((nq + nk) * self.dk + self.heads * per_head) * 4)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        (hq, wq), _ = map_sizes(self, q, k, v)
        q, k = to_tokens(q), to_tokens(k)                       # (B, Nh, N, dkh)
        if self.cfg["scale"]:
            s = self.dkh ** -0.25
            q, k = q * s, k * s
        context = normalize_keys(k).transpose(-1, -2) @ to_tokens(v)  # (B, Nh, dkh, dvh)
        out = normalize_queries(q) @ context                          # (B, Nh, Nq, dvh)
        return from_tokens(out, hq, wq)
