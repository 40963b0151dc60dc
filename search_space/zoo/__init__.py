"""The zoo: hand-designed baselines from the literature as model spec files.

    >>> from search_space.zoo import list_zoo, load_zoo
    >>> spec = load_zoo("resnet18-cifar")   # = search_space.load_spec("zoo:resnet18-cifar")

One YAML file per baseline (``<name>.yaml`` next to this module), at the input
size and class count of its paper. Each carries in ``meta``:

- ``reference_params``: the parameter count it is checked against;
- ``source``: where that count comes from (reference code or a paper table);
- ``tolerance``: 0.01 when the count comes from reference code (the network is
  the same, up to documented differences), 0.05 when only a rounded paper-table
  figure exists (or, for EAANet, when no public count exists at all and the
  reference is this project's own count: ``source`` then says so);
- ``tolerance_why``: which of those applies;
- optionally ``unmodelled``: a list of ``{what, params}`` for parts of the
  reference network the spec format cannot express (e.g. a hidden head layer);
  their parameters are subtracted from the reference before the check, so the
  difference is explained by an exact closed form rather than absorbed by the
  tolerance.

``tests/search_space/test_zoo.py`` builds every entry and checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..errors import SpecError

_SUFFIX = ".yaml"


def list_zoo() -> list[str]:
    """Names of every zoo entry, sorted."""
    return sorted(p.name[: -len(_SUFFIX)] for p in resources.files(__name__).iterdir()
                  if p.name.endswith(_SUFFIX))


def zoo_text(name: str) -> str:
    """The YAML text of entry ``name``; SpecError listing the known names otherwise."""
    if not isinstance(name, str) or name not in list_zoo():
        raise SpecError("zoo", f"unknown model {name!r}; known: {', '.join(list_zoo())}")
    return resources.files(__name__).joinpath(name + _SUFFIX).read_text()


def load_zoo(name: str):
    """The validated :class:`search_space.spec.ModelSpec` of zoo entry ``name``."""
    import yaml

    from ..spec import ModelSpec

    try:
        return ModelSpec.from_dict(yaml.safe_load(zoo_text(name)))
    except SpecError as err:
        if err.path == "zoo":
            raise
        raise err.with_source(f"zoo:{name}") from None


@dataclass(frozen=True)
class ZooEntry:
    """One baseline as ``nas zoo`` lists it; ``params`` is counted from the built model."""

    name: str
    params: int
    reference_params: int
    unmodelled_params: int
    source: str
    tolerance: float
    tolerance_why: str
    input: list[int]
    classes: int

    @property
    def expected_params(self) -> int:
        """The reference minus the parts the spec format cannot express."""
        return self.reference_params - self.unmodelled_params

    @property
    def relative_error(self) -> float:
        return (self.params - self.expected_params) / self.expected_params

    @property
    def within_tolerance(self) -> bool:
        return abs(self.relative_error) <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params,
                "reference_params": self.reference_params,
                "unmodelled_params": self.unmodelled_params,
                "relative_error": round(self.relative_error, 6),
                "within_tolerance": self.within_tolerance, "tolerance": self.tolerance,
                "tolerance_why": self.tolerance_why, "source": self.source,
                "input": self.input, "classes": self.classes}


def zoo_entry(name: str) -> ZooEntry:
    """Load, build (on the meta device when possible) and describe entry ``name``."""
    from ..cost import count_params

    spec = load_zoo(name)
    meta = dict(spec.meta or {})
    for key in ("reference_params", "source", "tolerance", "tolerance_why"):
        if key not in meta:
            raise SpecError(f"meta.{key}", f"zoo entry {name!r} must record it")
    unmodelled = sum(int(u["params"]) for u in meta.get("unmodelled", []))
    return ZooEntry(name=name, params=count_params(spec),
                    reference_params=int(meta["reference_params"]),
                    unmodelled_params=unmodelled, source=str(meta["source"]),
                    tolerance=float(meta["tolerance"]),
                    tolerance_why=str(meta["tolerance_why"]),
                    input=list(spec.input.shape), classes=spec.classes)
