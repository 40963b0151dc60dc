"""Spec format version 2: hidden head layers, conv ``bias`` and channel dropout, with
every version 1 document loading, building and hashing exactly as before."""

from __future__ import annotations

import copy

import pytest
import torch

from search_space import SpecError, load_spec
from search_space.zoo import load_zoo

#: hashes of zoo entries computed by the code BEFORE version 2 existed (commit
#: e942817): stored runs deduplicate trials by hash, so these must never move.
V1_HASHES = {
    "resnet18-cifar": "19bb5bc92c422fbd2602bbfa864f87632a16ba490b96ea6c6dc79523efd71b19",
    "wrn-28-10": "bd7002931f6d9d6c4fbfd07d5947e45b8cc6863d6513a62208176e6e763daf30",
    "aa-wrn-28-10": "7239bb70ccc18add716d90514c5bf7d9776ae566466d0e86a013a1743f8028d1",
    "eaanet-concat-linformer":
        "a0b76e796fded86db416d670c5c6e5cfa66d4d068b71a528e1c2202bb28ebaf9",
    "atc-3": "f6c73a0969a9e60ec45e09bfb92d05509fd7a902928c985f49088ed36a7186a0",
}

C, CLASSES = 16, 5
BASE = {
    "version": 2, "name": "v2", "input": {"channels": 3, "size": [8, 8]}, "classes": CLASSES,
    "stem": {"channels": 8, "norm": "none", "act": "none"},
    "stages": [{"channels": C, "stride": 2, "blocks": [{"type": "wide", "dropout": 0.2}]}],
    "head": {"norm": "batch", "act": "relu", "dropout": 0.25},
}


def doc(**changes) -> dict:
    d = copy.deepcopy(BASE)
    for key, value in changes.items():
        if key == "block":
            d["stages"][0]["blocks"][0].update(value)
        elif key == "head":
            d["head"].update(value)
        else:
            d[key] = value
    return d


def error_of(data: dict) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec(data)
    return info.value


@pytest.mark.parametrize("name", sorted(V1_HASHES))
def test_version_1_zoo_specs_keep_their_hash(name):
    spec = load_zoo(name)
    assert spec.version == 1 and spec.to_dict()["version"] == 1  # read as written
    assert spec.hash() == V1_HASHES[name]


def test_new_keys_at_their_default_are_the_version_1_network():
    v1 = load_spec(doc(version=1))
    explicit = load_spec(doc(block={"bias": False, "dropout_kind": "element"},
                             head={"hidden": []}))
    assert v1.hash() == explicit.hash()
    assert (sum(p.numel() for p in v1.build().parameters())
            == sum(p.numel() for p in explicit.build().parameters()))
    assert load_spec(doc(block={"bias": True})).hash() != v1.hash()
    assert load_spec(doc(block={"dropout_kind": "channel"})).hash() != v1.hash()
    no_drop = load_spec(doc(block={"dropout": 0.0}))  # without dropout its kind is moot
    assert load_spec(doc(block={"dropout": 0.0, "dropout_kind": "channel"})).hash() \
        == no_drop.hash()


def test_hidden_layers_params_and_macs_are_counted():
    hidden = [{"width": 32, "act": "gelu", "dropout": 0.1}, {"width": 12}]
    spec = load_spec(doc(head={"hidden": hidden}))
    plain = load_spec(doc())
    model = spec.build()
    # closed form: Linear(C, 32) + Linear(32, 12) + Linear(12, classes) replace
    # Linear(C, classes)
    extra = (C * 32 + 32) + (32 * 12 + 12) + (12 * CLASSES + CLASSES) - (C * CLASSES + CLASSES)
    assert (sum(p.numel() for p in model.parameters())
            == sum(p.numel() for p in plain.build().parameters()) + extra)
    head = spec.graph().nodes["head"]
    assert head["macs"] == C * 32 + 32 * 12 + 12 * CLASSES
    assert head["params"] == sum(p.numel() for p in model.head.parameters())
    kinds = [type(m) for m in model.head.hidden]
    assert kinds == [torch.nn.Linear, torch.nn.GELU, torch.nn.Dropout, torch.nn.Linear,
                     torch.nn.ReLU]  # act defaults to relu, dropout 0 adds no module
    assert model.eval()(torch.randn(2, 3, 8, 8)).shape == (2, CLASSES)
    assert spec.resolve().head["hidden"][1] == {"width": 12, "act": "relu", "dropout": 0.0}
    assert load_spec(spec.to_dict()).to_dict() == spec.to_dict()  # round trip


