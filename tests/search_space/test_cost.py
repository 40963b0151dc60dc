"""The cost model: exact params, macs that agree with torch's FLOP counter outside
attention, activation bytes that agree with a real CPU forward, optimizer state."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import convattn
from convattn.attention.base import AttentionKernel
from search_space import load_spec
from search_space.cost import CostEstimate, count_params, estimate


def make_spec(stages, size=(12, 10), stem_channels=8, classes=10, name="t"):
    return load_spec({"version": 1, "name": name, "input": {"channels": 3, "size": list(size)},
                      "classes": classes, "stem": {"kind": "conv", "channels": stem_channels},
                      "stages": stages})


CONV_ONLY = [
    {"channels": 8, "blocks": [{"type": "basic"}]},
    {"channels": 16, "stride": 2, "blocks": [{"type": "bottleneck"}, {"type": "bottleneck"}]},
    {"channels": 24, "stride": 2, "blocks": [{"type": "wide", "dropout": 0.1}]},
]


def aa(attention, **cfg):
    return {"type": "aa", "heads": 2, "kappa": 0.5, "upsilon": 0.5, "attention": attention, **cfg}


ATTENTION = [
    {"channels": 16, "stride": 2, "blocks": [aa(a) for a in convattn.list_attention()]},
    {"channels": 16, "blocks": [{"type": "eaa", "heads": 2, "attention": a}
                                for a in ("local", "linformer", "linear", "full")]},
]

#: one small representative cfg per block type (every registered type gets a case;
#: a type missing here runs with its defaults).
BLOCK_CFGS = {
    "basic": [{}], "bottleneck": [{}], "wide": [{"dropout": 0.2}],
    "aa": [aa(a) for a in ("relative", "full", "linear", "local", "linformer")]
    + [aa("relative", residual="bottleneck", expansion=2), aa("full", residual="wide",
                                                               position="sine")],
    "eaa": [{"heads": 2, "attention": a} for a in ("local", "linformer", "linear", "full")]
    + [{"heads": 2, "mode": "replace", "patch": 2}],
    "acmix": [{"heads": 2, "kernel_att": 3}],
    "cvt": [{"heads": 2}],
    "atc": [{"heads": 2}],
}


def cpu_saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Independent measurement: bytes of the distinct storages autograd saves in a
    REAL CPU forward (by data pointer), parameters and buffers left out."""
    own = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in own:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(seen.values())


def flop_split(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(total FLOPs, FLOPs inside attention kernels) by torch's FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    inside = sum(sum(counts.get(f"{root}.{name}", {}).values())
                 for name, m in model.named_modules() if isinstance(m, AttentionKernel))
    return counter.get_total_flops(), inside


def test_params_equal_the_built_module():
    for stages in (CONV_ONLY, ATTENTION):
        spec = make_spec(stages)
        built = sum(p.numel() for p in spec.build().parameters())
        assert estimate(spec).params == built
        assert count_params(spec) == built


def test_conv_only_macs_equal_flop_counter():
    spec = make_spec(CONV_ONLY)
    est = estimate(spec, batch=3)
    total, inside = flop_split(spec.build().eval(), torch.randn(3, 3, 12, 10))
    assert inside == 0 and est.attention_macs == 0
    assert est.macs == total // 2


def test_attention_specs_conv_linear_part_equals_flop_counter():
    """FLOP counters miss or mangle attention; outside the kernels they must agree."""
    spec = make_spec(ATTENTION)
    est = estimate(spec, batch=2)
    total, inside = flop_split(spec.build().eval(), torch.randn(2, 3, 12, 10))
    assert est.conv_linear_macs == (total - inside) // 2
    assert est.attention_macs > 0
    assert est.macs == est.conv_linear_macs + est.attention_macs


def test_macs_and_attention_scale_with_batch():
    spec = make_spec(ATTENTION)
    one, four = estimate(spec, batch=1), estimate(spec, batch=4)
    assert four.macs == 4 * one.macs and four.attention_macs == 4 * one.attention_macs
    assert four.attention_bytes == 4 * one.attention_bytes
    assert four.param_bytes == one.param_bytes


