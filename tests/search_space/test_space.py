"""The searchable space: parsing errors, sampling always valid specs with stable
names, the exact size, and every shipped study space."""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml

import convattn
from search_space import ModelSpec, SearchSpace, SpecError
from search_space.spec import SPEC_VERSION

optuna.logging.set_verbosity(optuna.logging.WARNING)
STUDIES = Path(__file__).resolve().parents[2] / "studies"

# Knob choices per block type; only the keys a registered block accepts are used, so
# the rich space covers every block type registered now or later.
KNOBS: dict[str, dict[str, Any]] = {
    "aa": {"kappa": [0.25, 0.5], "upsilon": 0.5, "heads": [1, 2],
           "attention": ["relative", "linear", "local"], "position": ["none", "sine"]},
    "eaa": {"mode": ["concat", "replace"], "patch": [1, 2], "attention": ["local", "linear"],
            "heads": [1, 2]},
    "acmix": {"residual": ["basic", "bottleneck"], "heads": [1, 2], "kernel_att": [3, 7]},
    "cvt": {"heads": [1, 2], "mlp_ratio": [2, 4], "attention": ["full", "linear"]},
    "atc": {"conv": ["dwsep", "residual"], "heads": [1, 2]},
    "bottleneck": {"expansion": [2, 4]},
    "wide": {"dropout": [0.0, 0.1]},
}


def rich_space() -> dict[str, Any]:
    blocks = convattn.list_blocks()
    knobs = {}
    for t in blocks:
        accepted = convattn.block_class(t).defaults
        chosen = {k: v for k, v in KNOBS.get(t, {}).items() if k in accepted}
        if chosen:
            knobs[t] = chosen
    return {
        "name": "rich",
        "input": {"channels": 1, "size": [8, 8]},
        "classes": 10,
        "stem": {"kind": "conv", "channels": [8, 16], "kernel": 3},
        "stages": [
            {"channels": [8, 16], "depth": [1, 2], "stride": 1, "blocks": blocks},
            {"channels": [16, 32], "depth": [1, 2], "stride": [1, 2], "blocks": blocks,
             "share": "stage"},
        ],
        "knobs": knobs,
        "head": {"dropout": [0.0, 0.25]},
    }


SMALL: dict[str, Any] = {
    "input": {"channels": 1, "size": [6, 6]},
    "classes": 3,
    "stem": {"channels": [4, 8]},
    "stages": [
        {"channels": 8, "depth": [1, 2], "blocks": ["basic", "aa"]},
        {"channels": [8, 16], "stride": 2, "blocks": ["basic", "bottleneck"], "share": "stage"},
    ],
    "knobs": {"aa": {"dk": [4, 6], "dv": 6, "heads": [1, 2, 3],
                     "attention": ["relative", "linear"]},
              "bottleneck": {"expansion": [2, 4]}},
}


def space(data: dict[str, Any] | None = None, **changes: Any) -> SearchSpace:
    d = copy.deepcopy(SMALL if data is None else data)
    d.update(copy.deepcopy(changes))
    return SearchSpace.from_dict(d, strict=True)


def run_study(sp: SearchSpace, n: int, sampler: optuna.samplers.BaseSampler,
              directions: list[str] | None = None) -> list[tuple[optuna.trial.Trial, ModelSpec]]:
    """Sample n specs through real ask/tell on an in-memory study."""
    study = optuna.create_study(sampler=sampler, directions=directions or ["minimize"])
    out = []
    for _ in range(n):
        trial = study.ask()
        spec = sp.sample(trial)
        params = sum(s.channels for s in spec.stages)
        study.tell(trial, [float(params)] * len(directions or ["minimize"]))
        out.append((trial, spec))
    return out


