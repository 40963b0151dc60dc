"""The searchable space: which specs a search may propose, and how to sample one.

    input: {channels: 1, size: [8, 8]}
    classes: 10
    stem: {kind: conv, channels: [16, 32], kernel: 3}    # a list is a choice
    stages:
      - {channels: [16, 32], depth: [1, 2], stride: 1, blocks: [basic, aa]}
      - channels: [32, 64]
        depth: [1, 2]
        stride: 2
        blocks: [basic, aa, eaa]
        share: stage                          # one type + knobs for the whole stage
        knobs: {aa: {heads: [1, 2]}}          # per-stage override of the shared knobs
    knobs:                                    # shared attention knob choices, per block type
      aa: {kappa: [0.25, 0.5], heads: [2, 4], attention: [relative, linear]}
    head: {dropout: [0.0, 0.1]}

Design (the choices a user must know):

- Any value in ``stem``, ``head``, ``knobs``, and a stage's ``channels``, ``depth``
  and ``stride`` may be a list of choices; a scalar is fixed. ``input``,
  ``classes`` and stem ``kind`` are fixed. Keys a space does not name are left
  out of the sampled spec, so the block or spec default applies.
- Block types are chosen per block by default (``share: block``: every block of
  a stage picks its type from the stage's ``blocks`` and its own knobs); with
  ``share: stage`` the stage picks one type and one knob set for all its blocks.
- ``sample(trial)`` is define-by-run over ``trial.suggest_categorical`` with
  hierarchical names: ``stem.channels``, ``s{i}.channels``, ``s{i}.stride``,
  ``s{i}.depth``, ``s{i}.b{j}.type``, ``s{i}.b{j}.{type}.{knob}`` (``s{i}.type``,
  ``s{i}.{type}.{knob}`` with ``share: stage``), ``head.{key}``. Choices are
  ints or strings (other values, e.g. floats, are offered by their JSON text
  ``"0.25"``), so any Optuna storage and the dashboard show them as written.
- Every returned spec is valid. Before each suggestion the choices are filtered
  to those that still complete to a valid network (each block's
  ``resolve_config`` at its real in/out channels, stride and map size, and every
  later stage). Optuna needs one choice list per parameter name, so a filtered
  parameter carries its allowed list in the name: ``s1.b0.aa.heads[1,2]`` when
  only 1 and 2 divide; unfiltered parameters keep the plain name, and a choice
  left with one value is not suggested at all (it is fixed in that context).
- ``from_dict`` rejects, with the field path, unknown keys and block names,
  knob keys a block does not accept, and a space with no valid network;
  ``check_choices()`` (or ``from_dict(..., strict=True)``) also rejects dead
  choices: a value valid nowhere in the space (``heads: 3`` where no depth is
  divisible by 3). It checks every block context, which costs seconds for
  spaces of blocks that validate slowly, so it is opt-in; run it once where a
  study is written or loaded by the driver, not in every worker.
- ``size()`` is the exact number of distinct specs ``sample`` can return
  (computed on first call; it also enumerates every context).
- The first samples fill a per-context cache; later ones are a few
  milliseconds (mostly the final validation of the spec).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from collections.abc import Mapping
from typing import Any

from convattn import block_class, list_blocks

from . import fields as f
from .choices import Choice, Combo, assign, parse_choice, parse_choices, pick
from .errors import SpecError
from .feasible import STAGE_KEYS, Ctx, Feasibility, StageSpace, down
from .spec import SPEC_VERSIONS, BlockSpec, HeadSpec, InputSpec, ModelSpec, StageSpec, StemSpec

#: at most this many knob combinations per block type (they are enumerated).
MAX_COMBOS = 20_000
SHARE_MODES = ("block", "stage")


def _check_stem_value(kind: str, key: str, value: Any, path: str) -> None:
    base = {"kind": kind} if kind == "none" else {"kind": kind, "channels": 1}
    try:
        StemSpec.from_dict({**base, key: value}, "stem")
    except SpecError as err:
        raise SpecError(path, err.message) from None


def _check_head_value(key: str, value: Any, path: str) -> None:
    try:
        HeadSpec.from_dict({key: value}, "head")
    except SpecError as err:
        raise SpecError(path, err.message) from None


def _knob_space(data: Any, path: str) -> dict[str, tuple[Choice, ...]]:
    """``{block type: {cfg key: value | [choices]}}`` checked against the blocks."""
    data = f.expect_map(data, path)
    known = list_blocks()
    out = {}
    for btype, knobs in data.items():
        bpath = f.join(path, btype)
        if btype not in known:
            raise SpecError(bpath, f"unknown block {btype!r}; known: {', '.join(known)}")
        allowed = sorted(block_class(btype).defaults)
        knobs = f.expect_map(knobs, bpath)
        for key in knobs:
            if key not in allowed:
                raise SpecError(f.join(bpath, key),
                                f"unknown key for block {btype!r}; allowed: "
                                f"{', '.join(allowed) or 'none'}")
        out[btype] = parse_choices(knobs, bpath)
        n = math.prod(len(c.values) for c in out[btype])
        if n > MAX_COMBOS:
            raise SpecError(bpath, f"{n} knob combinations; at most {MAX_COMBOS} per block type")
    return out


class SearchSpace:
    """A space of model specs; build with ``from_dict``; ``sample(trial)`` proposes one."""

    def __init__(self, data: Mapping[str, Any], path: str = "space", *, strict: bool = False):
        self._raw = copy.deepcopy(dict(data))
        self._path = path
        self._parse(f.expect_map(data, path), path)
        self._feasible = Feasibility(self.input, self.stem, self.stages)
        if not self._feasible.stems():
            raise SpecError(path, "no valid architecture: " + self._feasible.first_failure())
        self._size: int | None = None
        if strict:
            self.check_choices()

    @classmethod
    def from_dict(cls, data: Any, path: str = "space", *, strict: bool = False) -> SearchSpace:
        """Parse and check a space; SpecError names the field (``space.stages[1]...``).
        ``strict`` also rejects dead choices (see ``check_choices``)."""
        return cls(f.expect_map(data, path), path, strict=strict)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._raw)

    # -- parsing -------------------------------------------------------------------
    def _parse(self, data: Mapping[str, Any], path: str) -> None:
        f.check_keys(data, path, ["input", "classes", "stem", "stages"],
                     ["version", "name", "knobs", "head"])
        if "version" in data and (not f.is_int(data["version"])
                                  or data["version"] not in SPEC_VERSIONS):
            raise SpecError(f.join(path, "version"), f"{data['version']!r} is not supported; "
                                                     f"allowed: "
                                                     f"{', '.join(map(str, SPEC_VERSIONS))}")
        self.name = data.get("name", "sampled")
        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f.join(path, "name"), f"{self.name!r} is not a non-empty string")
        self.input = InputSpec.from_dict(data["input"], f.join(path, "input"))
        self.classes = f.positive_int(data["classes"], f.join(path, "classes"))

        stem_path = f.join(path, "stem")
        stem = f.expect_map(data["stem"], stem_path)
        kind = stem.get("kind", "conv")
        if isinstance(kind, list):
            raise SpecError(f.join(stem_path, "kind"), "must be fixed, not a choice")
        f.one_of(kind, f.join(stem_path, "kind"), ("conv", "none"))
        allowed = (["kind"] if kind == "none"
                   else [k for k in StemSpec._FIELDS if k != "channels"])
        f.check_keys(stem, stem_path, ["channels"] if kind == "conv" else [], allowed)
        self.stem = parse_choices(stem, stem_path,
                                  lambda k, v, p: _check_stem_value(kind, k, v, p))

        head_path = f.join(path, "head")
        head = f.expect_map(data.get("head", {}), head_path)
        f.check_keys(head, head_path, [], HeadSpec._FIELDS)
        self.head = parse_choices(head, head_path, _check_head_value)
        self._head_given = "head" in data

        knobs_path = f.join(path, "knobs")
        shared = _knob_space(data.get("knobs", {}), knobs_path)
        stages = f.expect_list(data["stages"], f.join(path, "stages"))
        self.stages = tuple(self._parse_stage(s, f.index(f.join(path, "stages"), i), shared,
                                              knobs_path)
                            for i, s in enumerate(stages))

    def _parse_stage(self, data: Any, path: str, shared: Mapping[str, tuple[Choice, ...]],
                     knobs_path: str) -> StageSpace:
        data = f.expect_map(data, path)
        f.check_keys(data, path, ["channels", "blocks"], ["depth", "stride", "share", "knobs"])
        ints = {k: parse_choice(data.get(k, 1), f.join(path, k), k,
                                check=lambda v, p: f.positive_int(v, p)) for k in STAGE_KEYS}
        bpath = f.join(path, "blocks")
        listed = isinstance(data["blocks"], list)
        names = f.expect_list(data["blocks"] if listed else [data["blocks"]], bpath)
        known = list_blocks()
        for i, name in enumerate(names):
            p = f.index(bpath, i) if listed else bpath
            if name not in known:
                raise SpecError(p, f"unknown block {name!r}; known: {', '.join(known)}")
            if name in names[:i]:
                raise SpecError(p, f"duplicate block {name!r}")
        share = f.one_of(data.get("share", "block"), f.join(path, "share"), SHARE_MODES)
        override = _knob_space(data.get("knobs", {}), f.join(path, "knobs"))
        knobs, where = {}, {}
        for btype in names:
            merged = {}
            for c in shared.get(btype, ()):
                merged[c.key] = c
                where[(btype, c.key)] = f.join(f.join(knobs_path, btype), c.key)
            for c in override.get(btype, ()):
                merged[c.key] = c
                where[(btype, c.key)] = f.join(f.join(f.join(path, "knobs"), btype), c.key)
            knobs[btype] = tuple(merged.values())
        return StageSpace(ints["channels"], ints["stride"], ints["depth"], tuple(names), share,
                          knobs, where)

    # -- size and dead choices ---------------------------------------------------------
    def size(self) -> int:
        """Exact number of distinct specs ``sample`` can return (a few of them may still
        describe the same network, e.g. a knob the chosen attention ignores; the spec
        hash tells those apart)."""
        if self._size is None:
            heads = math.prod(len(c.values) for c in self.head)
            self._size = heads * sum(self._feasible.count(0, shape[0], shape[1:])
                                     for *_, shape in self._feasible.stems())
        return self._size

    def check_choices(self) -> None:
        """Reject a choice that no valid network uses, naming it and why it fails."""
        used = self._feasible.used()
        errors = self._feasible.errors
        for c in self.stem:
            for k, v in enumerate(c.values):
                if k not in used.get(("stem", c.key), ()):
                    raise SpecError(c.path(f.join(f.join(self._path, "stem"), c.key), k),
                                    f"{v!r} never leads to a valid network")
        shared: dict[str, tuple[Choice, set[int], int, str]] = {}
        for i, stage in enumerate(self.stages):
            spath = f.index(f.join(self._path, "stages"), i)
            for key in STAGE_KEYS:
                c = stage.choice(key)
                for k, v in enumerate(c.values):
                    if k not in used.get((i, key), ()):
                        raise SpecError(c.path(f.join(spath, key), k),
                                        f"{v!r} never leads to a valid network")
            for k, t in enumerate(stage.blocks):
                if k not in used.get((i, "type"), ()):
                    why = errors.get((i, t), "no valid knob combination")
                    raise SpecError(f.index(f.join(spath, "blocks"), k),
                                    f"block {t!r} can never be used here: {why}")
                for choice in stage.knobs[t]:
                    path = stage.knob_paths[(t, choice.key)]
                    hit = used.get((i, t, choice.key), set())
                    if path.startswith(f.join(self._path, "knobs") + "."):
                        # a shared knob: dead only if no stage that uses it uses a value
                        prev = shared.get(path, (choice, set(), i, t))
                        shared[path] = (choice, prev[1] | hit, prev[2], prev[3])
                    else:
                        self._dead(path, choice, hit, i, t)
        for path, (choice, hit, i, t) in shared.items():
            self._dead(path, choice, hit, i, t)

    def _dead(self, path: str, choice: Choice, hit: set[int], i: int, t: str) -> None:
        for k, v in enumerate(choice.values):
            if k not in hit:
                why = self._feasible.errors.get((i, t, choice.key, k), "no valid combination")
                raise SpecError(choice.path(path, k), f"{v!r} is never valid in this space: {why}")

    # -- sampling ------------------------------------------------------------------------
    def sample(self, trial: Any) -> ModelSpec:
        """A valid spec chosen by ``trial.suggest_categorical`` (Optuna Trial or
        FixedTrial), define-by-run; see the module docstring for the names."""
        feas = self._feasible
        stems = feas.stems()
        combo = pick(trial, "stem.", self.stem, [c for c, *_ in stems])
        stem, shape = next((doc, sh) for c, doc, sh in stems if c == combo)
        in_ch, size = shape[0], shape[1:]
        stages = []
        for i, stage in enumerate(self.stages):
            scombo = pick(trial, f"s{i}.", [stage.choice(k) for k in STAGE_KEYS],
                          feas.options(i, in_ch, size))
            c, s, d = stage.values(scombo)
            blocks: list[BlockSpec] = []
            for ctxs, count in stage.groups(in_ch, size, scombo):
                if stage.share == "stage":  # one type and knob set for all d blocks
                    blocks += [self._pick_block(trial, f"s{i}.", i, ctxs)] * d
                else:
                    for _ in range(count):
                        blocks.append(self._pick_block(trial, f"s{i}.b{len(blocks)}.", i, ctxs))
            # the stride is written when the space names it (default 1 otherwise)
            stride = s if "stride" in self._raw["stages"][i] else None
            stages.append(StageSpec(c, tuple(blocks), stride))
            in_ch, size = c, down(size, s)
        head_combos = list(itertools.product(*(range(len(c.values)) for c in self.head)))
        head = assign(self.head, pick(trial, "head.", self.head, head_combos))
        spec = ModelSpec(name=self.name, input=self.input, classes=self.classes,
                         stem=StemSpec.from_dict(stem), stages=tuple(stages),
                         head=HeadSpec.from_dict(head) if self._head_given else None,
                         meta={"source": f"sampled from search space {self.name!r}"})
        spec.validate()  # no tensors; a failure here is a bug in the filter
        named = dataclasses.replace(spec, name=f"{self.name}-{spec.hash()[:12]}")
        named.__dict__["_resolved"] = spec.resolve()  # the name is not part of it
        return named

    def _pick_block(self, trial: Any, prefix: str, i: int, ctxs: tuple[Ctx, ...]) -> BlockSpec:
        stage = self.stages[i]
        types = self._feasible.types(i, ctxs)
        (ti,) = pick(trial, prefix, [Choice("type", stage.blocks, True)],
                     [(stage.blocks.index(t),) for t in types])
        t = stage.blocks[ti]
        knobs = stage.knobs[t]
        combo: Combo = pick(trial, f"{prefix}{t}.", knobs, self._feasible.combos(i, t, ctxs))
        return BlockSpec(t, assign(knobs, combo))
