"""A search space can list the kernel knobs blocks take since spec version 2 (scale,
share_kv, Linformer's global tokens, EAA's ln_eps, wide's bias / dropout_kind)."""

from __future__ import annotations

import optuna

from search_space import SearchSpace

SPACE = {
    "name": "knobs",
    "input": {"channels": 3, "size": [8, 8]},
    "classes": 4,
    "stem": {"channels": 8},
    "stages": [
        {"channels": 8, "depth": 1, "blocks": ["aa", "cvt", "wide"]},
        {"channels": 16, "depth": 1, "stride": 2, "blocks": ["eaa"]},
    ],
    "knobs": {
        "aa": {"attention": "linear", "scale": [True, False], "heads": 2},
        "cvt": {"attention": "linear", "scale": [True, False], "heads": 2},
        "wide": {"bias": [True, False], "dropout_kind": ["element", "channel"]},
        "eaa": {"attention": ["linformer", "local"], "global_tokens": [0, 1],
                "share_kv": [True, False], "ln_eps": [1.0e-5, 1.0e-6], "heads": 2,
                "proj_dim": 8},
    },
}


def test_new_knobs_are_sampled_and_every_sample_builds():
    space = SearchSpace.from_dict(SPACE, strict=True)  # no value of them is dead
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, set] = {}
    for _ in range(40):
        spec = space.sample(study.ask())
        for _, _, _, block in spec.blocks():
            for key in ("scale", "share_kv", "global_tokens", "ln_eps", "bias",
                        "dropout_kind"):
                if key in block.cfg:
                    seen.setdefault(f"{block.type}.{key}", set()).add(block.cfg[key])
        spec.validate()
    assert seen["aa.scale"] == {True, False} and seen["cvt.scale"] == {True, False}
    assert seen["eaa.global_tokens"] == {0, 1} and seen["eaa.share_kv"] == {True, False}
    assert seen["wide.dropout_kind"] == {"element", "channel"}
    spec.build()  # the last one builds for real