# -- sampling ---------------------------------------------------------------------------------
def test_rich_space_samples_valid_specs_that_build():
    sp = SearchSpace.from_dict(rich_space(), strict=True)  # and has no dead choice
    samples = run_study(sp, 200, optuna.samplers.RandomSampler(seed=0))
    seen_types = set()
    for n, (_, spec) in enumerate(samples):
        ModelSpec.from_dict(spec.to_dict())  # validates on its own
        model = spec.build()
        if n % 20 == 0:  # a forward pass on a tenth of them keeps the test fast
            with torch.no_grad():
                assert model.eval()(torch.randn(1, 1, 8, 8)).shape == (1, 10)
        seen_types |= {b.type for s in spec.stages for b in s.blocks}
    assert seen_types == set(convattn.list_blocks())
    assert len({spec.hash() for _, spec in samples}) > 150  # a large space: few repeats


NAME = re.compile(r"^(stem|head)\.\w+$|^s\d+\.(channels|stride|depth|type)(\[.+\])?$"
                  r"|^s\d+\.(b\d+\.)?(type|\w+\.\w+)(\[.+\])?$")


def test_parameter_names_are_hierarchical_and_choices_plain():
    sp = SearchSpace.from_dict(rich_space())
    for trial, _ in run_study(sp, 60, optuna.samplers.RandomSampler(seed=1)):
        for name, value in trial.params.items():
            assert NAME.match(name), name
            assert isinstance(value, (int, str)) and not isinstance(value, bool), (name, value)
    # share: stage -> one type per stage (no per-block name); share: block -> per block
    names = {n for t, _ in run_study(sp, 30, optuna.samplers.RandomSampler(seed=2))
             for n in t.params}
    assert "s0.b0.type" in names and "s1.type" in names
    assert not any(re.match(r"s1\.b\d+\.", n) for n in names)


def test_share_stage_repeats_one_block():
    sp = SearchSpace.from_dict(rich_space())
    for _, spec in run_study(sp, 40, optuna.samplers.RandomSampler(seed=3)):
        blocks = spec.stages[1].blocks
        assert all(b == blocks[0] for b in blocks)


def test_filtered_choices_carry_their_list_in_the_name():
    # aa: with dk = 4 heads 3 does not divide (offered [1, 2]); with dk = 6 all three do
    sp = space()
    samples = run_study(sp, 60, optuna.samplers.RandomSampler(seed=0))
    names = {n for t, _ in samples for n in t.params}
    assert "s0.b0.aa.heads[1,2]" in names
    assert "s0.b0.aa.heads" in names
    heads = {b.cfg["dk"]: set() for _, s in samples for b in s.stages[0].blocks if b.type == "aa"}
    for _, spec in samples:
        for b in spec.stages[0].blocks:
            if b.type == "aa":
                heads[b.cfg["dk"]].add(b.cfg["heads"])
    assert heads == {4: {1, 2}, 6: {1, 2, 3}}


def test_dead_knob_choices_are_rejected_with_the_reason():
    d = copy.deepcopy(SMALL)
    d["knobs"]["aa"]["heads"] = [1, 2, 4, 3]
    # dv = 6 everywhere: 4 never divides it
    with pytest.raises(SpecError) as info:
        SearchSpace.from_dict(d, strict=True)
    assert info.value.path == "space.knobs.aa.heads[2]"
    assert "never valid" in info.value.message and "heads" in info.value.message


def test_stage_override_of_knobs():
    d = copy.deepcopy(SMALL)
    d["stages"][0]["knobs"] = {"aa": {"heads": 2}}
    d["knobs"]["aa"]["heads"] = [1, 7]  # dead, but overridden wherever aa is used: unchecked
    sp = SearchSpace.from_dict(d, strict=True)
    names = {n for t, _ in run_study(sp, 30, optuna.samplers.RandomSampler(seed=0))
             for n in t.params}
    assert not any("heads" in n for n in names)
    for _, spec in run_study(sp, 30, optuna.samplers.RandomSampler(seed=0)):
        for b in spec.stages[0].blocks:
            if b.type == "aa":
                assert b.cfg["heads"] == 2


