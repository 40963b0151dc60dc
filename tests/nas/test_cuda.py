"""What only a GPU can show: bf16 autocast and channels-last training, the device-resident
data path and its host fallback, CUDA peak-memory measurement, a real CUDA out-of-memory
recorded as infeasible, and several trials sharing one GPU under ``gpus_per_trial: auto``.

Every test is skipped without CUDA; benchmarks/gpu_check.sh runs them on a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TINY = Path(__file__).parent / "data" / "tiny_search.yaml"


def cifar_shaped(n: int = 512, val: int = 128, augment: str = "standard") -> dict:
    return {"dataset": "synthetic", "augment": augment,
            "synthetic": {"channels": 3, "size": [32, 32], "classes": 10, "train": n,
                          "val": val, "signal": 1.0}}


def small_spec() -> dict:
    return {"version": 1, "name": "small-aa", "input": {"channels": 3, "size": [32, 32]},
            "classes": 10, "stem": {"kind": "conv", "channels": 32, "kernel": 3},
            "stages": [{"channels": 32, "stride": 1, "blocks": [{"type": "basic"}]},
                       {"channels": 64, "stride": 2, "blocks": [
                           {"type": "aa", "kappa": 0.25, "upsilon": 0.25, "heads": 4,
                            "attention": "relative"}]}]}


def test_auto_trains_in_bf16_autocast_with_channels_last_inputs():
    from nas.evaluate.data import load_data
    from nas.evaluate.train import seed_everything, train
    from nas.study import TrainingConfig
    from search_space import load_spec

    data = load_data(cifar_shaped(augment="none"))  # random prototypes: crops would blur
    seed_everything(0)
    model = load_spec(small_spec()).build()
    seen = []
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_pre_hook(lambda _m, args: seen.append(
        (args[0].is_contiguous(memory_format=torch.channels_last),
         torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None)))
    # 8 epochs of 8 steps: after 3 the accuracy is still 0.07-0.34 by seed (CPU, fp32)
    cfg = TrainingConfig(epochs=8, batch_size=64, lr=0.05)
    result = train(model, data, cfg, device="cuda", seed=0)
    assert result.precision == "bf16" and result.channels_last
    assert seen[0] == (True, torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights fp32
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.history[-1]["accuracy"] > 0.2  # 10 classes: chance is 0.1


def test_data_held_on_the_gpu_or_copied_per_batch_gives_the_same_batches(monkeypatch):
    import nas.evaluate.data as data_mod

    bundle = data_mod.load_data(cifar_shaped(256, 64))
    train = bundle.train
    assert train.placement("cuda") == "device"
    on_gpu = [(x.cpu(), y.cpu()) for x, y in train.batches(
        64, shuffle=True, generator=torch.Generator().manual_seed(3), device="cuda")]
    assert train._tensors(torch.device("cuda"))[0].is_cuda

    monkeypatch.setattr(data_mod, "DEVICE_DATA_FRACTION", 0.0)  # nothing fits
    host = data_mod.TensorData(train.x, train.y, train.mean.flatten(), train.std.flatten(),
                               scale=train.scale, augment=True)
    assert host.placement("cuda") == "host"
    copied = [(x.cpu(), y.cpu()) for x, y in host.batches(
        64, shuffle=True, generator=torch.Generator().manual_seed(3), device="cuda")]
    assert not host._tensors(torch.device("cuda"))[0].is_cuda
    for (a, ya), (b, yb) in zip(on_gpu, copied, strict=True):
        assert torch.equal(ya, yb)
        torch.testing.assert_close(a, b)


def test_cuda_peak_memory_is_measured_by_the_allocator_and_near_the_estimate():
    from search_space.cost import estimate
    from search_space.measure import measure
    from search_space.zoo import load_zoo

    spec = load_zoo("resnet18-cifar")
    m = measure(spec, batch=32, device="cuda", precision="fp32", warmup=1, repeats=3)
    est = estimate(spec, batch=32)
    assert m.memory_method == "cuda-max-allocated"
    assert m.protocol["timer"] == "cuda events"
    assert m.peak_reserved_bytes >= m.peak_memory_bytes
    # params + grads + momentum at least, and the estimate within a factor of three
    # (cuDNN workspaces and the backward's transient buffers are not in the estimate).
    assert m.peak_memory_bytes > 3 * est.param_bytes
    assert 1 / 3 < est.train_memory_bytes / m.peak_memory_bytes < 3.0


def giant_study() -> dict:
    """A study whose only candidate cannot fit on any GPU at batch 512 (2048 channels at
    128x128: one activation is 34 GB in bf16; 75M parameters) and whose analytic checks (no
    memory limit) do not stop it."""
    return {"version": 1, "name": "giant",
            "data": {"dataset": "synthetic", "synthetic": {
                "channels": 3, "size": [128, 128], "classes": 4, "train": 1024, "val": 64}},
            "training": {"epochs": 1, "batch_size": 512},
            "objectives": [{"metric": "accuracy", "direction": "maximize"}],
            "measure": {"batch_size": 1, "warmup": 1, "repeats": 2},
            "space": {"input": {"channels": 3, "size": [128, 128]}, "classes": 4,
                      "stem": {"kind": "conv", "channels": 2048, "kernel": 3, "stride": 1},
                      "stages": [{"channels": 2048, "depth": 1, "stride": 1,
                                  "blocks": ["basic"]}]},
            "resources": {"gpus_per_trial": 1}, "fidelity": {"scheduler": "none"}}


def test_a_real_cuda_oom_is_recorded_infeasible_and_the_gpu_stays_usable():
    from nas.evaluate.candidates import sample_specs
    from nas.evaluate.trial import evaluate_candidate
    from nas.study import load_study

    study = load_study(giant_study())
    spec = sample_specs(study, 1)[0]
    out = evaluate_candidate(spec, study, device="cuda")
    assert out.status in ("oom", "infeasible")
    assert not out.feasible and "memory_mb" in out.violations
    assert "out of memory" in out.message
    torch.cuda.empty_cache()
    x = torch.randn(1024, 1024, device="cuda")
    assert float((x @ x).sum()) == pytest.approx(float((x @ x).sum()))  # still computes


def test_auto_gpus_run_several_trials_on_one_gpu_at_once(tmp_path):
    from nas.run.ledger import Ledger
    from nas.search.driver import run_search

    study = yaml.safe_load(TINY.read_text())
    study["data"] = cifar_shaped(1024, 128)
    study["space"]["input"] = {"channels": 3, "size": [32, 32]}
    study["space"]["classes"] = 10
    study["constraints"] = {}
    study["training"]["epochs"] = 4
    study["resources"] = {"concurrency": 4, "cpus_per_trial": 1, "gpus_per_trial": "auto"}
    study["budget"] = "8trials"
    summary = run_search(study, run_dir=tmp_path / "run", progress=False)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    res = meta["resources"]
    assert res["source"] == "auto" and res["gpu"] < 1 and res["trials_per_gpu"] >= 2
    assert summary.counts["complete"] >= 4
    spans = [(e.time - e.wall_s, e.time) for e in Ledger(tmp_path / "run" / "ledger.jsonl")
             .entries if e.status in ("ok", "stopped")]
    overlap = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert overlap >= 2, f"trials never overlapped on the GPU: {spans}"


CAP_PROBE = """
import json, torch
from nas.evaluate.gpu_share import confine, oom_context
total = torch.cuda.get_device_properties(0).total_memory
capped = confine(0.1)
inside = torch.empty(int(total * 0.05), dtype=torch.uint8, device="cuda")
try:
    torch.empty(int(total * 0.15), dtype=torch.uint8, device="cuda")
    refused = False
