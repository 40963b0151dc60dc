"""Reading and writing spec documents as YAML: safe loading only (a syntax error is one
SpecError line), and a dump that keeps leaf mappings on one line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError


def parse_yaml(text: str, source: str | None = None) -> Any:
    """``yaml.safe_load`` with a YAML syntax error turned into one SpecError line."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError("", f"invalid YAML: {where}{problem}", source) from None


def read_yaml_file(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    if not p.is_file():
        raise SpecError("", f"no such spec file: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SpecError("", f"not a YAML text file (byte {err.start} is not UTF-8 text)",
                        str(p)) from None
    return parse_yaml(text, str(p))


class _FlowMap(dict):
    """A mapping written on one line ({type: aa, heads: 8}) to keep specs readable."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _FlowMap, lambda d, m: d.represent_mapping("tag:yaml.org,2002:map", m.items(),
                                               flow_style=True))


def _flow_leaves(value: Any, depth: int = 0) -> Any:
    """Mappings whose values are all scalars or short scalar lists go on one line."""
    if isinstance(value, Mapping):
        items = {k: _flow_leaves(v, depth + 1) for k, v in value.items()}
        leafy = all(not isinstance(v, Mapping) and not (
            isinstance(v, list) and any(isinstance(x, (Mapping, list)) for x in v))
            for v in value.values())
        return _FlowMap(items) if leafy and depth > 0 else items
    if isinstance(value, list):
        return [_flow_leaves(v, depth + 1) for v in value]
    return value


def dump_yaml(data: Any) -> str:
    """Block style at the top, one-line leaf mappings; key order as given."""
    return yaml.dump(_flow_leaves(data), Dumper=_Dumper, sort_keys=False,
                     default_flow_style=False, width=100)
