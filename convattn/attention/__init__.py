"""Attention kernels over feature maps; importing a module registers its kernel."""

from .base import AttentionKernel, from_tokens, merge_heads, split_heads, to_tokens

__all__ = ["AttentionKernel", "from_tokens", "merge_heads", "split_heads", "to_tokens"]

# Kernel modules (each registers itself) are imported below, one line each.
