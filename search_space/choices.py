"""Choices in a search space and how they are offered to an Optuna trial.

A key's value is fixed (a scalar) or a choice (a list). Choices are offered with
``trial.suggest_categorical``: ints and strings as written, any other value
(floats, booleans, null) by its JSON text, so every storage and the dashboard
show them as written. ``pick`` chooses among the combinations that are still
valid, key by key; since Optuna needs one choice list per parameter name, a
parameter offered fewer values than its full list carries them in its name
(``s1.b0.aa.heads[1,2]``), and a key left with one value is not suggested.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import fields as f
from .errors import SpecError

Combo = tuple[int, ...]  # one index into each key's values


@dataclass(frozen=True)
class Choice:
    """One key's values, and whether the space wrote them as a list (a real choice)."""

    key: str
    values: tuple[Any, ...]
    listed: bool

    @property
    def labels(self) -> tuple[Any, ...]:
        """What Optuna is offered: ints or strings as written, others as JSON text."""
        if all(isinstance(v, str) for v in self.values) or all(f.is_int(v) for v in self.values):
            return self.values
        return tuple(v if isinstance(v, str) else json.dumps(v) for v in self.values)

    def path(self, base: str, k: int) -> str:
        """Path of value ``k``: ``base[k]`` for a list, ``base`` for a scalar."""
        return f.index(base, k) if self.listed else base


def parse_choice(value: Any, path: str, key: str, *, check=None) -> Choice:
    """A scalar (fixed) or a non-empty list of distinct plain values, each checked by
    ``check(value, path_of_that_value)``."""
    listed = isinstance(value, list)
    values = f.expect_list(value, path) if listed else [value]
    out: list[Any] = []
    for i, v in enumerate(values):
        vpath = f.index(path, i) if listed else path
        v = f.plain(v, vpath)
        if check is not None:
            check(v, vpath)
        if any(v == o and isinstance(v, bool) == isinstance(o, bool) for o in out):
            raise SpecError(vpath, f"duplicate choice {v!r}")
        out.append(v)
    choice = Choice(key, tuple(out), listed)
    if len({str(x) for x in choice.labels}) != len(choice.labels):
        raise SpecError(path, f"choices {out!r} are not distinct as labels {choice.labels!r}")
    return choice


def parse_choices(data: Mapping[str, Any], path: str, check=None) -> tuple[Choice, ...]:
    """Every key of a mapping as a Choice; ``check(key, value, path)`` per value."""
    return tuple(parse_choice(v, f.join(path, k), k,
                              check=None if check is None else (lambda v, p, k=k: check(k, v, p)))
                 for k, v in data.items())


def assign(choices: Sequence[Choice], combo: Combo) -> dict[str, Any]:
    """The plain values a combo of indices stands for, keyed by the choice keys."""
    return {c.key: copy.deepcopy(c.values[k]) for c, k in zip(choices, combo, strict=True)}


def pick(trial: Any, prefix: str, choices: Sequence[Choice], combos: Sequence[Combo]) -> Combo:
    """Choose one of ``combos`` key by key through ``trial.suggest_categorical``, each
    suggestion offering only the values some remaining combo has."""
    remaining = list(combos)
    if not remaining:
        raise AssertionError(f"{prefix}: nothing to pick from (a bug in the space filter)")
    picked: list[int] = []
    for n, choice in enumerate(choices):
        allowed = sorted({c[n] for c in remaining})
        if len(allowed) == 1:
            k = allowed[0]
        else:
            labels = choice.labels
            offered = [labels[a] for a in allowed]
            name = prefix + choice.key
            if len(allowed) < len(labels):
                name += "[" + ",".join(str(x) for x in offered) + "]"
            k = list(labels).index(trial.suggest_categorical(name, offered))
        picked.append(k)
        remaining = [c for c in remaining if c[n] == k]
    return tuple(picked)
