"""``load_study``: a study from a YAML file, a packaged study's name, plain values or a
Study; ``packaged_studies``: the names shipped with the package (``nas.studies``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError
from .parse import parse_study
from .study import Study

DEFAULT_STUDY = "digits"


def load_study(source: str | Path | dict[str, Any] | Study | None = None) -> Study:
    """Read and validate a study.

    ``source``: None (the packaged digits study), a path to a YAML file, the name of a
    packaged study ("digits"), a dict (plain values, as ``Study.to_dict()``), or a Study.
    """
    if isinstance(source, Study):
        return source
    if isinstance(source, dict):
        return parse_study(source, base_dir=Path.cwd())
    path = _find_file(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(f"study: cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"study: {path} is not a YAML text file (byte {err.start} is not "
                        "UTF-8 text)") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"study: {path}{where} is not valid YAML: {problem}") from None
    study = parse_study(raw, base_dir=path.parent)
    object.__setattr__(study, "source", str(path))
    return study


def packaged_studies() -> list[str]:
    """Names of the studies shipped with the package."""
    root = resources.files("nas.studies")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def _find_file(source: str | Path | None) -> Path:
    if source is None:
        source = DEFAULT_STUDY
    path = Path(source)
    if path.exists():
        return path
    name = str(source)
    if "/" not in name and not name.endswith((".yaml", ".yml")):
        packaged = resources.files("nas.studies") / f"{name}.yaml"
        if packaged.is_file():
            return Path(str(packaged))
    known = ", ".join(packaged_studies())
    raise UserError(f"study: no such file {str(source)!r} (packaged studies: {known})")
