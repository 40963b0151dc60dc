"""The model spec: a versioned document of plain values that describes one network.

    version: 2
    name: aa-resnet18-cifar
    input: {channels: 3, size: [32, 32]}
    classes: 10
    stem: {kind: conv, channels: 64, kernel: 3, stride: 1, norm: batch, act: relu, pool: none}
    stages:
      - {channels: 64, stride: 1, blocks: [{type: basic}, {type: aa, heads: 8}]}
    head: {pool: avg, norm: none, act: none, dropout: 0.0,
           hidden: [{width: 512, act: relu, dropout: 0.0}]}    # hidden: version 2
    meta: {}

Versions: 2 (written by this code) adds ``head.hidden``; a version 1 document
(no hidden head layers) still loads, builds and hashes exactly as before. Block
cfg keys belong to the blocks (``convattn``) and are checked by them in any
version; keys a block gained later (``bias``, ``dropout_kind`` of ``wide``/``aa``)
default to the earlier network and leave the hash of specs without them unchanged.

Optional fields hold ``None`` when the document did not give them, so that
``from_dict(d).to_dict() == d`` exactly (what you read is what you write);
``resolved()`` fills the defaults. Every block entry is ``type`` plus that
block's cfg keys, flat. The first block of a stage maps (previous channels ->
stage channels, stage stride), later ones (channels -> channels, 1). Parsing
checks structure and types; ``validate()`` also runs shape inference and each
block's ``resolve_config`` so that a spec that validates always builds.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import fields as f
from .errors import SpecError

SPEC_VERSION = 2
#: every version this code reads; see the module docstring for what each adds.
SPEC_VERSIONS = (1, 2)

STEM_KINDS = ("conv", "none")
STEM_NORMS = ("batch", "none")
ACTS = ("relu", "none")
STEM_POOLS = ("max", "none")
HEAD_POOLS = ("avg",)
HEAD_NORMS = ("batch", "layer", "none")
HIDDEN_ACTS = ("relu", "gelu", "none")

STEM_DEFAULTS: dict[str, Any] = {"kind": "conv", "kernel": 3, "stride": 1, "norm": "batch",
                                 "act": "relu", "pool": "none"}  # padding: kernel // 2
HEAD_DEFAULTS: dict[str, Any] = {"pool": "avg", "norm": "none", "act": "none", "dropout": 0.0}
HIDDEN_DEFAULTS: dict[str, Any] = {"act": "relu", "dropout": 0.0}


def _opt(data: Mapping[str, Any], path: str, key: str, read: Any) -> Any:
    """An optional field: None when absent (an explicit null is an error, because it
    would not round-trip), else ``read(value, path)``."""
    return None if key not in data else read(data[key], f.join(path, key))


def _given(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The fields of ``obj`` that the document gave (not None), in field order."""
    return {n: getattr(obj, n) for n in names if getattr(obj, n) is not None}


@dataclass(frozen=True)
class InputSpec:
    """The input images: channels and [H, W]."""

    channels: int
    size: tuple[int, int]

    @classmethod
    def from_dict(cls, data: Any, path: str = "input") -> InputSpec:
        data = f.expect_map(data, path)
        f.check_keys(data, path, ["channels", "size"])
        return cls(f.positive_int(data["channels"], f.join(path, "channels")),
                   f.size_pair(data["size"], f.join(path, "size")))

    def to_dict(self) -> dict[str, Any]:
        return {"channels": self.channels, "size": list(self.size)}

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)