def test_float_choices_are_offered_as_strings():
    d = copy.deepcopy(SMALL)
    d["knobs"]["aa"] = {"kappa": [0.25, 0.5], "upsilon": 0.5, "heads": [1, 2],
                        "attention": ["relative", "linear"]}
    trial = optuna.trial.FixedTrial({
        "stem.channels": 8, "s0.depth": 1, "s0.b0.type": "aa", "s0.b0.aa.kappa": "0.25",
        "s0.b0.aa.heads": 2, "s0.b0.aa.attention": "linear", "s1.channels": 16,
        "s1.type": "bottleneck", "s1.bottleneck.expansion": 4})
    spec = SearchSpace.from_dict(d).sample(trial)
    assert spec.stem.channels == 8
    assert spec.stages[0].blocks[0].to_dict() == {"type": "aa", "kappa": 0.25, "upsilon": 0.5,
                                                  "heads": 2, "attention": "linear"}
    assert spec.stages[1].channels == 16 and spec.stages[1].stride == 2
    assert spec.stages[1].blocks[0].to_dict() == {"type": "bottleneck", "expansion": 4}
    assert spec.head is None  # the space names no head: the spec default applies
    assert spec.name.startswith("sampled-") and spec.name.endswith(spec.hash()[:12])


def test_same_seed_same_specs():
    a = [s.to_dict() for _, s in run_study(space(), 20, optuna.samplers.RandomSampler(seed=5))]
    b = [s.to_dict() for _, s in run_study(space(), 20, optuna.samplers.RandomSampler(seed=5))]
    assert a == b


@pytest.mark.parametrize("sampler, directions", [
    (lambda: optuna.samplers.TPESampler(seed=0, n_startup_trials=5), None),
    (lambda: optuna.samplers.NSGAIISampler(seed=0, population_size=6), ["minimize"] * 2),
], ids=["tpe", "nsga2"])
def test_model_based_samplers_accept_the_names(sampler, directions):
    # the same name always has the same choice list, or Optuna raises here
    samples = run_study(SearchSpace.from_dict(rich_space()), 25, sampler(), directions)
    assert len(samples) == 25


# -- size -------------------------------------------------------------------------------------
def all_valid_specs(d: dict[str, Any]) -> set[str]:
    """Brute force, independent of space.py: every spec the space's choices spell,
    kept if it validates; returned as canonical JSON of the spec document."""
    import json

    def options(v):
        return v if isinstance(v, list) else [v]

    def block_docs(t, stage):
        knobs = {**d.get("knobs", {}).get(t, {}), **stage.get("knobs", {}).get(t, {})}
        keys = list(knobs)
        for values in itertools.product(*(options(knobs[k]) for k in keys)):
            yield {"type": t, **dict(zip(keys, values, strict=True))}

    def stage_docs(stage):
        blocks = options(stage["blocks"])
        for c, s, depth in itertools.product(options(stage["channels"]),
                                             options(stage.get("stride", 1)),
                                             options(stage.get("depth", 1))):
            per_block = [b for t in blocks for b in block_docs(t, stage)]
            if stage.get("share", "block") == "stage":
                rows = [[b] * depth for b in per_block]
            else:
                rows = [list(r) for r in itertools.product(per_block, repeat=depth)]
            for row in rows:
                out = {"channels": c, "blocks": row}
                if "stride" in stage:
                    out["stride"] = s
                yield out

    found = set()
    stems = [dict(zip(d["stem"], v, strict=True))
             for v in itertools.product(*(options(x) for x in d["stem"].values()))]
    for stem in stems:
        for stages in itertools.product(*(list(stage_docs(s)) for s in d["stages"])):
            doc = {"version": SPEC_VERSION, "name": "x", "input": d["input"],
                   "classes": d["classes"], "stem": stem, "stages": list(stages)}
            try:
                ModelSpec.from_dict(doc)
            except SpecError:
                continue
            found.add(json.dumps(doc, sort_keys=True))
    return found


