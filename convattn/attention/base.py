"""One interface for every attention kernel over feature maps.

A kernel is the pure token-mixing step: the block owns the q/k/v projections
and the output projection, the kernel owns only what belongs to the mixing
(relative tables, Linformer's sequence projections, global tokens).

    q: (B, Nh, dkh, Hq, Wq)   k: (B, Nh, dkh, Hk, Wk)   v: (B, Nh, dvh, Hk, Wk)
    -> out: (B, Nh, dvh, Hq, Wq)

Blocks split channels into heads with ``split_heads`` and merge them back with
``merge_heads``; both are pure views along the channel axis, so a pixel never
moves. Kernels that flatten the map to a sequence must permute (B, Nh, HW, dvh)
back to (B, Nh, dvh, HW) before reshaping to a map (reshaping without the
permute scrambles pixels: a bug in two well-known AA ports).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..base import as_size
from ..cost import Cost
from ..errors import ConfigError, MapSizeError


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, heads*d, H, W) -> (B, heads, d, H, W)."""
    b, c, h, w = x.shape
    return x.view(b, heads, c // heads, h, w)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, d, H, W) -> (B, heads*d, H, W)."""
    b, n, d, h, w = x.shape
    return x.reshape(b, n * d, h, w)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, Nh, d, H, W) -> (B, Nh, HW, d), row-major pixel order."""
    b, n, d, h, w = x.shape
    return x.reshape(b, n, d, h * w).transpose(-1, -2)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` on (B, Nh, N, d) tokens, with row-major strides.

    ``to_tokens`` returns a transposed view (last-dim stride N); PyTorch only picks a fused
    (flash / memory-efficient) kernel for inputs with a unit last-dim stride and otherwise
    falls back to the math path that materialises the whole N x N logits tensor.
    """
    return F.scaled_dot_product_attention(dense(q), dense(k), dense(v))


def dense(x: torch.Tensor) -> torch.Tensor:
    """``x`` with the strides of a fresh row-major tensor of its shape (copied if needed).

    ``contiguous()`` is not enough: a view with a size-1 dimension counts as contiguous
    whatever that dimension's stride is, and one key token (a 2x2 map pooled by
    ``kv_stride`` 2) leaves stride 1 there, which CUDA's memory-efficient kernel rejects
    ("key is not correctly aligned (strideM)"; seen on an H100 for ATC candidates).
    """
    canonical, step = [], 1
    for size in reversed(x.shape):
        canonical.append(step)
        step *= max(size, 1)
    if x.stride() == tuple(reversed(canonical)):
        return x
    return x.clone(memory_format=torch.contiguous_format)


def from_tokens(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, Nh, HW, d) -> (B, Nh, d, H, W): permute BEFORE reshaping."""
    b, n, _, d = x.shape
    return x.transpose(-1, -2).reshape(b, n, d, h, w)


class AttentionKernel(nn.Module):
    """Base of all registered attention kernels.

    Built as ``Kernel(heads=, dk=, dv=, input_size=None, **cfg)`` where dk, dv are
    the TOTAL key and value depths (dkh = dk / heads). ``input_size`` is the
    (H, W) of the query map the kernel runs on (after any pooling); kernels with
    size-dependent parameters require it.
    """

    registry_name: ClassVar[str] = ""
    #: extra cfg keys the kernel accepts -> defaults.
    defaults: ClassVar[dict[str, Any]] = {}
    #: False for kernels that need keys on the same grid as the queries.
    supports_kv_stride: ClassVar[bool] = True

    def __init__(self, heads: int, dk: int, dv: int,
                 input_size: tuple[int, int] | None = None, **cfg: Any):
        super().__init__()
        unknown = sorted(set(cfg) - set(self.defaults))
        if unknown:
            allowed = ", ".join(sorted(self.defaults)) or "none"
            raise ConfigError(unknown[0], f"unknown key for attention {self.registry_name!r}; "
                                          f"allowed: {allowed}")
        for name, value in (("heads", heads), ("dk", dk), ("dv", dv)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(name, f"{value!r} is not a positive int")
        if dk % heads or dv % heads:
            raise ConfigError("heads", f"{heads} must divide dk={dk} and dv={dv}")
        self.heads, self.dk, self.dv = heads, dk, dv
        self.dkh, self.dvh = dk // heads, dv // heads
        self.input_size = as_size(input_size) if input_size is not None else None
        self.cfg = {**self.defaults, **cfg}

    def check_size(self, q_hw: tuple[int, int], kv_hw: tuple[int, int]) -> None:
        """Raise MapSizeError if the kernel cannot run on these map sizes."""
        if not self.supports_kv_stride and tuple(q_hw) != tuple(kv_hw):
            raise MapSizeError(f"attention {self.registry_name!r} needs keys on the query grid, "
                               f"got queries {tuple(q_hw)} and keys {tuple(kv_hw)}")

    def cost(self, q_hw: tuple[int, int], kv_hw: tuple[int, int] | None = None) -> Cost:
        """Multiply-adds of logits + mixing and bytes of the attention tensors (1 image)."""
        raise NotImplementedError

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


#: kernel knobs that blocks pass through since spec format version 2 (Linformer's
#: global tokens and ``share_kv``, linear's ``scale``): a block's canonical cfg leaves
#: them out when unset or at the kernel's default, so specs written before keep
#: their hash and an explicit default hashes like an absent key.
LATE_KERNEL_KNOBS: dict[str, tuple[str, ...]] = {"linformer": ("global_tokens", "share_kv"),
                                                 "linear": ("scale",)}


def drop_late_knobs(kernel: type[AttentionKernel], cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` without the late knobs of ``kernel`` that are unset or at its default."""
    late = LATE_KERNEL_KNOBS.get(kernel.registry_name, ())
    return {k: v for k, v in cfg.items()
            if not (k in late and v in (None, kernel.defaults[k]))}
