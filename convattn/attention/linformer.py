"""Linformer attention over feature maps (Wang et al.; EAANet's "Linformer" variant).

Keys and values are projected along the sequence axis, K' = E^T K and V' = F^T V
with E, F of shape (N, k), N = H W, shared across heads (E = F when ``share_kv``),
then ``softmax(q K'^T / sqrt(dkh)) V'``: cost and memory O(N k) instead of N^2.
Because E and F have one row per pixel the kernel only runs at the map size it
was built for; any other size is refused with MapSizeError.

Global tokens (``global_tokens`` G, default 0): as in the ``local`` kernel, G
learnable per-head key and value vectors (Nh, G, dkh) and (Nh, G, dvh) are
appended to the k projected keys and values, so every query attends, in one
softmax, to k + G entries. Vision Longformer's Linformer always runs with its
global (cls) token in the sequence; its key/value enter unprojected here (a
projection of a learned constant is only a reparametrisation of it), and the
global token's own query output is not computed (a map-to-map block discards it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..base import as_size
from ..cost import Cost
from ..errors import ConfigError, MapSizeError
from ..registry import register_attention
from .base import AttentionKernel, from_tokens, sdpa, to_tokens
from .full import map_sizes


@register_attention("linformer")
class LinformerAttention(AttentionKernel):
    """Softmax attention over k projected keys/values; fixed map size.

    cfg: ``proj_dim`` (k, default 256, capped to N = H W because projecting N
    tokens to more than N rows adds parameters but no information), ``share_kv``
    (default True: one projection for keys and values, as in Linformer's
    key-value sharing), ``global_tokens`` (G, default 0; see the module docstring).

    Shapes: q, k (B, Nh, dkh, H, W), v (B, Nh, dvh, H, W) -> (B, Nh, dvh, H, W).
    """

    defaults = {"proj_dim": 256, "share_kv": True, "global_tokens": 0}
    supports_kv_stride = False

    def __init__(self, heads: int, dk: int, dv: int,
                 input_size: tuple[int, int] | None = None, **cfg: Any):
        super().__init__(heads, dk, dv, input_size, **cfg)
        proj_dim, share = self.cfg["proj_dim"], self.cfg["share_kv"]
        if not isinstance(proj_dim, int) or isinstance(proj_dim, bool) or proj_dim < 1:
            raise ConfigError("proj_dim", f"{proj_dim!r} is not a positive int")
        if not isinstance(share, bool):
            raise ConfigError("share_kv", f"{share!r} is not a bool (true or false)")
        n_glo = self.cfg["global_tokens"]
        if not isinstance(n_glo, int) or isinstance(n_glo, bool) or n_glo < 0:
            raise ConfigError("global_tokens", f"{n_glo!r} is not an int >= 0")
        self.global_tokens = n_glo
        if input_size is None:
            raise MapSizeError("attention 'linformer' needs input_size=(H, W) at construction: "
                               "its sequence projections have one row per pixel")
        self.input_size = as_size(input_size)
        n = self.input_size[0] * self.input_size[1]
        self.proj_dim = min(proj_dim, n)
        self.proj_k = nn.Parameter(nn.init.xavier_normal_(torch.empty(n, self.proj_dim)))
        # Shared: the same Parameter under both names (counted once by .parameters()).
        self.proj_v = self.proj_k if share else nn.Parameter(
            nn.init.xavier_normal_(torch.empty(n, self.proj_dim)))
        if n_glo:  # small init, as the local kernel's (and ViT's) tokens
            self.global_k = nn.Parameter(torch.randn(heads, n_glo, self.dkh) * 0.02)
            self.global_v = nn.Parameter(torch.randn(heads, n_glo, self.dvh) * 0.02)

    def check_size(self, q_hw: tuple[int, int], kv_hw: tuple[int, int]) -> None:
        super().check_size(q_hw, kv_hw)
        if tuple(q_hw) != self.input_size:
            h, w = self.input_size
            raise MapSizeError(f"attention 'linformer' only runs at the map size it was built "
                               f"for ({h}x{w}: its projections have {h * w} rows), "
                               f"got {q_hw[0]}x{q_hw[1]}")

    def cost(self, q_hw: tuple[int, int], kv_hw: tuple[int, int] | None = None) -> Cost:
        """Projections N k (dk + dv) plus logits and mixing N (k + G) (dk + dv) MACs;
        bytes of the Nh N (k + G) attention weights."""
        n = q_hw[0] * q_hw[1]
        k = min(self.cfg["proj_dim"], n)
        keys = k + self.global_tokens
        return Cost(macs=n * (k + keys) * (self.dk + self.dv),
                    attention_bytes=self.heads * n * keys * 4)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        (h, w), _ = map_sizes(self, q, k, v)
        kp = torch.einsum("nm,bhnd->bhmd", self.proj_k.to(k.dtype), to_tokens(k))  # (B,Nh,k,dkh)
        vp = torch.einsum("nm,bhnd->bhmd", self.proj_v.to(v.dtype), to_tokens(v))  # (B,Nh,k,dvh)
        if self.global_tokens:  # (B, Nh, G + k, d): the global tokens first, as in ViL
            b = q.shape[0]
            kp = torch.cat([self.global_k.to(k.dtype).expand(b, -1, -1, -1), kp], dim=2)
            vp = torch.cat([self.global_v.to(v.dtype).expand(b, -1, -1, -1), vp], dim=2)
        out = sdpa(to_tokens(q), kp, vp)  # scale dkh^-0.5
        return from_tokens(out, h, w)