@dataclass(frozen=True)
class StemSpec:
    """``kind: conv``: k x k conv (padding k // 2 unless given), optional BN, ReLU and
    torchvision's 3x3/2 max-pool. ``kind: none``: identity (the first block embeds)."""

    kind: str | None = None
    channels: int | None = None
    kernel: int | None = None
    stride: int | None = None
    padding: int | None = None
    norm: str | None = None
    act: str | None = None
    pool: str | None = None

    _FIELDS = ("kind", "channels", "kernel", "stride", "padding", "norm", "act", "pool")

    @classmethod
    def from_dict(cls, data: Any, path: str = "stem") -> StemSpec:
        data = f.expect_map(data, path)
        kind = f.one_of(data.get("kind", "conv"), f.join(path, "kind"), STEM_KINDS)
        if kind == "none":
            f.check_keys(data, path, [], ["kind"])
            return cls(kind=data.get("kind"))
        f.check_keys(data, path, ["channels"], [k for k in cls._FIELDS if k != "channels"])
        return cls(
            kind=data.get("kind"),
            channels=f.positive_int(data["channels"], f.join(path, "channels")),
            kernel=_opt(data, path, "kernel", f.positive_int),
            stride=_opt(data, path, "stride", f.positive_int),
            padding=_opt(data, path, "padding", lambda v, p: f.positive_int(v, p, minimum=0)),
            norm=_opt(data, path, "norm", lambda v, p: f.one_of(v, p, STEM_NORMS)),
            act=_opt(data, path, "act", lambda v, p: f.one_of(v, p, ACTS)),
            pool=_opt(data, path, "pool", lambda v, p: f.one_of(v, p, STEM_POOLS)),
        )

    def to_dict(self) -> dict[str, Any]:
        return _given(self, self._FIELDS)

    def resolved(self) -> dict[str, Any]:
        """Every field with its default filled (``kind: none`` has no other field)."""
        if (self.kind or "conv") == "none":
            return {"kind": "none"}
        out = {**STEM_DEFAULTS, **self.to_dict()}
        out.setdefault("padding", out["kernel"] // 2)
        return out


@dataclass(frozen=True)
class BlockSpec:
    """One block: a registered block ``type`` and its cfg keys (flat in the YAML)."""

    type: str
    cfg: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A private copy behind a read-only view: the spec stays immutable.
        object.__setattr__(self, "cfg", MappingProxyType(copy.deepcopy(dict(self.cfg))))

    @classmethod
    def from_dict(cls, data: Any, path: str) -> BlockSpec:
        data = f.expect_map(data, path)
        if "type" not in data:
            raise SpecError(f.join(path, "type"), "is required (a registered block name)")
        if not isinstance(data["type"], str):
            raise SpecError(f.join(path, "type"), f"{data['type']!r} is not a block name")
        if "input_size" in data:
            raise SpecError(f.join(path, "input_size"),
                            "is set by the builder from shape inference; a spec may not set it")
        cfg = {k: f.plain(v, f.join(path, k)) for k, v in data.items() if k != "type"}
        return cls(data["type"], cfg)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **copy.deepcopy(dict(self.cfg))}

    def __hash__(self) -> int:
        return hash((self.type, repr(sorted(self.cfg.items()))))

    def __reduce__(self):  # a read-only mapping does not pickle; its dict does
        return (BlockSpec, (self.type, dict(self.cfg)))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, BlockSpec) and self.type == other.type
                and dict(self.cfg) == dict(other.cfg))


@dataclass(frozen=True)
class StageSpec:
    """Blocks at one width; the first block takes the stage stride (default 1)."""

    channels: int
    blocks: tuple[BlockSpec, ...]
    stride: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))

    @classmethod
    def from_dict(cls, data: Any, path: str) -> StageSpec:
        data = f.expect_map(data, path)
        f.check_keys(data, path, ["channels", "blocks"], ["stride"])
        blocks = f.expect_list(data["blocks"], f.join(path, "blocks"))
        return cls(
            channels=f.positive_int(data["channels"], f.join(path, "channels")),
            blocks=tuple(BlockSpec.from_dict(b, f.index(f.join(path, "blocks"), i))
                         for i, b in enumerate(blocks)),
            stride=_opt(data, path, "stride", f.positive_int),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"channels": self.channels}
        if self.stride is not None:
            out["stride"] = self.stride
        out["blocks"] = [b.to_dict() for b in self.blocks]
        return out

    @property
    def stride_or_default(self) -> int:
        return 1 if self.stride is None else self.stride


