"""Batch 1 on specs whose batch norm sees a 1x1 map (ATC/CvT last stages at 32x32):
the cost model still counts training memory, inference latency is measured in eval
mode, and a training step at batch 1 is refused with a clear message (issue 11)."""

from __future__ import annotations

import pytest

from search_space import load_spec
from search_space.cost import estimate
from search_space.measure import measure


def test_estimate_at_batch_one_extrapolates_the_affine_count():
    spec = load_spec("zoo:atc-3")
    a1, a2, a3, a4 = (estimate(spec, batch=b).activation_bytes for b in (1, 2, 3, 4))
    assert a4 - a3 == a3 - a2 > 0           # saved tensors are affine in the batch here
    assert a1 == 2 * a2 - a3 > 0            # so batch 1 lies on the same line
    one = estimate(spec, batch=1)
    assert one.params == sum(p.numel() for p in spec.build().parameters())


def test_estimate_at_batch_one_is_counted_directly_where_it_runs():
    """Where batch norm allows batch 1 the count is not extrapolated: it equals the
    saved tensors of a real CPU training step at batch 1."""
    spec = load_spec("zoo:resnet18-cifar")
    real = measure(spec, batch=1, device="cpu", warmup=0, repeats=1)
    assert real.memory_method == "cpu-saved-tensors"
    assert (estimate(spec, batch=1, sdpa="math").activation_bytes
            == real.memory_breakdown["activation_bytes"])


def test_measure_at_batch_one_inference_works_and_training_is_refused_clearly():
    spec = load_spec("zoo:atc-3")
    m = measure(spec, batch=1, device="cpu", warmup=0, repeats=1, memory=False)
    assert m.mode == "inference" and m.latency_ms["median"] > 0
    with pytest.raises(ValueError, match="training step at batch 1 is impossible"):
        measure(spec, batch=1, device="cpu", warmup=0, repeats=1)
    with pytest.raises(ValueError, match="batch >= 2"):
        measure(spec, batch=1, device="cpu", warmup=0, repeats=1, train=True, memory=False)
