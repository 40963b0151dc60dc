"""Name -> class registries for blocks and attention kernels.

``create_block(name, in_ch, out_ch, stride=1, **cfg)`` is the one constructor for
every block; an unknown name lists the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import ConfigError

_BLOCKS: dict[str, type] = {}
_ATTENTION: dict[str, type] = {}


def _register(table: dict[str, type], kind: str, name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        if name in table and table[name] is not cls:
            raise RuntimeError(f"{kind} {name!r} registered twice")
        table[name] = cls
        cls.registry_name = name
        return cls

    return deco


def register_block(name: str) -> Callable[[type], type]:
    return _register(_BLOCKS, "block", name)


def register_attention(name: str) -> Callable[[type], type]:
    return _register(_ATTENTION, "attention kernel", name)


def _lookup(table: dict[str, type], kind: str, name: str) -> type:
    _load_builtins()
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table))
        raise ConfigError("", f"unknown {kind} {name!r}; known: {known}") from None


def block_class(name: str) -> type:
    return _lookup(_BLOCKS, "block", name)


def attention_class(name: str) -> type:
    return _lookup(_ATTENTION, "attention kernel", name)


def create_block(name: str, in_ch: int, out_ch: int, stride: int = 1, **cfg: Any):
    """Build block ``name`` mapping (B, in_ch, H, W) -> (B, out_ch, ceil(H/s), ceil(W/s))."""
    return block_class(name)(in_ch, out_ch, stride, **cfg)


def create_attention(name: str, **cfg: Any):
    return attention_class(name)(**cfg)


def list_blocks() -> list[str]:
    _load_builtins()
    return sorted(_BLOCKS)


def list_attention() -> list[str]:
    _load_builtins()
    return sorted(_ATTENTION)


_loaded = False


def _load_builtins() -> None:
    """Import the built-in families so that their decorators register them."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import attention, blocks  # noqa: F401
