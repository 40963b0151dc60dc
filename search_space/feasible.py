"""Which choices of a search space complete to a valid network.

A block's validity depends only on its context: (in channels, out channels,
stride, input map size) and its own knob values, checked by the block's
``resolve_config`` (no tensors). The first block of a stage sees (previous
width -> stage width, stage stride, incoming size), later blocks
(width -> width, 1, size after the stride); later stages depend on this one only
through (width, size). So viability is a small dynamic programme over stage
states ``(stage index, in channels, map size)``.

Two costs are kept apart because some blocks check slowly: ``viable`` stops at
the first valid knob combination (enough to filter a choice and to reject an
empty space), while ``combos``, ``count`` and ``used`` enumerate every knob
combination of a context (exact filtering of the knobs actually sampled, the
exact size, and dead-choice detection). All results are cached per context.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from convattn import ConfigError

from .choices import Choice, Combo, assign
from .errors import SpecError
from .spec import InputSpec, StemSpec
from .validate import resolve_block, stem_shape

Size = tuple[int, int]
Ctx = tuple[int, int, int, Size]  # (in_ch, out_ch, stride, input size) of one block
STAGE_KEYS = ("channels", "stride", "depth")  # the order of stage_values


@dataclass(frozen=True)
class StageSpace:
    """One stage of a space: its choices and, per block type, its knob choices (the
    shared knobs merged with the stage's overrides)."""

    channels: Choice
    stride: Choice
    depth: Choice
    blocks: tuple[str, ...]
    share: str                                   # "block" | "stage"
    knobs: dict[str, tuple[Choice, ...]]
    knob_paths: dict[tuple[str, str], str]       # (type, key) -> where it was written

    def choice(self, key: str) -> Choice:
        return getattr(self, key)

    def values(self, combo: Combo) -> tuple[int, int, int]:
        """(channels, stride, depth) of a combo of stage choice indices."""
        c, s, d = (self.choice(k).values[x] for k, x in zip(STAGE_KEYS, combo, strict=True))
        return c, s, d

    def groups(self, in_ch: int, size: Size, combo: Combo) -> list[tuple[tuple[Ctx, ...], int]]:
        """Blocks that share one type + knob choice: (their contexts, how many blocks).
        ``share: stage``: one group for all blocks, valid in the first and later
        contexts; ``share: block``: the first block, then each later block alone."""
        c, s, d = self.values(combo)
        first: Ctx = (in_ch, c, s, size)
        later: Ctx = (c, c, 1, down(size, s))
        if self.share == "stage":
            return [((first, later) if d > 1 else (first,), 1)]
        return [((first,), 1)] + ([((later,), d - 1)] if d > 1 else [])


def down(size: Size, stride: int) -> Size:
    return (math.ceil(size[0] / stride), math.ceil(size[1] / stride))


@functools.lru_cache(maxsize=200_000)
def _refusal(btype: str, ctx: Ctx, cfg: str) -> str | None:
    """Why the block refuses this cfg in this context, or None if it accepts it.
    Cached across spaces: a study's space is parsed in the driver and in workers."""
    try:
        resolve_block(btype, *ctx[:3], json.loads(cfg), ctx[3])
    except ConfigError as err:
        where = (f" at a {ctx[3][0]}x{ctx[3][1]} map" if err.field == "input_size" else "")
        return f"{btype}{where}: {err}"
    return None


class Feasibility:
    """The dynamic programme over a parsed space (see the module docstring)."""

    def __init__(self, input_spec: InputSpec, stem: Sequence[Choice],
                 stages: Sequence[StageSpace]):
        self.input, self.stem, self.stages = input_spec, tuple(stem), tuple(stages)
        self.errors: dict[tuple, str] = {}  # (stage, type[, key, index]) -> first refusal
        self._combos: dict[tuple, tuple[Combo, ...]] = {}
        self._first: dict[tuple, Combo | None] = {}
        self._viable: dict[tuple, bool] = {}
        self._count: dict[tuple, int] = {}

    # -- one block type in one or more contexts -------------------------------------------
    def _ok(self, i: int, t: str, combo: Combo, ctx: Ctx) -> bool:
        knobs = self.stages[i].knobs[t]
        why = _refusal(t, ctx, json.dumps(assign(knobs, combo), sort_keys=True))
        if why is not None:
            for c, k in zip(knobs, combo, strict=True):
                self.errors.setdefault((i, t, c.key, k), why)
            self.errors.setdefault((i, t), why)
        return why is None

    def _all_combos(self, i: int, t: str) -> Iterator[Combo]:
        return itertools.product(*(range(len(c.values)) for c in self.stages[i].knobs[t]))

    def combos(self, i: int, t: str, ctxs: tuple[Ctx, ...]) -> tuple[Combo, ...]:
        """Every knob combination of ``t`` valid in all of ``ctxs`` (full enumeration)."""
        key = (i, t, ctxs)
        if key not in self._combos:
            self._combos[key] = tuple(x for x in self._all_combos(i, t)
                                      if all(self._ok(i, t, x, ctx) for ctx in ctxs))
        return self._combos[key]

    def has_combo(self, i: int, t: str, ctxs: tuple[Ctx, ...]) -> bool:
        """Whether some knob combination is valid in all of ``ctxs`` (stops at the first)."""
        key = (i, t, ctxs)
        if key in self._combos:
            return bool(self._combos[key])
        if key not in self._first:
            self._first[key] = next((x for x in self._all_combos(i, t)
                                     if all(self._ok(i, t, x, ctx) for ctx in ctxs)), None)
        return self._first[key] is not None

    def types(self, i: int, ctxs: tuple[Ctx, ...]) -> list[str]:
        """Block types of stage ``i`` usable in all of ``ctxs``, in the space's order."""
        return [t for t in self.stages[i].blocks if self.has_combo(i, t, ctxs)]

    # -- stages ---------------------------------------------------------------------------
    def _stage_combos(self, i: int) -> Iterator[Combo]:
        stage = self.stages[i]
        return itertools.product(*(range(len(stage.choice(k).values)) for k in STAGE_KEYS))

    def options(self, i: int, in_ch: int, size: Size) -> list[Combo]:
        """(channels, stride, depth) index combos of stage ``i`` from this input that
        complete to a valid network."""
        stage, out = self.stages[i], []
        for combo in self._stage_combos(i):
            c, s, _ = stage.values(combo)
            if (all(self.types(i, ctxs) for ctxs, _ in stage.groups(in_ch, size, combo))
                    and self.viable(i + 1, c, down(size, s))):
                out.append(combo)
        return out

    def viable(self, i: int, in_ch: int, size: Size) -> bool:
        """Whether stages i.. can be completed from this input."""
        if i == len(self.stages):
            return True
        key = (i, in_ch, size)
        if key not in self._viable:
            self._viable[key] = bool(self.options(i, in_ch, size))
        return self._viable[key]

    def stems(self) -> list[tuple[Combo, dict[str, Any], tuple[int, int, int]]]:
        """Viable stem choices: (combo, stem document, output shape)."""
        out = []
        for combo in itertools.product(*(range(len(c.values)) for c in self.stem)):
            doc = assign(self.stem, combo)
            try:
                shape = stem_shape(StemSpec.from_dict(doc), self.input.shape)
            except SpecError:
                continue
            if self.viable(0, shape[0], shape[1:]):
                out.append((combo, doc, shape))
        return out

    # -- full enumeration: size and dead choices ---------------------------------------------
    def count(self, i: int, in_ch: int, size: Size) -> int:
        """Distinct completions of stages i.. from this input."""
        if i == len(self.stages):
            return 1
        key = (i, in_ch, size)
        if key not in self._count:
            stage, total = self.stages[i], 0
            for combo in self.options(i, in_ch, size):
                c, s, _ = stage.values(combo)
                n = self.count(i + 1, c, down(size, s))
                for ctxs, blocks in stage.groups(in_ch, size, combo):
                    n *= sum(len(self.combos(i, t, ctxs)) for t in self.types(i, ctxs)) ** blocks
                total += n
            self._count[key] = total
        return self._count[key]

    def used(self) -> dict[tuple, set[int]]:
        """Every choice index that some valid network uses, keyed ("stem", key),
        (stage, stage key), (stage, "type") or (stage, type, knob key)."""
        stems = self.stems()
        used: dict[tuple, set[int]] = {("stem", c.key): {x[n] for x, *_ in stems}
                                       for n, c in enumerate(self.stem)}
        todo = {(0, shape[0], shape[1:]) for *_, shape in stems}
        seen: set[tuple] = set()
        while todo:
            state = todo.pop()
            i, in_ch, size = state
            if state in seen or i == len(self.stages):
                continue
            seen.add(state)
            stage = self.stages[i]
            for combo in self.options(i, in_ch, size):
                for key, x in zip(STAGE_KEYS, combo, strict=True):
                    used.setdefault((i, key), set()).add(x)
                for ctxs, _ in stage.groups(in_ch, size, combo):
                    for t in self.types(i, ctxs):
                        used.setdefault((i, "type"), set()).add(stage.blocks.index(t))
                        for n, choice in enumerate(stage.knobs[t]):
                            used.setdefault((i, t, choice.key), set()).update(
                                x[n] for x in self.combos(i, t, ctxs))
                c, s, _ = stage.values(combo)
                todo.add((i + 1, c, down(size, s)))
        return used

    def first_failure(self) -> str:
        for key, why in self.errors.items():
            if len(key) == 2:
                return f"e.g. stages[{key[0]}] {why}"
        return "no stem choice fits the input"