TINY: dict[str, Any] = {
    "input": {"channels": 1, "size": [6, 6]},
    "classes": 3,
    "stem": {"channels": 4},
    "stages": [
        {"channels": 8, "depth": [1, 2], "blocks": ["basic", "aa"]},
        {"channels": 16, "stride": 2, "depth": [1, 2], "blocks": ["basic", "bottleneck"],
         "share": "stage"},
    ],
    "knobs": {"aa": {"dk": [4, 6], "dv": 6, "heads": [1, 2, 3]},
              "bottleneck": {"expansion": [2, 4]}},
}


class TreeTrial:
    """Walks the define-by-run choice tree: follows ``path`` (choice indices), takes
    choice 0 past its end, and records how many choices each step had."""

    def __init__(self, path: list[int]):
        self.path, self.widths = list(path), []

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        n = len(self.widths)
        if n == len(self.path):
            self.path.append(0)
        self.widths.append(len(choices))
        return choices[self.path[n]]


def every_sample(sp: SearchSpace) -> list[ModelSpec]:
    """Every spec ``sample`` can return, by exhausting the choice tree."""
    out, path = [], []
    while True:
        trial = TreeTrial(path)
        out.append(sp.sample(trial))
        path = trial.path
        while path and path[-1] + 1 == trial.widths[len(path) - 1]:
            path = path[:-1]
        if not path:
            return out
        path[-1] += 1


def test_size_is_exact_and_samples_are_exactly_the_valid_specs():
    import json

    valid = all_valid_specs(TINY)
    sp = space(TINY)
    assert sp.size() == len(valid)
    specs = every_sample(sp)
    docs = []
    for spec in specs:
        doc = spec.to_dict()
        doc["name"] = "x"
        doc.pop("meta")
        docs.append(json.dumps(doc, sort_keys=True))
    assert len(docs) == len(set(docs))  # no two choice paths give the same spec
    assert set(docs) == valid


def test_size_by_hand():
    # stage 0 (per block): basic, or aa with dk 4 (heads 1, 2) or dk 6 (heads 1, 2, 3):
    # 6 per block, depth 1 or 2 -> 6 + 36; stage 1 (one type for the stage): basic or
    # bottleneck with expansion 2 or 4 -> 3, depth 1 or 2 -> 6
    assert space(TINY).size() == (6 + 36) * 6


def test_size_counts_head_choices_and_depth():
    base = space().size()
    assert space(head={"dropout": [0.0, 0.1, 0.2]}).size() == 3 * base


# -- parsing errors ---------------------------------------------------------------------------
@pytest.mark.parametrize("change, path, words", [
    ({"colour": 1}, "space.colour", "unknown key"),
    ({"version": 3}, "space.version", "allowed: 1, 2"),
    ({"stem": {"kind": ["conv", "none"], "channels": 8}}, "space.stem.kind", "must be fixed"),
    ({"stem": {"channels": [8, 0]}}, "space.stem.channels[1]", "positive int"),
    ({"stem": {"channels": [8, 8]}}, "space.stem.channels[1]", "duplicate choice"),
    ({"stem": {"channels": []}}, "space.stem.channels", "must not be empty"),
    ({"head": {"dropout": [0.0, 1.5]}}, "space.head.dropout[1]", "[0, 1)"),
    ({"knobs": {"nope": {}}}, "space.knobs.nope", "unknown block 'nope'; known:"),
    ({"knobs": {"aa": {"colour": [1, 2]}}}, "space.knobs.aa.colour",
     "unknown key for block 'aa'; allowed:"),
    ({"knobs": {"aa": {"input_size": [4, 4]}}}, "space.knobs.aa.input_size", "unknown key"),
])
def test_space_errors_name_the_field(change, path, words):
    with pytest.raises(SpecError) as info:
        space(**change)
    assert info.value.path == path, str(info.value)
    assert words in info.value.message