@dataclass(frozen=True)
class HiddenSpec:
    """One hidden layer of the head: Linear(width) -> act -> dropout (version 2)."""

    width: int
    act: str | None = None
    dropout: float | None = None

    _FIELDS = ("width", "act", "dropout")

    @classmethod
    def from_dict(cls, data: Any, path: str) -> HiddenSpec:
        data = f.expect_map(data, path)
        f.check_keys(data, path, ["width"], ["act", "dropout"])
        return cls(width=f.positive_int(data["width"], f.join(path, "width")),
                   act=_opt(data, path, "act", lambda v, p: f.one_of(v, p, HIDDEN_ACTS)),
                   dropout=_opt(data, path, "dropout", f.fraction))

    def to_dict(self) -> dict[str, Any]:
        return _given(self, self._FIELDS)

    def resolved(self) -> dict[str, Any]:
        return {**HIDDEN_DEFAULTS, **self.to_dict()}


@dataclass(frozen=True)
class HeadSpec:
    """Optional norm (batch | layer over channels) and ReLU on the last map, global
    average pool, dropout, then the ``hidden`` layers (each Linear(width), act,
    dropout; version 2) and Linear(classes). Pre-activation nets need
    ``norm: batch, act: relu``."""

    pool: str | None = None
    norm: str | None = None
    act: str | None = None
    dropout: float | None = None
    hidden: tuple[HiddenSpec, ...] | None = None

    _FIELDS = ("pool", "norm", "act", "dropout")

    def __post_init__(self) -> None:
        if self.hidden is not None:
            object.__setattr__(self, "hidden", tuple(self.hidden))

    @classmethod
    def from_dict(cls, data: Any, path: str = "head") -> HeadSpec:
        data = f.expect_map(data, path)
        f.check_keys(data, path, [], (*cls._FIELDS, "hidden"))
        hidden = None
        if "hidden" in data:
            layers = f.expect_list(data["hidden"], f.join(path, "hidden"), nonempty=False)
            hidden = tuple(HiddenSpec.from_dict(h, f.index(f.join(path, "hidden"), i))
                           for i, h in enumerate(layers))
        return cls(
            pool=_opt(data, path, "pool", lambda v, p: f.one_of(v, p, HEAD_POOLS)),
            norm=_opt(data, path, "norm", lambda v, p: f.one_of(v, p, HEAD_NORMS)),
            act=_opt(data, path, "act", lambda v, p: f.one_of(v, p, ACTS)),
            dropout=_opt(data, path, "dropout", f.fraction),
            hidden=hidden,
        )

    def to_dict(self) -> dict[str, Any]:
        out = _given(self, self._FIELDS)
        if self.hidden is not None:
            out["hidden"] = [h.to_dict() for h in self.hidden]
        return out

    def resolved(self) -> dict[str, Any]:
        """Defaults filled; ``hidden`` only when there is a hidden layer, so a head
        without one resolves (and hashes) as in version 1."""
        out = {**HEAD_DEFAULTS, **_given(self, self._FIELDS)}
        if self.hidden:
            out["hidden"] = [h.resolved() for h in self.hidden]
        return out


_TOP_REQUIRED = ("version", "name", "input", "classes", "stem", "stages")
_TOP_OPTIONAL = ("head", "meta")


