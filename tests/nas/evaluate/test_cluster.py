"""Resources per trial (nas.evaluate.cluster): the GPU-fraction arithmetic of
``gpus_per_trial: auto``, the validation of ``gpus_per_trial``, and (on a machine with
CUDA only) the real measurement behind ``auto``."""

from __future__ import annotations

import math
import random

import pytest
import torch

from nas.errors import UserError
from nas.evaluate.cluster import (
    CUDA_CONTEXT_BYTES,
    HEADROOM,
    MAX_TRIALS_PER_GPU,
    decide_auto,
    gpu_fraction,
    largest_candidate,
    resolve_resources,
    trial_resources,
    trials_per_gpu,
)
from nas.study import load_study

GIB = 2**30
MIB = 2**20


def test_fraction_is_one_over_the_trials_that_fit():
    # need = 10 GiB x 1.25 + 0.75 GiB = 13.25 GiB; 80 // 13.25 = 6 trials -> 1/6
    assert gpu_fraction(10 * GIB, 80 * GIB) == 0.1666
    assert trials_per_gpu(0.1666) == 6
    # exactly two fit: need = device / 2
    peak = (40 * GIB - CUDA_CONTEXT_BYTES) / (1 + HEADROOM)
    assert gpu_fraction(peak, 80 * GIB) == 0.5
    # three fit: 1/3 rounded DOWN to Ray's 4 decimals, so three still fit in 1.0
    assert gpu_fraction(5 * GIB, 24 * GIB) == 0.3333
    assert trials_per_gpu(0.3333) == 3 and 3 * 0.3333 <= 1.0


def test_fraction_limits():
    assert gpu_fraction(100 * GIB, 80 * GIB) == 1.0  # does not fit: a whole GPU
    assert gpu_fraction(70 * GIB, 80 * GIB) == 1.0  # fits once
    assert gpu_fraction(0, 80 * GIB) == 1 / MAX_TRIALS_PER_GPU  # capped
    assert gpu_fraction(8 * GIB, 80 * GIB, headroom=0.0, context_bytes=0) == 0.1
    with pytest.raises(ValueError):
        gpu_fraction(1 * GIB, 0)


def test_fraction_always_covers_the_need_and_packs():
    rng = random.Random(0)
    for _ in range(2000):
        device = rng.choice([16, 24, 40, 48, 80, 94, 141]) * GIB
        peak = rng.uniform(0, 1.2) * device
        f = gpu_fraction(peak, device)
        need = peak * (1 + HEADROOM) + CUDA_CONTEXT_BYTES
        n = trials_per_gpu(f)
        assert 1 <= n <= MAX_TRIALS_PER_GPU
        assert n * f <= 1.0 + 1e-12  # Ray can place n of them on one GPU
        if f < 1.0:  # each one's share holds its need (up to Ray's 1e-4 resolution)
            assert f * device >= need - 1e-4 * device
            # and no more would have fit (unless capped)
            assert n == MAX_TRIALS_PER_GPU or (n + 1) * need > device


def test_trials_per_gpu():
    assert [trials_per_gpu(f) for f in (0, 0.25, 0.3333, 0.5, 1.0, 2.0)] == [0, 4, 3, 2, 1, 1]


@pytest.mark.parametrize("value", ["auto", 0, 0.25, 1, 2, 4])
def test_gpus_per_trial_allowed(value):
    assert _study(value).resources.gpus_per_trial == value


@pytest.mark.parametrize("value", [-1, 1.5, "two", True, float("nan"), None])
def test_gpus_per_trial_refused(value):
    with pytest.raises(UserError, match=r"^study\.resources\.gpus_per_trial: "):
        _study(value)


def _study(gpus, **extra):
    d = load_study(None).to_dict()
    d["resources"] = {**d["resources"], "gpus_per_trial": gpus}
    d.update(extra)
    return load_study(d)


def test_study_validates_gpus_per_trial():
    assert _study("auto").resources.gpus_per_trial == "auto"
    with pytest.raises(UserError, match="gpus_per_trial: 1.5 is not allowed"):
        _study(1.5)


def test_trial_resources_as_written():
    r = trial_resources(_study(0.5))
    assert (r.cpu, r.gpu, r.devices, r.source) == (1.0, 0.5, 0.5, "study")
    assert trial_resources(_study(0)).devices == 1.0  # a CPU trial charges one device
    auto = trial_resources(_study("auto"))
    assert auto.source == "auto" and math.isnan(auto.gpu)


def test_resolve_leaves_numbers_alone():
    study = _study(0.25)
    assert resolve_resources(study) is study


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_auto_without_a_gpu_says_what_to_do():
    with pytest.raises(UserError, match="auto measures one training step on a GPU"):
        resolve_resources(_study("auto"))


def test_largest_candidate_is_the_biggest_feasible_draw():
    from nas.evaluate.candidates import sample_candidates

    study = _study("auto")
    drawn = sample_candidates(study, n=6, seed=3)
    pool = [c for c in drawn if c.feasible] or drawn
    want = max(pool, key=lambda c: c.train_memory_mb).spec.hash()
    assert largest_candidate(study, n=6, seed=3).hash() == want


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_measures_a_real_step_on_the_gpu():
    study = _study("auto", training={**load_study(None).to_dict()["training"],
                                     "batch_size": 256})
    decided = decide_auto(study)
    d = decided.detail
    device = d["device_memory_mb"] * MIB
    need = d["peak_reserved_mb"] * MIB * (1 + HEADROOM) + CUDA_CONTEXT_BYTES
    assert d["peak_reserved_mb"] >= d["peak_allocated_mb"] > 0
    assert decided.gpu == gpu_fraction(d["peak_reserved_mb"] * MIB, device)
    assert decided.gpu * device >= need - 1e-4 * device
    resolved = resolve_resources(study)
    assert resolved.resources.gpus_per_trial == pytest.approx(decided.gpu, abs=1e-4)