@pytest.mark.parametrize("stage_change, path, words", [
    ({"blocks": ["basic", "aa", "foo"]}, "space.stages[1].blocks[2]",
     "unknown block 'foo'; known:"),
    ({"blocks": ["basic", "basic"]}, "space.stages[1].blocks[1]", "duplicate block"),
    ({"depth": [1, 0]}, "space.stages[1].depth[1]", "positive int"),
    ({"share": "network"}, "space.stages[1].share", "allowed: block, stage"),
    ({"width": 3}, "space.stages[1].width", "unknown key"),
    ({"stride": [2, 3]}, "space.stages[1].stride[1]", "never leads to a valid network"),
])
def test_stage_errors_name_the_field(stage_change, path, words):
    d = copy.deepcopy(SMALL)
    d["stages"][1].update(stage_change)
    with pytest.raises(SpecError) as info:
        SearchSpace.from_dict(d, strict=True)
    assert info.value.path == path, str(info.value)
    assert words in info.value.message


def test_unusable_block_type_is_rejected():
    d = copy.deepcopy(SMALL)
    # dk = 4 and only 3 heads: aa never validates
    d["knobs"]["aa"].update(heads=3, dk=4)
    with pytest.raises(SpecError) as info:
        SearchSpace.from_dict(d, strict=True)
    assert info.value.path == "space.stages[0].blocks[1]"
    assert "block 'aa' can never be used here" in info.value.message


def test_space_without_any_valid_network():
    d = copy.deepcopy(SMALL)
    d["stages"][0]["blocks"] = ["aa"]
    d["knobs"]["aa"].update(heads=3, dk=4)
    with pytest.raises(SpecError, match=r"^space: no valid architecture: .*heads"):
        SearchSpace.from_dict(d)  # checked even when not strict


def test_dead_choices_are_only_filtered_when_not_strict():
    d = copy.deepcopy(SMALL)
    d["knobs"]["aa"]["heads"] = [1, 2, 4, 3]
    sp = SearchSpace.from_dict(d)
    with pytest.raises(SpecError, match=r"heads\[2\]"):
        sp.check_choices()
    for _, spec in run_study(sp, 40, optuna.samplers.RandomSampler(seed=0)):
        assert all(b.cfg.get("heads") != 4 for st in spec.stages for b in st.blocks)


def test_to_dict_round_trip():
    assert space().to_dict() == SMALL
    assert SearchSpace.from_dict(space().to_dict()).size() == space().size()


# -- shipped spaces ---------------------------------------------------------------------------
def shipped_spaces() -> list[Path]:
    return sorted(p for p in STUDIES.glob("*.yaml")
                  if isinstance(yaml.safe_load(p.read_text()), dict)
                  and "space" in yaml.safe_load(p.read_text()))


@pytest.mark.parametrize("path", shipped_spaces(), ids=lambda p: p.name)
def test_shipped_spaces_sample_valid_specs(path):
    sp = SearchSpace.from_dict(yaml.safe_load(path.read_text())["space"])
    specs = [spec for _, spec in run_study(sp, 100, optuna.samplers.RandomSampler(seed=0))]
    assert len({s.hash() for s in specs}) > 1
    # sample() validated every spec; a fifth also re-validate from their documents and
    # build (on meta: structure only), to keep this quick (aa's check is slow)
    built = specs[::5]
    sizes = []
    for spec in built:
        ModelSpec.from_dict(spec.to_dict())
        with torch.device("meta"):
            sizes.append(sum(p.numel() for p in spec.build().parameters()))
    smallest = built[sizes.index(min(sizes))]  # and the smallest really runs
    model = smallest.build().eval()
    with torch.no_grad():
        out = model(torch.randn(1, *smallest.input.shape))
    assert out.shape == (1, smallest.classes)
    assert sum(p.numel() for p in model.parameters()) == min(sizes)