@pytest.mark.parametrize("change,path,says", [
    ({"version": 1, "head": {"hidden": [{"width": 8}]}}, "head.hidden", "version: 2"),
    ({"head": {"hidden": [{"width": 8}, {"width": 0}]}}, "head.hidden[1].width", "positive"),
    ({"head": {"hidden": [{"width": 8, "act": "tanh"}]}}, "head.hidden[0].act", "gelu"),
    ({"head": {"hidden": [{"width": 8, "dropout": 1.5}]}}, "head.hidden[0].dropout", ""),
    ({"head": {"hidden": [{"size": 8}]}}, "head.hidden[0]", "width"),
    ({"block": {"bias": "yes"}}, "stages[0].blocks[0].bias", "bool"),
    ({"block": {"dropout_kind": "spatial"}}, "stages[0].blocks[0].dropout_kind", "channel"),
])
def test_errors_name_the_field(change, path, says):
    err = error_of(doc(**change))
    assert err.path.startswith(path) and says in str(err), str(err)


def test_aa_wide_keys_are_refused_on_other_residuals():
    block = {"type": "aa", "residual": "basic", "heads": 2, "bias": True}
    d = doc()
    d["stages"][0]["blocks"][0] = block
    err = error_of(d)
    assert err.path == "stages[0].blocks[0].bias" and "wide" in str(err)


def test_bias_and_channel_dropout_build_what_they_say():
    plain = load_spec(doc()).build()
    biased = load_spec(doc(block={"bias": True, "dropout_kind": "channel"})).build()
    convs = [m for m in biased.stages.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 and all(c.bias is not None for c in convs)  # conv1, conv2, 1x1
    assert (sum(p.numel() for p in biased.parameters())
            - sum(p.numel() for p in plain.parameters()) == 3 * C)
    drop = biased.stages[0][0].body.dropout
    assert type(drop) is torch.nn.Dropout2d and drop.p == 0.2
    # channel dropout zeroes whole maps: every (image, channel) map is all-zero or not
    drop.train()
    out = drop(torch.ones(4, 64, 3, 3))
    per_map = (out == 0).flatten(2).float().mean(-1)
    assert set(per_map.unique().tolist()) <= {0.0, 1.0} and per_map.sum() > 0


KNOB_BLOCKS = {  # block -> (new knobs at the kernel's default, the same knobs changed)
    "eaa": ({"type": "eaa", "attention": "linformer", "heads": 2, "proj_dim": 4},
            {"global_tokens": 0, "share_kv": True, "ln_eps": 1e-6, "scale": True},
            [{"global_tokens": 1}, {"share_kv": False}, {"ln_eps": 1e-5}]),
    "aa": ({"type": "aa", "attention": "linear", "heads": 2},
           {"scale": True}, [{"scale": False}]),
    "aa-linformer": ({"type": "aa", "attention": "linformer", "heads": 2, "proj_dim": 4},
                     {"global_tokens": 0, "share_kv": True},
                     [{"global_tokens": 1}, {"share_kv": False}]),
    "cvt": ({"type": "cvt", "attention": "linear", "heads": 2}, {"scale": True},
            [{"scale": False}]),
}


@pytest.mark.parametrize("name", sorted(KNOB_BLOCKS))
def test_new_kernel_knobs_hash_like_their_absence_at_the_default(name):
    block, defaults, changes = KNOB_BLOCKS[name]

    def spec(extra: dict):
        d = doc()
        d["stages"][0]["blocks"][0] = {**block, **extra}
        return load_spec(d)

    absent = spec({})
    assert spec(defaults).hash() == absent.hash()
    for change in changes:
        assert spec(change).hash() != absent.hash(), change
