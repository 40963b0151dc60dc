"""convattn: convolution + self-attention blocks with one constructor signature.

    >>> import convattn
    >>> block = convattn.create_block("aa", 64, 128, stride=2, input_size=(32, 32))
    >>> convattn.list_blocks(), convattn.list_attention()

Knows nothing about search.
"""

from .base import Block
from .cost import Cost
from .errors import ConfigError, MapSizeError
from .registry import (
    attention_class,
    block_class,
    create_attention,
    create_block,
    list_attention,
    list_blocks,
    register_attention,
    register_block,
)

__all__ = [
    "Block", "ConfigError", "Cost", "MapSizeError", "attention_class", "block_class",
    "create_attention", "create_block", "list_attention", "list_blocks", "register_attention",
    "register_block",
]
