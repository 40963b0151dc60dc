"""Attention kernels over feature maps; importing a module registers its kernel."""

from .base import AttentionKernel, from_tokens, merge_heads, sdpa, split_heads, to_tokens

__all__ = ["AttentionKernel", "from_tokens", "merge_heads", "sdpa", "split_heads", "to_tokens"]

# Kernel modules (each registers itself) are imported below, one line each.
from . import full  # noqa: E402,F401,I001
from . import relative  # noqa: E402,F401,I001
from . import linear  # noqa: E402,F401,I001
from . import linformer  # noqa: E402,F401,I001
from . import local  # noqa: E402,F401,I001
