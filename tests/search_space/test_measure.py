"""Device measurement: the recorded protocol, the statistics, the CPU memory method,
and that measuring leaves the model as it was. Timings are never asserted."""

from __future__ import annotations

import pytest
import torch

from search_space import load_spec
from search_space.cost import estimate
from search_space.measure import Measurement, estimate_vs_measured, measure, summarize

SPEC = {"version": 1, "name": "tiny", "input": {"channels": 1, "size": [8, 8]}, "classes": 5,
        "stem": {"kind": "conv", "channels": 4},
        "stages": [{"channels": 8, "stride": 2, "blocks": [{"type": "basic"}]}]}

QUICK = {"device": "cpu", "warmup": 1, "repeats": 3}


def test_summarize_known_samples():
    """numpy-style linear percentiles, worked out by hand for 1..10."""
    s = summarize([float(v) for v in (7, 1, 10, 4, 2, 9, 3, 8, 6, 5)])
    assert s["median"] == 5.5 and s["mean"] == 5.5
    assert s["p10"] == pytest.approx(1.9) and s["p90"] == pytest.approx(9.1)
    assert s["iqr"] == pytest.approx(7.75 - 3.25)
    assert s["std"] == pytest.approx(3.0276503540974917)
    assert (s["min"], s["max"], s["n"]) == (1.0, 10.0, 10.0)
    assert summarize([2.0])["std"] == 0.0


def test_inference_measurement_records_its_protocol():
    m = measure(SPEC, batch=3, **QUICK)
    assert isinstance(m, Measurement) and m.mode == "inference"
    assert set(m.latency_ms) >= {"median", "p10", "p90", "iqr", "std", "mean"}
    assert m.latency_ms["p10"] <= m.latency_ms["median"] <= m.latency_ms["p90"]
    assert m.latency_ms["n"] == 3
    p = m.protocol
    assert (p["warmup"], p["repeats"], p["batch"], p["precision"]) == (1, 3, 3, "fp32")
    assert p["input"] == [1, 8, 8] and p["device"] == "cpu" and p["mode"] == "inference"
    assert p["torch"] == torch.__version__ and p["threads"] == torch.get_num_threads()
    assert p["channels_last"] is False and "median" in p["statistic"]
    assert m.params == sum(q.numel() for q in load_spec(SPEC).build().parameters())
    assert m.to_dict()["protocol"] == p


def test_cpu_memory_is_a_labelled_real_step_count():
    m = measure(SPEC, batch=4, **QUICK)
    assert m.memory_method == "cpu-saved-tensors" and m.peak_reserved_bytes is None
    b = m.memory_breakdown
    params = m.params * 4
    assert b["param_bytes"] == params and b["grad_bytes"] == params
    assert b["optimizer_state_bytes"] == params          # SGD momentum: one buffer
    assert b["activation_bytes"] > 0
    assert m.peak_memory_bytes == sum(b.values())


def test_estimate_agrees_with_the_cpu_measurement():
    """On CPU both count the same saved tensors: the estimate is exact for a conv net."""
    m = measure(SPEC, batch=4, **QUICK)
    report = estimate_vs_measured(estimate(SPEC, batch=4), m)
    assert report["params"]["relative_error"] == 0.0
    for key in ("activation_bytes", "grad_bytes", "optimizer_state_bytes",
                "train_memory_bytes"):
        assert abs(report[key]["relative_error"]) < 0.01, key
    with pytest.raises(ValueError, match="batch 2, measurement for batch 4"):
        estimate_vs_measured(estimate(SPEC, batch=2), m)


def test_train_step_leaves_weights_and_buffers_unchanged():
    model = load_spec(SPEC).build()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    threads = torch.get_num_threads()
    m = measure(model, batch=2, train=True, threads=1, **QUICK)
    assert m.mode == "train_step" and m.protocol["threads"] == 1
    assert torch.get_num_threads() == threads
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_bf16_and_channels_last_run_and_are_recorded():
    m = measure(SPEC, batch=2, precision="bf16", channels_last=True, **QUICK)
    assert m.protocol["precision"] == "bf16" and m.protocol["channels_last"] is True


def test_module_without_spec_needs_an_input_size():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(),
                              torch.nn.LazyLinear(2))
    net(torch.zeros(1, 3, 6, 6))  # materialise the lazy layer
    with pytest.raises(ValueError, match=r"input_size=\(C, H, W\) is required"):
        measure(net, **QUICK)
    m = measure(net, input_size=(3, 6, 6), memory=False, **QUICK)
    assert m.peak_memory_bytes is None and m.protocol["input"] == [3, 6, 6]


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="precision 'fp16': allowed fp32, bf16"):
        measure(SPEC, precision="fp16", **QUICK)
    with pytest.raises(ValueError, match="batch 0"):
        measure(SPEC, batch=0, **QUICK)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            measure(SPEC, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_memory_of_one_training_step():
    spec = "zoo:resnet18-cifar"
    m = measure(spec, batch=32, device="cuda", warmup=2, repeats=5)
    assert m.memory_method == "cuda-max-allocated"
    assert m.peak_reserved_bytes >= m.peak_memory_bytes > 0
    # the estimate leaves out transient backward buffers and allocator rounding, so
    # the measured peak is at least the estimate and not wildly above it
    report = estimate_vs_measured(estimate(spec, batch=32), m)
    assert -0.5 < report["train_memory_bytes"]["relative_error"] < 0.05
