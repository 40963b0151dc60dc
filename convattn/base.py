"""The contract every block honours.

A block maps (B, in_ch, H, W) -> (B, out_ch, ceil(H/stride), ceil(W/stride)) and
is built as ``Block(in_ch, out_ch, stride=1, **cfg)``. ``defaults`` lists every
accepted cfg key with its default; ``resolve_config`` validates a cfg WITHOUT
building anything, so a spec validator can reject a bad spec before PyTorch
ever sees it, and a cfg that resolves always builds.

``input_size`` (the (H, W) of the block's input map) is accepted by every block.
The spec builder always passes it; blocks whose parameters depend on the map
size (relative tables, Linformer projections, learned positions) require it and
the others use it only to refuse sizes they cannot run on.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from torch import nn

from .cost import Cost
from .errors import ConfigError, MapSizeError


def as_size(value: Any, field: str = "input_size") -> tuple[int, int]:
    """Normalise an int or (H, W) pair to a tuple of two positive ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ConfigError(field, f"{value!r} is not a positive int or an [H, W] pair")
    return (int(value[0]), int(value[1]))


class Block(nn.Module):
    """Base class of all registered blocks."""

    registry_name: ClassVar[str] = ""
    #: every accepted cfg key -> default (``input_size`` is added for all blocks).
    defaults: ClassVar[dict[str, Any]] = {}
    #: strides this block can take.
    strides: ClassVar[tuple[int, ...]] = (1, 2)
    #: cfg keys added after the first spec format -> the value that builds the network
    #: specs written before them describe. The canonical hash leaves such a key out at
    #: that value, so every earlier spec keeps its hash (search_space.graph.canonical).
    added_keys: ClassVar[dict[str, Any]] = {}

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, **cfg: Any):
        super().__init__()
        self.cfg = self.resolve_config(in_ch, out_ch, stride, cfg)
        self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride
        self.input_size = self.cfg.pop("input_size")

    # -- validation, no tensors ------------------------------------------------
    @classmethod
    def resolve_config(cls, in_ch: int, out_ch: int, stride: int,
                       cfg: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled in and every value checked; raises ConfigError(field, ...)."""
        allowed = {**cls.defaults, "input_size": None}
        unknown = sorted(set(cfg) - set(allowed))
        if unknown:
            raise ConfigError(unknown[0], f"unknown key for block {cls.registry_name!r}; "
                                          f"allowed: {', '.join(sorted(allowed))}")
        for name, value in (("in_ch", in_ch), ("out_ch", out_ch)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(name, f"{value!r} is not a positive int")
        if stride not in cls.strides:
            raise ConfigError("stride", f"{stride!r} not allowed for block "
                                        f"{cls.registry_name!r}; allowed: {list(cls.strides)}")
        merged = {**allowed, **cfg}
        if merged["input_size"] is not None:
            merged["input_size"] = as_size(merged["input_size"])
        cls.check(in_ch, out_ch, stride, merged)
        if merged["input_size"] is not None:
            cls.check_size(in_ch, out_ch, stride, merged, merged["input_size"])
        return merged

    @classmethod
    def check(cls, in_ch: int, out_ch: int, stride: int, cfg: dict[str, Any]) -> None:
        """Raise ConfigError(field, what is allowed) for a bad value. Override."""

    @classmethod
    def check_size(cls, in_ch: int, out_ch: int, stride: int, cfg: dict[str, Any],
                   size: tuple[int, int]) -> None:
        """Raise MapSizeError if the block cannot run on an input map of ``size``."""

    @classmethod
    def canonical_config(cls, in_ch: int, out_ch: int, stride: int,
                         cfg: dict[str, Any]) -> dict[str, Any]:
        """The resolved cfg with one spelling per network: keys that have no effect for
        this cfg dropped and derived values written out, so that two cfgs building the
        same network compare (and hash) equal. Override where a cfg has such keys."""
        return dict(cfg)

    # -- shapes and cost -------------------------------------------------------
    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return (math.ceil(h / self.stride), math.ceil(w / self.stride))

    def cost(self, h: int, w: int) -> Cost:
        """Analytic cost for one image of size (h, w). Override."""
        raise NotImplementedError

    def require_size(self) -> tuple[int, int]:
        if self.input_size is None:
            raise MapSizeError(f"block {self.registry_name!r} with this cfg needs "
                               "input_size=(H, W) at construction")
        return self.input_size

    def extra_repr(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.cfg.items())
        return f"{self.in_ch}, {self.out_ch}, stride={self.stride}" + (f", {cfg}" if cfg else "")