except torch.cuda.OutOfMemoryError:
    refused = True
print(json.dumps({"capped": capped, "refused": refused, "context": oom_context()}))
"""


def test_a_trial_worker_is_capped_at_its_share_of_the_gpu():
    # in a child process: the cap would stay on this test process
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", CAP_PROBE], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[2])
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["capped"] and got["refused"], got  # 15% of the GPU refused under a 10% cap
    assert "at gpus_per_trial 0.1" in got["context"]


def test_a_trial_hands_its_cached_gpu_memory_back():
    # a worker runs trial after trial: the cache of one must not stay on the GPU (nor
    # count in the next one's measured peak)
    from nas.evaluate.trial import evaluate_candidate
    from nas.study import load_study
    from search_space import load_spec

    study = load_study({**yaml.safe_load(TINY.read_text()), "data": cifar_shaped(256, 64),
                        "constraints": {}, "space": {
                            **yaml.safe_load(TINY.read_text())["space"],
                            "input": {"channels": 3, "size": [32, 32]}, "classes": 10}})
    torch.cuda.empty_cache()  # else earlier tests' cache, released by the trial, hides it
    before = torch.cuda.memory_reserved()
    out = evaluate_candidate(load_spec(small_spec()), study, device="cuda")
    assert out.status == "ok", out.message
    left = torch.cuda.memory_reserved() - before
    assert left < 0.5 * out.metrics["memory_reserved_mb"] * 2**20, (left, out.metrics)


@pytest.mark.parametrize("autocast", [False, True])
def test_attention_over_one_key_token_runs_on_the_gpu(autocast):
    # An ATC layer on a 2x2 map pools its keys (kv_stride 2) to ONE token: CUDA's
    # memory-efficient kernel refused that view before convattn.attention.base.dense.
    from convattn import create_block

    block = create_block("atc", 48, 48, 1, heads=3, input_size=(2, 2)).cuda()
    x = torch.randn(4, 48, 2, 2, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        y = block(x)
    y.float().sum().backward()
    assert torch.isfinite(x.grad).all() and y.shape == x.shape
