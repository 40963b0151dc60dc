"""Model spec: parsing, exact round-trips, error paths, loading, building."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch
import yaml

import search_space as ss
from search_space import ModelSpec, SpecError, load_spec

BASE: dict[str, Any] = {
    "version": 1,
    "name": "tiny",
    "input": {"channels": 3, "size": [12, 10]},
    "classes": 7,
    "stem": {"kind": "conv", "channels": 8, "kernel": 3, "stride": 1, "norm": "batch",
             "act": "relu", "pool": "max"},
    "stages": [
        {"channels": 8, "stride": 1, "blocks": [{"type": "basic"}, {"type": "basic"}]},
        {"channels": 16, "stride": 2,
         "blocks": [{"type": "bottleneck", "expansion": 2}, {"type": "wide", "dropout": 0.1}]},
    ],
    "head": {"pool": "avg", "norm": "batch", "act": "relu", "dropout": 0.0},
    "meta": {"source": "tests", "numbers": [1, 2.5, None], "nested": {"a": True}},
}

MINIMAL: dict[str, Any] = {
    "version": 1, "name": "min", "input": {"channels": 1, "size": [8, 8]}, "classes": 3,
    "stem": {"channels": 4}, "stages": [{"channels": 4, "blocks": [{"type": "basic"}]}],
}


def doc(**changes: Any) -> dict[str, Any]:
    d = copy.deepcopy(BASE)
    d.update(copy.deepcopy(changes))
    return d


def error_of(data: Any) -> SpecError:
    with pytest.raises(SpecError) as info:
        ModelSpec.from_dict(data)
    return info.value


# -- round trips -------------------------------------------------------------------------
@pytest.mark.parametrize("data", [BASE, MINIMAL], ids=["full", "minimal"])
def test_round_trip_is_exact(data):
    spec = ModelSpec.from_dict(data)
    assert spec.to_dict() == data
    # key order is kept too (what you read is what you write)
    assert list(spec.to_dict()) == list(data)
    assert list(spec.to_dict()["stem"]) == list(data["stem"])


def test_defaults_are_not_written_out():
    out = ModelSpec.from_dict(MINIMAL).to_dict()
    assert "head" not in out and "meta" not in out
    assert out["stem"] == {"channels": 4}
    assert "stride" not in out["stages"][0]


def test_yaml_round_trip():
    spec = ModelSpec.from_dict(BASE)
    text = spec.to_yaml()
    assert yaml.safe_load(text) == BASE
    assert ModelSpec.from_yaml(text) == spec
    # block entries are written one per line, readable
    assert "- {type: bottleneck, expansion: 2}" in text


def test_int_and_float_kept_as_written():
    d = doc(head={"dropout": 0})
    assert ModelSpec.from_dict(d).to_dict()["head"]["dropout"] == 0
    assert isinstance(ModelSpec.from_dict(d).to_dict()["head"]["dropout"], int)


def test_spec_is_frozen():
    spec = ModelSpec.from_dict(BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.classes = 3
    with pytest.raises(TypeError):
        spec.stages[1].blocks[0].cfg["expansion"] = 8
    with pytest.raises(TypeError):
        spec.meta["source"] = "x"
    # mutating what to_dict returned does not touch the spec
    out = spec.to_dict()
    out["stages"][1]["blocks"][0]["expansion"] = 8
    assert spec.stages[1].blocks[0].cfg["expansion"] == 2


def test_resolved_defaults():
    spec = ModelSpec.from_dict(MINIMAL)
    assert spec.stem.resolved() == {"kind": "conv", "channels": 4, "kernel": 3, "stride": 1,
                                    "padding": 1, "norm": "batch", "act": "relu",
                                    "pool": "none"}
    assert spec.head_or_default().resolved() == {"pool": "avg", "norm": "none", "act": "none",
                                                 "dropout": 0.0}
    assert spec.stages[0].stride_or_default == 1


# -- structural errors name the path ------------------------------------------------------
@pytest.mark.parametrize("change, path, words", [
    ({"version": 3}, "version", "allowed: 1, 2"),
    ({"version": True}, "version", "allowed: 1, 2"),
    ({"name": ""}, "name", "non-empty"),
    ({"classes": 0}, "classes", "positive int"),
    ({"classes": True}, "classes", "positive int"),
    ({"colour": "red"}, "colour", "allowed: version, name"),
    ({"input": {"channels": 3, "size": [32]}}, "input.size", "[H, W]"),
    ({"input": {"channels": 3, "size": [32, 32], "depth": 1}}, "input.depth", "unknown key"),
    ({"stem": {"kind": "patch", "channels": 8}}, "stem.kind", "allowed: conv, none"),
    ({"stem": {"kernel": 3}}, "stem.channels", "required"),
    ({"stem": {"channels": 8, "kernel": None}}, "stem.kernel", "not a positive int"),
    ({"stem": {"channels": 8, "pool": "avg"}}, "stem.pool", "allowed: max, none"),
    ({"stem": {"kind": "none", "channels": 8}}, "stem.channels", "allowed: kind"),
    ({"stages": []}, "stages", "must not be empty"),
    ({"stages": [{"channels": 8, "blocks": []}]}, "stages[0].blocks", "must not be empty"),
    ({"stages": [{"channels": 8, "blocks": [{"heads": 2}]}]}, "stages[0].blocks[0].type",
     "required"),
    ({"stages": [{"channels": "8", "blocks": [{"type": "basic"}]}]}, "stages[0].channels",
     "positive int"),
    ({"stages": [{"channels": 8, "stride": 0, "blocks": [{"type": "basic"}]}]},
     "stages[0].stride", "positive int"),
    ({"stages": [{"channels": 8, "blocks": [{"type": "basic", "input_size": [8, 8]}]}]},
     "stages[0].blocks[0].input_size", "set by the builder"),
    ({"head": {"norm": "group"}}, "head.norm", "allowed: batch, layer, none"),
    ({"head": {"dropout": 1.0}}, "head.dropout", "[0, 1)"),
    ({"head": None}, "head", "expected a mapping"),
    ({"meta": None}, "meta", "expected a mapping"),
])
def test_structural_errors_name_the_field(change, path, words):
    err = error_of(doc(**change))
    assert err.path == path
    assert words in err.message
    assert str(err).startswith(f"{path}: ")


def test_missing_top_level_key():
    d = doc()
    del d["classes"]
    assert error_of(d).path == "classes"


# -- semantic errors: the block's ConfigError with the block's path -------------------------
def stages_with(*blocks: dict[str, Any], channels: int = 16, stride: int = 1) -> dict[str, Any]:
    return doc(stages=[BASE["stages"][0],
                       {"channels": channels, "stride": stride, "blocks": list(blocks)}])


def test_unknown_block_type_lists_known():
    err = error_of(stages_with({"type": "basic"}, {"type": "nope"}))
    assert err.path == "stages[1].blocks[1].type"
    assert "unknown block 'nope'" in err.message and "basic" in err.message


def test_block_cfg_error_is_prefixed_with_block_path():
    err = error_of(stages_with({"type": "basic"}, {"type": "aa", "dk": 4, "dv": 4, "heads": 8}))
    assert err.path == "stages[1].blocks[1].heads"
    assert "8 does not divide" in err.message


def test_unknown_block_key_lists_allowed():
    err = error_of(stages_with({"type": "bottleneck", "expanse": 2}))
    assert err.path == "stages[1].blocks[0].expanse"
    assert "allowed" in err.message and "expansion" in err.message


def test_bad_stride_points_at_the_stage():
    err = error_of(stages_with({"type": "basic"}, stride=3))
    assert err.path == "stages[1].stride"
    assert "allowed" in err.message


def test_map_size_error_names_the_map():
    # No registered block refuses a map size today, so check the translation itself.
    from convattn import MapSizeError
    from search_space.validate import block_error

    err = block_error(MapSizeError("linformer only runs at 4x4"), "stages[2].blocks[1]",
                      "stages[2]", False, (2, 3))
    assert err.path == "stages[2].blocks[1]"
    assert err.message == "cannot run on its 2x3 input map: linformer only runs at 4x4"


def test_stem_that_does_not_fit():
    err = error_of(doc(input={"channels": 3, "size": [2, 2]},
                       stem={"channels": 8, "kernel": 7, "padding": 0}))
    assert err.path == "stem.kernel"


def test_invalid_spec_never_reaches_pytorch():
    spec = ModelSpec.from_dict(stages_with({"type": "aa", "dk": 4, "dv": 4, "heads": 8}),
                               validate=False)
    with pytest.raises(SpecError):
        spec.build()
    with pytest.raises(SpecError):
        spec.validate()


# -- loading ----------------------------------------------------------------------------------
def test_load_spec_from_path_dict_spec(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(BASE, sort_keys=False))
    from_path = load_spec(path)
    assert from_path == load_spec(str(path)) == load_spec(BASE)
    assert load_spec(from_path) is from_path


def test_load_spec_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc(classes=-1)))
    with pytest.raises(SpecError, match=r"bad\.yaml: classes: -1 is not a positive int"):
        load_spec(path)
    path.write_text("version: 1\nname: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad\.yaml: invalid YAML: line \d+"):
        load_spec(path)
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="cannot load a spec from int"):
        load_spec(3)


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_spec(path)


def test_load_zoo_delegates():
    pytest.importorskip("search_space.zoo")
    from search_space.zoo import list_zoo, load_zoo

    names = list_zoo()
    if not names:
        pytest.skip("no zoo entries yet")
    assert load_spec(f"zoo:{names[0]}") == load_zoo(names[0])


# -- building -----------------------------------------------------------------------------------
def test_build_runs_with_inferred_shape():
    spec = ModelSpec.from_dict(BASE)
    model = spec.build()
    assert model.spec is spec
    x = torch.randn(2, *spec.input.shape)
    assert model(x).shape == (2, 7)
    res = spec.resolve()
    assert tuple(model.forward_features(x).shape[1:]) == res.feature_shape
    assert res.feature_shape == (16, 3, 3)  # 12x10 -max-pool-> 6x5 -stride 2-> 3x3


def test_with_data_adapts_input_and_classes():
    spec = ModelSpec.from_dict(BASE).with_data(channels=1, size=(16, 16), classes=100)
    assert spec.build()(torch.zeros(1, 1, 16, 16)).shape == (1, 100)


def test_public_api_names():
    for name in ("ModelSpec", "StemSpec", "StageSpec", "BlockSpec", "HeadSpec", "InputSpec",
                 "SpecError", "load_spec", "SearchSpace", "spec_hash", "build_graph"):
        assert hasattr(ss, name)


def test_spec_and_error_pickle():
    # Ray ships specs and errors between processes
    import pickle

    spec = ModelSpec.from_dict(BASE)
    back = pickle.loads(pickle.dumps(spec))
    assert back == spec and back.hash() == spec.hash()
    assert copy.deepcopy(spec) == spec
    err = pickle.loads(pickle.dumps(SpecError("stages[0]", "bad", "f.yaml")))
    assert str(err) == "f.yaml: stages[0]: bad" and err.path == "stages[0]"
