"""The :class:`Study`: a validated study file as frozen data (see :mod:`nas.study`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from ..budget import Budget, parse_budget
from ..errors import UserError
from .sections import (
    DataConfig,
    FidelityConfig,
    MeasureConfig,
    Objective,
    ResourcesConfig,
    SamplerConfig,
    TrainingConfig,
)


@dataclass(frozen=True)
class Study:
    name: str
    space_dict: dict[str, Any]
    version: int = 1
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    objectives: tuple[Objective, ...] = (Objective("accuracy", "maximize"),)
    constraints: dict[str, float] = field(default_factory=dict)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    #: the budget, parsed once when the study loads (``to_dict`` writes its text back);
    #: None = the caller must give one (``--budget``, :meth:`with_budget`).
    budget: Budget | None = None
    #: "zoo:NAME" or absolute spec paths (resolved against the study file's folder).
    baselines: tuple[str, ...] = ()
    #: the file it came from (not part of to_dict).
    source: str | None = field(default=None, compare=False)

    @property
    def space(self):
        """The parsed ``search_space.SearchSpace`` (built on demand, cached)."""
        cached = self.__dict__.get("_space")
        if cached is None:
            cached = parse_space(self.space_dict)
            object.__setattr__(self, "_space", cached)
        return cached

    def __getstate__(self) -> dict[str, Any]:
        # Ship the plain fields only (Ray pickles the study to every worker); the parsed
        # space is rebuilt on first use there.
        state = dict(self.__dict__)
        state.pop("_space", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def with_budget(self, text: str | int) -> Study:
        """The same study with the budget ``text`` (``--budget``: a UserError starting
        ``--budget: `` says what is wrong with it)."""
        try:
            budget = parse_budget(text)
        except UserError as err:
            raise UserError(f"--budget: {err}") from None
        out = dataclasses.replace(self, budget=budget)
        if "_space" in self.__dict__:  # same space: keep the parsed one
            object.__setattr__(out, "_space", self.__dict__["_space"])
        return out

    @property
    def primary(self) -> Objective:
        """The first objective: ASHA and "best" rank by it."""
        return self.objectives[0]

    @property
    def input_channels(self) -> int:
        return int(self.space_dict["input"]["channels"])

    @property
    def input_size(self) -> tuple[int, int]:
        size = self.space_dict["input"]["size"]
        return (int(size), int(size)) if isinstance(size, int) else (int(size[0]),
                                                                      int(size[1]))

    @property
    def classes(self) -> int:
        return int(self.space_dict["classes"])

    def check_data(self, bundle: Any) -> None:
        """Raise UserError unless a loaded DataBundle has the space's input and classes."""
        want = (self.input_channels, self.input_size, self.classes)
        got = (bundle.channels, tuple(bundle.size), bundle.classes)
        if want != got:
            raise UserError(
                f"study.space: input {shape_str(*want)} does not match dataset "
                f"{self.data.dataset!r} which gives {shape_str(*got)}")

    def to_dict(self) -> dict[str, Any]:
        """The resolved study as plain values (defaults filled)."""
        data = _plain(self.data)
        for section in ("synthetic", "scenes"):
            if getattr(self.data, section) is None:
                data.pop(section)
        return {
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "data": data,
            "training": _plain(self.training),
            "objectives": [_plain(o) for o in self.objectives],
            "constraints": dict(self.constraints),
            "measure": _plain(self.measure),
            "space": _plain(self.space_dict),
            "sampler": _plain(self.sampler),
            "resources": _plain(self.resources),
            "fidelity": _plain(self.fidelity),
            "budget": None if self.budget is None else self.budget.text,
            "baselines": list(self.baselines),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def parse_space(space_dict: dict[str, Any]):
    """SearchSpace.from_dict with errors re-raised as UserError under ``study.space``."""
    from convattn.errors import ConfigError
    from search_space import SearchSpace
    from search_space.errors import SpecError

    try:
        return SearchSpace.from_dict(space_dict)
    except (SpecError, ConfigError) as err:
        text = str(err)
        if not text.startswith("space"):
            text = f"space.{text}" if not text.startswith("[") else f"space{text}"
        raise UserError(f"study.{text}") from None


def shape_str(channels: int, size: tuple[int, int], classes: int) -> str:
    return f"{channels}x{size[0]}x{size[1]} with {classes} classes"


def _plain(value: Any) -> Any:
    """Dataclasses/tuples -> dicts/lists of plain values, recursively."""
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def adapt_spec(spec: Any, study: Study):
    """The spec with the study's input channels, size and classes (validated)."""
    from search_space import load_spec

    spec = load_spec(spec)
    try:
        return spec.with_data(channels=study.input_channels, size=study.input_size,
                              classes=study.classes)
    except Exception as err:  # SpecError: a block that cannot run at this size
        raise UserError(f"spec {spec.name!r} cannot run on the study's data "
                        f"({study.input_channels}x{study.input_size[0]}x"
                        f"{study.input_size[1]}, {study.classes} classes): {err}") from None