def test_full_attention_bytes_closed_form():
    """One aa block with full attention on an 8x8 map: Nh (HW)^2 float32 per image."""
    spec = make_spec([{"channels": 16, "blocks": [aa("full", heads=4)]}], size=(8, 8))
    est = estimate(spec, batch=3)
    assert est.attention_bytes == 3 * 4 * 64 * 64 * 4
    assert est.attention_bytes_max == est.attention_bytes


def test_activation_bytes_of_a_conv_net_match_a_real_cpu_forward():
    """Tolerance 1%: both count the same saved tensors (meta vs a real CPU forward)."""
    spec = make_spec(CONV_ONLY, size=(16, 16))
    est = estimate(spec, batch=4)
    measured = cpu_saved_bytes(spec.build().train(), torch.randn(4, 3, 16, 16))
    assert est.activation_method.startswith("saved-tensors(meta")
    assert abs(est.activation_bytes - measured) <= 0.01 * measured
    # activations of a conv net are linear in the batch
    assert estimate(spec, batch=8).activation_bytes == pytest.approx(2 * est.activation_bytes,
                                                                      rel=0.01)


@pytest.mark.parametrize("block", convattn.list_blocks())
def test_meta_count_works_for_every_block_type(block):
    """With the math attention path on both sides the meta count is the real one."""
    for cfg in BLOCK_CFGS.get(block, [{}]):
        spec = make_spec([{"channels": 16, "stride": 2,
                           "blocks": [{"type": block, **cfg}, {"type": block, **cfg}]}],
                         size=(8, 6))
        est = estimate(spec, batch=2, sdpa="math")
        assert est.activation_method == "saved-tensors(meta, sdpa math)", cfg
        with sdpa_kernel(SDPBackend.MATH):
            measured = cpu_saved_bytes(spec.build().train(), torch.randn(2, 3, 8, 6))
        assert abs(est.activation_bytes - measured) <= 0.01 * measured, (block, cfg)


def test_fused_sdpa_keeps_no_attention_matrix():
    """Contiguous tokens (eaa's linear q/k/v) take the CPU flash kernel for real; the
    default estimate counts that, the math estimate counts the weights too."""
    spec = make_spec([{"channels": 16, "blocks": [{"type": "eaa", "heads": 2,
                                                   "attention": "full"}]}], size=(8, 8))
    fused, math = estimate(spec, batch=2), estimate(spec, batch=2, sdpa="math")
    measured = cpu_saved_bytes(spec.build().train(), torch.randn(2, 3, 8, 8))
    assert fused.activation_bytes == measured
    # math also keeps the softmax output, heads x 64 x 64 floats per image (fused keeps
    # a 64-float log-sum-exp per head instead)
    weights = 2 * 2 * 64 * 64 * 4
    assert 0.9 * weights < math.activation_bytes - fused.activation_bytes < 2 * weights


@pytest.mark.parametrize("optimizer,copies", [("sgd", 0), ("sgd_momentum", 1), ("adamw", 2)])
def test_training_memory_terms(optimizer, copies):
    spec = make_spec(CONV_ONLY)
    est = estimate(spec, batch=2, optimizer=optimizer)
    model = spec.build()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert est.param_bytes == params and est.grad_bytes == params
    assert est.optimizer_state_bytes == copies * params
    assert est.buffer_bytes == buffers
    assert est.train_memory_bytes == (est.activation_bytes + (2 + copies) * params + buffers)


def test_bad_arguments_are_clear():
    spec = make_spec(CONV_ONLY)
    with pytest.raises(ValueError, match="unknown optimizer 'adam'; known: sgd, "):
        estimate(spec, optimizer="adam")
    with pytest.raises(ValueError, match="batch 0"):
        estimate(spec, batch=0)
    with pytest.raises(ValueError, match="sdpa 'flash': allowed fused, math"):
        estimate(spec, sdpa="flash")


def test_zoo_name_and_dict_round_trip():
    est = estimate("zoo:resnet18-cifar", batch=2)
    assert isinstance(est, CostEstimate) and est.name == "resnet18-cifar"
    # the CIFAR ResNet-18: 0.556 GMACs per 32x32 image, independently known
    assert 555e6 < est.macs / 2 < 556e6
    d = est.to_dict()
    assert d["train_memory_bytes"] == est.train_memory_bytes and d["batch"] == 2
    assert sum(est.per_node_macs.values()) * 2 == est.macs
