"""Field readers of a study file: :mod:`search_space.fields` (the readers the model spec
and the search space use) plus the few value kinds only a study has (numbers written
with a YAML 1.1 exponent, GPU counts, seeds, image sizes, ``auto`` switches).

Every reader is ``read(value, path) -> value`` and raises
:class:`search_space.errors.SpecError` naming ``path`` (``study.training.epochs: -1 is
not a positive int``); :func:`user_errors` turns that into the :class:`nas.errors.UserError`
the ``nas`` tool reports, with the same text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from search_space import fields as f
from search_space.errors import SpecError

from ..errors import UserError

Reader = Callable[[Any, str], Any]

#: the largest seed NumPy and Optuna's samplers accept.
SEED_MAX = 2**32 - 1


@contextmanager
def user_errors() -> Iterator[None]:
    """A SpecError raised inside becomes a UserError with the same one-line text."""
    try:
        yield
    except SpecError as err:
        raise UserError(str(err)) from None


def section(raw: Any, path: str, readers: dict[str, Reader], required: tuple[str, ...] = (),
            extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a mapping with one reader per key (``extra``: keys allowed but read by the
    caller); unknown keys and missing required ones are errors. None reads as {}."""
    raw = f.expect_map({} if raw is None else raw, path)
    f.check_keys(raw, path, required=required,
                 optional=[k for k in (*readers, *extra) if k not in required])
    return {k: readers[k](v, f.join(path, k)) for k, v in raw.items() if k in readers}


def optional(read: Reader) -> Reader:
    """``read``, with None allowed (and kept)."""
    return lambda v, p: None if v is None else read(v, p)


def choice(allowed: tuple[str, ...]) -> Reader:
    return lambda v, p: f.one_of(v, p, allowed)


def int_at_least(low: int) -> Reader:
    return lambda v, p: f.positive_int(v, p, minimum=low)


def seed_value(value: Any, path: str) -> int:
    """What NumPy and Optuna's samplers accept: an int in 0..2**32-1."""
    if not f.is_int(value) or not 0 <= value <= SEED_MAX:
        raise SpecError(path, f"{value!r} is not a seed (an integer from 0 to 2**32-1)")
    return value


# PyYAML (YAML 1.1) reads exponents without a sign ("2.0e6", "1e5") as STRINGS; a
# study author means a number, so such strings are accepted where a number is wanted.
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _yaml_number(value: Any) -> Any:
    if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
        value = float(value)
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    return value


def number(what: str, ok: Callable[[float], bool]) -> Reader:
    """A number for which ``ok`` holds (YAML exponent text accepted), else "is not
    ``what``"."""
    def read(value: Any, path: str) -> float | int:
        n = _yaml_number(value)
        if not f.is_number(n) or not ok(n):
            raise SpecError(path, f"{value!r} is not {what}")
        return n
    return read


positive_number = number("a positive number", lambda n: n > 0)
nonneg_number = number("a number >= 0", lambda n: n >= 0)
open_fraction = number("a number strictly between 0 and 1", lambda n: 0 < n < 1)
fraction = number("a number in [0, 1)", lambda n: 0 <= n < 1)
unit_gamma = number("a number in (0, 1]", lambda n: 0 < n <= 1)
above_one = number("a number > 1", lambda n: n > 1)


def gpus(value: Any, path: str) -> float | str:
    """``auto``, 0 (CPU trials), a fraction in (0, 1], or a whole number of GPUs."""
    if value == "auto":
        return "auto"
    if not f.is_number(value) or value < 0:
        raise SpecError(path, f"{value!r} is not allowed; allowed: auto, 0 (CPU trials), "
                              "a fraction in (0, 1], or a whole number of GPUs")
    if value > 1 and value != int(value):
        raise SpecError(path, f"{value!r} is not allowed; Ray shares a GPU only in "
                              "fractions up to 1 (use a fraction in (0, 1] or a whole number)")
    return value


def milestones(value: Any, path: str) -> tuple[float, ...]:
    values = [_yaml_number(x) for x in value] if isinstance(value, list) else [None]
    if (not all(f.is_number(x) and 0 < x < 1 for x in values)
            or sorted(values) != values):
        raise SpecError(path, f"{value!r} is not an increasing list of fractions of the "
                              "run in (0, 1)")
    return tuple(float(x) for x in values)


def size(value: Any, path: str) -> tuple[int, int]:
    """A positive int (a square) or an [H, W] pair."""
    if f.is_int(value) and value > 0:
        return (value, value)
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(f.is_int(x) and x > 0 for x in value)):
        return (value[0], value[1])
    raise SpecError(path, f"{value!r} is not a positive int or an [H, W] pair")


def auto_bool(value: Any, path: str) -> bool | str:
    if value == "auto" or isinstance(value, bool):
        return value
    raise SpecError(path, f"{value!r} is not allowed; allowed: auto, true, false")


def plain_options(value: Any, path: str) -> dict[str, Any]:
    """A mapping of plain YAML values (bounded: a YAML alias bomb is refused)."""
    f.expect_map(value, path)
    f.plain(value, path)
    return dict(value)

