"""search_space.inverse.params_of: the params under which a space samples a given
network (a baseline told to the sampler as an observation), checked by sampling."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna

from nas.study import load_study
from search_space import load_spec
from search_space.inverse import params_of

BASELINES = Path(__file__).parents[2] / "studies" / "baselines"


def _sampled(space, params):
    return space.sample(optuna.trial.FixedTrial(params))


def test_baselines_that_are_points_of_the_scenes_space_are_found_exactly():
    space = load_study("digit-scenes").space
    found = {}
    for name in ("resnet", "aa-resnet", "eaanet-linformer", "eaanet-longformer", "acmix",
                 "cvt"):
        spec = load_spec(BASELINES / f"{name}-scenes.yaml")
        params = params_of(space, spec)
        found[name] = params is not None
        if params is not None:
            assert _sampled(space, params).hash() == spec.hash()
    # the space offers the ResNet, AA (relative, kappa 0.25) and Linformer networks as
    # written; not the Longformer one (the space sets proj_dim 32/64 on every EAA block,
    # the baseline leaves it at its default), ACmix's kernel_att 5 (space: 3, 7) or
    # CvT's stem (another width)
    assert found == {"resnet": True, "aa-resnet": True, "eaanet-linformer": True,
                     "eaanet-longformer": False, "acmix": False, "cvt": False}


def test_a_network_outside_the_space_has_no_params():
    space = load_study("digit-scenes").space
    resnet = load_spec(BASELINES / "resnet-scenes.yaml")
    wider = dataclasses.replace(resnet, stages=(
        dataclasses.replace(resnet.stages[0], channels=24), *resnet.stages[1:]))
    assert params_of(space, wider) is None  # stage 0 offers 8 or 16 channels
    deeper = dataclasses.replace(resnet, stages=(
        *resnet.stages[:2], dataclasses.replace(
            resnet.stages[2], blocks=resnet.stages[2].blocks * 2)))
    assert params_of(space, deeper) is None  # stage 2 offers depth 1 or 2
    other_input = resnet.with_data(channels=3, size=(32, 32), classes=10)
    assert params_of(space, other_input) is None
