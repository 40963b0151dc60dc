"""Position encodings for the attention branch of a block, by name.

    pos = create_position("sine", channels=64, input_size=(8, 8))
    y = pos(x)             # (B, 64, H, W) -> (B, pos.out_channels, H, W)

Names: ``none`` (identity), ``sine`` (fixed 2D sine-cosine table, added),
``coord`` (CoordConv: two [-1, 1] coordinate channels concatenated, so
``out_channels = channels + 2``), ``learned`` (a learned (1, C, H, W) table,
added, bilinearly resized at other map sizes) and ``relative`` (identity: its
presence means the relative logits live in the ``relative`` attention kernel;
``check_position`` enforces that pairing for every block alike).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .base import as_size
from .errors import ConfigError, MapSizeError

Size = tuple[int, int]


def sine_table(channels: int, h: int, w: int) -> torch.Tensor:
    """(1, channels, h, w) 2D sine-cosine table (the seed slides' encoding).

    First half of the channels encodes the row y, second half the column x:
    channel 2k = sin(y / 10000^(4k/d)), 2k+1 = cos(y / 10000^(4k/d)) for
    k < d/4, then the same with x. Needs d % 4 == 0.
    """
    if channels % 4:
        raise ConfigError("channels", f"sine position encoding needs channels divisible by 4, "
                                      f"got {channels}")
    k = torch.arange(channels // 4, dtype=torch.float64)
    inv_freq = 10000.0 ** (-4.0 * k / channels)                     # (d/4,)

    def half(pos: torch.Tensor) -> torch.Tensor:                    # (n,) -> (d/2, n)
        angle = inv_freq[:, None] * pos[None, :]
        return torch.stack([angle.sin(), angle.cos()], dim=1).reshape(channels // 2, -1)

    rows = half(torch.arange(h, dtype=torch.float64))[:, :, None].expand(-1, h, w)
    cols = half(torch.arange(w, dtype=torch.float64))[:, None, :].expand(-1, h, w)
    return torch.cat([rows, cols], dim=0).unsqueeze(0).float()


def coord_channels(h: int, w: int) -> torch.Tensor:
    """(1, 2, h, w): row then column coordinate in [-1, 1] (0 on a length-1 axis)."""
    def axis(n: int) -> torch.Tensor:
        return torch.linspace(-1.0, 1.0, n) if n > 1 else torch.zeros(1)

    rows = axis(h)[:, None].expand(h, w)
    cols = axis(w)[None, :].expand(h, w)
    return torch.stack([rows, cols]).unsqueeze(0)


class Position(nn.Module):
    """Base: ``channels`` in, ``out_channels`` out, map size unchanged."""

    def __init__(self, channels: int, input_size: Size | None = None):
        super().__init__()
        self.channels, self.out_channels = channels, channels
        self.input_size = input_size

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"{type(self).__name__} built for {self.channels} channels "
                             f"expects (B, {self.channels}, H, W), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return x


class NoPosition(Position):
    """``none``: no position information."""


class RelativeMarker(Position):
    """``relative``: identity; the relative logits live in the ``relative`` kernel."""


class SinePosition(Position):
    """``sine``: fixed 2D sine-cosine table added to the input.

    The table is a non-persistent buffer (not in the state dict: it is a function of
    the map size) built for ``input_size`` and rebuilt for the actual map size.
    """

    def __init__(self, channels: int, input_size: Size | None = None):
        super().__init__(channels, input_size)
        h, w = input_size or (1, 1)
        self.register_buffer("table", sine_table(channels, h, w), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if self.table.shape[-2:] != x.shape[-2:]:
            self.table = sine_table(self.channels, x.shape[-2], x.shape[-1]).to(x.device)
        return x + self.table.to(x.dtype)


class CoordPosition(Position):
    """``coord`` (CoordConv): concatenate [-1, 1] row and column channels (+2 channels)."""

    def __init__(self, channels: int, input_size: Size | None = None):
        super().__init__(channels, input_size)
        self.out_channels = channels + 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        grid = coord_channels(x.shape[-2], x.shape[-1]).to(x.device, x.dtype)
        return torch.cat([x, grid.expand(x.shape[0], -1, -1, -1)], dim=1)


class LearnedPosition(Position):
    """``learned``: a learned absolute (1, C, H, W) table added to the input.

    Built for ``input_size`` (required); at another map size the table is resized
    bilinearly (align_corners=False), so a model can be evaluated at a new resolution.
    """

    def __init__(self, channels: int, input_size: Size | None = None):
        if input_size is None:
            raise MapSizeError("position 'learned' needs input_size=(H, W) at construction: "
                               "its table has one entry per pixel")
        super().__init__(channels, input_size)
        self.table = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, channels, *input_size),
                                                        std=0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        table = self.table
        if table.shape[-2:] != x.shape[-2:]:
            table = F.interpolate(table, size=tuple(x.shape[-2:]), mode="bilinear",
                                  align_corners=False)
        return x + table.to(x.dtype)


_POSITIONS: dict[str, Callable[[int, Size | None], Position]] = {
    "none": NoPosition,
    "sine": SinePosition,
    "coord": CoordPosition,
    "learned": LearnedPosition,
    "relative": RelativeMarker,
}


def list_positions() -> list[str]:
    return sorted(_POSITIONS)


def _check_name(name: object) -> None:
    if name not in _POSITIONS:
        raise ConfigError("position", f"unknown position encoding {name!r}; "
                                      f"known: {', '.join(list_positions())}")


def create_position(name: str, channels: int, input_size: Size | int | None = None) -> Position:
    """Build position encoding ``name`` for a (B, channels, H, W) input."""
    _check_name(name)
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ConfigError("channels", f"{channels!r} is not a positive int")
    size = as_size(input_size) if input_size is not None else None
    return _POSITIONS[name](channels, size)


def check_position(position: str, attention: str) -> None:
    """The one rule for every block: ``relative`` position needs the ``relative`` kernel."""
    _check_name(position)
    if position == "relative" and attention != "relative":
        raise ConfigError("position", f"'relative' position encoding lives in the relative "
                                      f"attention kernel; it needs attention='relative', "
                                      f"got attention={attention!r}")
