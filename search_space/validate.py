"""Shape inference and block-config resolution: the semantic check of a spec.

``resolve_spec`` walks the network in order, computes every tensor shape and
calls each block's ``resolve_config`` with its ``input_size`` (no tensors are
built), so a spec that resolves always builds and one that does not fails here
with a SpecError naming the field, before PyTorch sees it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from convattn import ConfigError, block_class
from convattn.cost import out_size

from . import fields as f
from .errors import SpecError

# The spec arrives as an argument (a search_space.ModelSpec, read by attribute): this
# module is what ModelSpec.resolve() calls, so it must not import the spec module.

Shape = tuple[int, int, int]  # (C, H, W) of one image


@dataclass(frozen=True)
class ResolvedBlock:
    """One block with its context and its cfg as the block resolved it."""

    id: str                      # "s{i}.b{j}"
    path: str                    # "stages[i].blocks[j]"
    type: str
    in_ch: int
    out_ch: int
    stride: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    cfg: dict[str, Any]          # resolved by the block: defaults filled, no input_size
    given: dict[str, Any]        # the cfg as written in the spec

    @property
    def in_shape(self) -> Shape:
        return (self.in_ch, *self.in_size)

    @property
    def out_shape(self) -> Shape:
        return (self.out_ch, *self.out_size)


@dataclass(frozen=True)
class ResolvedSpec:
    input_shape: Shape
    stem: dict[str, Any]
    stem_shape: Shape
    blocks: tuple[ResolvedBlock, ...]
    head: dict[str, Any]
    classes: int

    @property
    def feature_shape(self) -> Shape:
        """Shape of the map the head pools."""
        return self.blocks[-1].out_shape if self.blocks else self.stem_shape


def stem_shape(stem: Any, shape: Shape, path: str = "stem") -> Shape:
    """Output (C, H, W) of the stem for an input of ``shape``; ``stem`` is a resolved
    stem cfg (a dict) or a StemSpec."""
    cfg = stem if isinstance(stem, dict) else stem.resolved()
    if cfg["kind"] == "none":
        return shape
    c, h, w = shape
    k, s, p = cfg["kernel"], cfg["stride"], cfg["padding"]
    h, w = out_size(h, k, s, p), out_size(w, k, s, p)
    if h < 1 or w < 1:
        raise SpecError(f.join(path, "kernel"), f"a {k}x{k} conv with padding {p} does not fit "
                                                f"the {shape[1]}x{shape[2]} input")
    if cfg["pool"] == "max":  # torchvision: 3x3 max-pool, stride 2, padding 1
        h, w = out_size(h, 3, 2, 1), out_size(w, 3, 2, 1)
    return (cfg["channels"], h, w)


def resolve_block(block_type: str, in_ch: int, out_ch: int, stride: int,
                  cfg: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """The block's resolved cfg (no ``input_size``); ConfigError if it refuses."""
    cls = block_class(block_type)
    try:
        resolved = cls.resolve_config(in_ch, out_ch, stride, {**cfg, "input_size": size})
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # a value of the wrong type the block did not guard
        raise ConfigError("", f"block {block_type!r} rejected its cfg: {err}") from None
    resolved = dict(resolved)
    resolved.pop("input_size", None)
    return resolved


def block_error(err: ConfigError, path: str, stage_path: str, first: bool,
                size: tuple[int, int]) -> SpecError:
    """A block's ConfigError as a SpecError at the spec field that caused it."""
    field, message = err.field, err.message
    if field == "stride" and first:
        return SpecError(f.join(stage_path, "stride"), message)
    if field == "out_ch":
        return SpecError(f.join(stage_path, "channels"), message)
    if field == "input_size":
        return SpecError(path, f"cannot run on its {size[0]}x{size[1]} input map: {message}")
    if field == "":
        is_type = message.startswith("unknown block")
        return SpecError(f.join(path, "type") if is_type else path, message)
    return SpecError(f.join(path, field), message)


def resolve_spec(spec) -> ResolvedSpec:
    """Shapes and resolved cfgs of every node of a ModelSpec; SpecError at the first bad
    field."""
    input_shape = spec.input.shape
    stem = spec.stem.resolved()
    shape = stem_shape(stem, input_shape)
    blocks: list[ResolvedBlock] = []
    for i, stage in enumerate(spec.stages):
        stage_path = f"stages[{i}]"
        for j, block in enumerate(stage.blocks):
            path = f"{stage_path}.blocks[{j}]"
            in_ch, (h, w) = shape[0], shape[1:]
            stride = stage.stride_or_default if j == 0 else 1
            try:
                cfg = resolve_block(block.type, in_ch, stage.channels, stride, dict(block.cfg),
                                    (h, w))
            except ConfigError as err:
                raise block_error(err, path, stage_path, j == 0, (h, w)) from None
            out = (math.ceil(h / stride), math.ceil(w / stride))
            blocks.append(ResolvedBlock(f"s{i}.b{j}", path, block.type, in_ch, stage.channels,
                                        stride, (h, w), out, cfg, dict(block.cfg)))
            shape = (stage.channels, *out)
    return ResolvedSpec(input_shape, stem, stem_shape(stem, input_shape), tuple(blocks),
                        spec.head_or_default().resolved(), spec.classes)