@dataclass(frozen=True)
class ModelSpec:
    """A whole network. Build it with ``build()``; compare networks with ``hash()``."""

    name: str
    input: InputSpec
    classes: int
    stem: StemSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec | None = None
    meta: Mapping[str, Any] | None = None
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if self.meta is not None:
            object.__setattr__(self, "meta", MappingProxyType(copy.deepcopy(dict(self.meta))))

    # -- plain values ------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, *, validate: bool = True) -> ModelSpec:
        """Parse a plain-value document; with ``validate`` (default) also run shape
        inference and every block's config check. Raises SpecError naming the path."""
        data = f.expect_map(data, "")
        f.check_keys(data, "", _TOP_REQUIRED, _TOP_OPTIONAL)
        version = data["version"]
        if not f.is_int(version) or version not in SPEC_VERSIONS:
            raise SpecError("version", f"{version!r} is not supported; "
                                       f"allowed: {', '.join(map(str, SPEC_VERSIONS))}")
        if not isinstance(data["name"], str) or not data["name"]:
            raise SpecError("name", f"{data['name']!r} is not a non-empty string")
        stages = f.expect_list(data["stages"], "stages")
        spec = cls(
            name=data["name"],
            input=InputSpec.from_dict(data["input"]),
            classes=f.positive_int(data["classes"], "classes"),
            stem=StemSpec.from_dict(data["stem"]),
            stages=tuple(StageSpec.from_dict(s, f.index("stages", i))
                         for i, s in enumerate(stages)),
            head=_opt(data, "", "head", HeadSpec.from_dict),
            meta=_opt(data, "", "meta", lambda v, p: f.expect_map(f.plain(v, p), p)),
            version=version,
        )
        if spec.head is not None and spec.head.hidden is not None and version < 2:
            raise SpecError("head.hidden", "needs version: 2 (version 1 heads have no "
                                           "hidden layers)")
        if validate:
            spec.resolve()
        return spec

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "name": self.name,
                               "input": self.input.to_dict(), "classes": self.classes,
                               "stem": self.stem.to_dict(),
                               "stages": [s.to_dict() for s in self.stages]}
        if self.head is not None:
            out["head"] = self.head.to_dict()
        if self.meta is not None:
            out["meta"] = copy.deepcopy(dict(self.meta))
        return out

    @classmethod
    def from_yaml(cls, text: str, *, validate: bool = True) -> ModelSpec:
        from .yamlio import parse_yaml
        return cls.from_dict(parse_yaml(text), validate=validate)

    def to_yaml(self) -> str:
        from .yamlio import dump_yaml
        return dump_yaml(self.to_dict())

    def save(self, path: Any) -> None:
        from pathlib import Path
        Path(path).write_text(self.to_yaml())

    # -- meaning -----------------------------------------------------------------
    def resolve(self):
        """Shape inference + every block's ``resolve_config``: the resolved network
        (search_space.validate.ResolvedSpec; treat it as read-only). Raises SpecError
        naming the path. Computed once per spec object: some blocks check slowly."""
        cached = self.__dict__.get("_resolved")
        if cached is None:
            from .validate import resolve_spec
            cached = resolve_spec(self)
            self.__dict__["_resolved"] = cached  # frozen dataclass: bypass __setattr__
        return cached

    def validate(self) -> ModelSpec:
        """Raise SpecError if this spec would not build; return it otherwise."""
        ModelSpec.from_dict(self.to_dict(), validate=False)  # types and structure
        self.resolve()
        return self

    def build(self):
        """The PyTorch module (``search_space.builder.SpecModel``; ``.spec`` is this)."""
        from .builder import build_model
        return build_model(self)

    def graph(self, *, costs: bool = True):
        """networkx DiGraph: nodes input, stem, s{i}.b{j}, head, output; see graph.py."""
        from .graph import build_graph
        return build_graph(self, costs=costs)

    def hash(self) -> str:
        """sha256 of the resolved network (name and meta excluded); see graph.py."""
        from .graph import spec_hash
        return spec_hash(self)

    # -- conveniences --------------------------------------------------------------
    def head_or_default(self) -> HeadSpec:
        return self.head if self.head is not None else HeadSpec()

    def blocks(self) -> Iterator[tuple[str, int, int, BlockSpec]]:
        """(node id ``s{i}.b{j}``, stage index, block index, block) in order."""
        for i, stage in enumerate(self.stages):
            for j, block in enumerate(stage.blocks):
                yield f"s{i}.b{j}", i, j, block

    def with_data(self, *, channels: int | None = None, size: tuple[int, int] | None = None,
                  classes: int | None = None, name: str | None = None) -> ModelSpec:
        """The same architecture for another dataset (input channels, size, classes);
        validated, because size-dependent blocks may refuse the new size."""
        spec = dataclasses.replace(
            self,
            input=InputSpec(self.input.channels if channels is None else channels,
                            self.input.size if size is None else tuple(size)),
            classes=self.classes if classes is None else classes,
            name=self.name if name is None else name)
        return spec.validate()

    def __hash__(self) -> int:
        import json
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __reduce__(self):  # pickles (Ray, multiprocessing) and deep-copies as plain data
        return (_from_plain, (self.to_dict(),))


def _from_plain(data: dict[str, Any]) -> ModelSpec:
    return ModelSpec.from_dict(data, validate=False)
