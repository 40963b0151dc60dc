"""Where a given network lies in a search space: the params under which
``SearchSpace.sample`` returns it.

A hand-designed network (a study's baseline) is often a point of the space a search
explores (the digit-scenes ResNet is: stem 16, stages 16 / 32x2 / 64x2 of basic
blocks). Told to the sampler with these params, its measured result is an observation
like any trial's, so a model-based sampler starts from the hand-designed networks
instead of from random candidates (Optuna's documented way to warm-start a study is
``enqueue_trial`` with known params).

``sample`` is define-by-run, so the params are found by running it with a guide that
answers each ``suggest_categorical`` from the target network (its resolved form, so
a knob the spec leaves at its default matches a space that names the default): the
parameter names say what they choose (see :mod:`search_space.space`). The result is
checked, not trusted: the params must sample a network with the target's hash.
"""

from __future__ import annotations

import json
from typing import Any

from .spec import ModelSpec
from .validate import ResolvedSpec


class _NotInSpace(Exception):
    """The target has a value the space does not offer at this point."""


def params_of(space: Any, spec: ModelSpec) -> dict[str, Any] | None:
    """The params (name -> label, as Optuna stores them) under which ``space.sample``
    returns ``spec``'s network, or None if the space cannot produce it (another input
    or class count, a block type or knob value it does not offer, another depth)."""
    if (spec.classes != space.classes
            or list(spec.input.size) != list(space.input.size)
            or spec.input.channels != space.input.channels):
        return None
    guide = _Guide(spec.resolve())
    try:
        sampled = space.sample(guide)
    except _NotInSpace:
        return None
    return guide.params if sampled.hash() == spec.hash() else None


class _Guide:
    """A trial whose every choice is the target network's (raises _NotInSpace)."""

    def __init__(self, target: ResolvedSpec):
        self.params: dict[str, Any] = {}
        self._stem, self._head = target.stem, target.head
        self._stages: list[list[Any]] = []
        for block in target.blocks:
            i = int(block.id.split(".")[0][1:])  # "s{i}.b{j}"
            while len(self._stages) <= i:
                self._stages.append([])
            self._stages[i].append(block)

    def suggest_categorical(self, name: str, offered: list[Any]) -> Any:
        wanted = self._value(name.split("[")[0].split("."))
        for label in offered:
            if label == wanted or (isinstance(label, str) and label == json.dumps(wanted)):
                self.params[name] = label
                return label
        raise _NotInSpace(name)

    def _value(self, parts: list[str]) -> Any:
        """The target's value of the parameter named ``parts`` (see the module)."""
        head, *rest = parts
        if head in ("stem", "head"):
            table = self._stem if head == "stem" else self._head
            if rest[0] not in table:
                raise _NotInSpace(".".join(parts))
            return table[rest[0]]
        i = int(head[1:])
        if i >= len(self._stages):
            raise _NotInSpace(".".join(parts))
        blocks = self._stages[i]
        if rest == ["channels"]:
            return blocks[0].out_ch
        if rest == ["stride"]:
            return blocks[0].stride
        if rest == ["depth"]:
            return len(blocks)
        if rest[0].startswith("b") and rest[0][1:].isdigit():  # s{i}.b{j}.(type | t.knob)
            j, rest = int(rest[0][1:]), rest[1:]
            if j >= len(blocks):
                raise _NotInSpace(".".join(parts))
            block = blocks[j]
        else:  # share: stage — one type and knob set for all the stage's blocks
            block = blocks[0]
        if rest == ["type"]:
            return block.type
        kind, knob = rest
        if kind != block.type or knob not in block.cfg:
            raise _NotInSpace(".".join(parts))
        return block.cfg[knob]
