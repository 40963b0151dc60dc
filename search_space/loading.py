"""``load_spec``: a ModelSpec from a path, a plain dict, a ModelSpec, or ``zoo:NAME``
(the YAML itself is read by :mod:`search_space.yamlio`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .errors import SpecError
from .spec import ModelSpec
from .yamlio import read_yaml_file

ZOO_PREFIX = "zoo:"


def load_spec(source: Any, *, validate: bool = True):
    """A ModelSpec from a path, a plain dict, a ModelSpec, or ``"zoo:NAME"``.

    Errors are SpecError naming the field path (and the file, for a path)."""
    if isinstance(source, ModelSpec):
        return source.validate() if validate else source
    if isinstance(source, Mapping):
        return ModelSpec.from_dict(source, validate=validate)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if text.startswith(ZOO_PREFIX):
            from .zoo import load_zoo  # written by the zoo author; imported lazily
            return load_zoo(text[len(ZOO_PREFIX):])
        data = read_yaml_file(text)
        try:
            return ModelSpec.from_dict(data, validate=validate)
        except SpecError as err:
            raise err.with_source(text) from None
    raise SpecError("", f"cannot load a spec from {type(source).__name__}; "
                        "give a path, a dict, a ModelSpec or 'zoo:NAME'")
