"""Small readers for plain YAML values that raise SpecError naming the field path.

Shared by the model spec (root path "") and the search space (root path
"space") so both report mistakes the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import SpecError


def join(path: str, key: str) -> str:
    """``stages[0]`` + ``blocks`` -> ``stages[0].blocks``; the root path is ""."""
    return f"{path}.{key}" if path else key


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def expect_map(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(path, f"expected a mapping, got {_kind(value)}")
    for key in value:
        if not isinstance(key, str):
            raise SpecError(path, f"keys must be strings, got {key!r}")
    return value


def expect_list(value: Any, path: str, *, nonempty: bool = True) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise SpecError(path, f"expected a list, got {_kind(value)}")
    if nonempty and not value:
        raise SpecError(path, "must not be empty")
    return list(value)


def check_keys(data: Mapping[str, Any], path: str, required: Iterable[str],
               optional: Iterable[str] = ()) -> None:
    """Unknown keys and missing required keys are errors that list what is allowed."""
    required, optional = list(required), list(optional)
    allowed = required + optional
    for key in data:
        if key not in allowed:
            raise SpecError(join(path, key), f"unknown key; allowed: {', '.join(allowed)}")
    for key in required:
        if key not in data:
            raise SpecError(join(path, key), "is required")


def positive_int(value: Any, path: str, *, minimum: int = 1) -> int:
    if not is_int(value) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise SpecError(path, f"{value!r} is not {what}")
    return value


def one_of(value: Any, path: str, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    if value not in allowed:
        raise SpecError(path, f"{value!r} is not allowed; allowed: {', '.join(allowed)}")
    return value


def number(value: Any, path: str, *, what: str = "a number",
           ok: Callable[[float], bool] = lambda n: True) -> float | int:
    """A finite number (not a bool) for which ``ok`` holds; the error says it is not
    ``what`` (e.g. "a positive number"). Kept as written so that round-trips are exact."""
    if not is_number(value) or not ok(value):
        raise SpecError(path, f"{value!r} is not {what}")
    return value


def fraction(value: Any, path: str) -> float | int:
    """A number in [0, 1) (dropout)."""
    return number(value, path, what="a number in [0, 1)", ok=lambda n: 0 <= n < 1)


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(path, f"{value!r} is not allowed; allowed: true, false")
    return value


def text(value: Any, path: str) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        raise SpecError(path, f"{value!r} is not a non-empty string")
    return value


def size_pair(value: Any, path: str) -> tuple[int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(is_int(v) and v > 0 for v in value)):
        raise SpecError(path, f"{value!r} is not an [H, W] pair of positive ints")
    return (value[0], value[1])


#: the most values a free-form field (``meta:``) may hold once YAML aliases are
#: expanded. An "alias bomb" (9 anchors each listing the previous one 9 times) is a few
#: hundred bytes of YAML and 9^9 values expanded: copied, hashed or written out as JSON
#: it hangs the tool. Real metadata is far below this.
PLAIN_MAX_VALUES = 100_000


def plain(value: Any, path: str) -> Any:
    """Check a free-form value is plain YAML data (str, number, bool, null, list,
    string-keyed map) and return a deep copy with tuples as lists. Refuses (SpecError)
    a value of more than ``PLAIN_MAX_VALUES`` values, counted as it is read, so a YAML
    alias bomb is refused at once instead of expanded."""
    budget = [PLAIN_MAX_VALUES]
    return _plain(value, path, budget, path)


def _plain(value: Any, path: str, budget: list[int], root: str) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise SpecError(root, f"more than {PLAIN_MAX_VALUES:,} values (YAML aliases "
                              "included, each counted where it is used); keep free-form "
                              "metadata small")
    if value is None or isinstance(value, (str, bool)) or is_int(value):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(path, f"{value!r} is not a finite number")
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, index(path, i), budget, root) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        expect_map(value, path)
        return {k: _plain(v, join(path, k), budget, root) for k, v in value.items()}
    raise SpecError(path, f"{_kind(value)} is not a plain YAML value")


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: f"string {value!r}",
            type(None): "null"}.get(type(value), f"{type(value).__name__} {value!r}")
