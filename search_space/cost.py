"""Cost model of a spec without running it: parameters, multiply-adds (attention
included), attention memory, and peak TRAINING memory.

    >>> est = estimate(load_spec("zoo:resnet18-cifar"), batch=128)
    >>> est.params, est.macs, est.attention_macs, est.train_memory_bytes

- ``params``: exact; counted on the model built on the ``meta`` device (no
  memory, no init compute), so it equals ``sum(p.numel())`` of ``spec.build()``.
- ``macs``: the blocks' own analytic formulas (``Block.cost``, which include
  their attention kernels) + the stem conv + the head's Linear layers, times ``batch``.
  Generic FLOP counters miss attention; these formulas do not. Norms, pooling
  and activations are not multiply-adds and are not counted.
- ``attention_macs``: the part of ``macs`` spent in attention kernels (logits and
  mixing, Linformer's sequence projections), from each kernel's ``cost`` at the
  map sizes it actually sees (recorded by a hook during the meta forward), so
  ``macs - attention_macs`` is the conv / linear part a FLOP counter sees.
- ``attention_bytes``: bytes of the attention tensors the blocks materialise,
  summed over blocks (in training every softmax output is kept for backward) and
  ``attention_bytes_max``: the largest single block (the inference peak term).
- Training memory = saved activations + parameters + gradients + optimizer
  state + buffers (see :mod:`search_space.footprint`). Activations are the bytes
  autograd saves for backward, counted exactly by running ONE forward on the
  meta device under ``saved_tensors_hooks`` (train mode, float32). The default
  optimizer is SGD with momentum: one state buffer per parameter ("adamw": two,
  "sgd": none). Fused attention (``scaled_dot_product_attention``) is counted as
  the fused kernels keep it (no attention matrix; ``sdpa="math"`` counts the
  math fallback instead). A batch of one that batch norm refuses (one image of a
  1x1 map) is counted at batches 2 and 3 and extrapolated. If a block cannot run
  on the meta device the count falls back to a real CPU forward at batch 1 scaled
  by ``batch``, then to a rough analytic
  sum (``activation_method`` says which). Transient buffers of the backward
  pass and allocator rounding are not included: on CUDA, measured
  ``max_memory_allocated`` is typically somewhat higher (see
  ``search_space.measure.estimate_vs_measured``).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from convattn.attention.base import AttentionKernel

from .footprint import analytic_footprint, optimizer_buffers, saved_activation_bytes

FLOAT_BYTES = 4


@dataclass(frozen=True)
class CostEstimate:
    """Estimated cost of one spec at one batch size (all totals are for the batch)."""

    name: str
    batch: int
    params: int
    macs: int
    attention_macs: int
    attention_bytes: int
    attention_bytes_max: int
    activation_bytes: int
    param_bytes: int
    grad_bytes: int
    optimizer_state_bytes: int
    buffer_bytes: int
    optimizer: str
    activation_method: str
    per_node_macs: dict[str, int] = field(default_factory=dict)  # one image

    @property
    def train_memory_bytes(self) -> int:
        """Estimated peak training memory: activations + params + grads + state + buffers."""
        return (self.activation_bytes + self.param_bytes + self.grad_bytes
                + self.optimizer_state_bytes + self.buffer_bytes)

    @property
    def conv_linear_macs(self) -> int:
        """Multiply-adds outside attention kernels (what FLOP counters see)."""
        return self.macs - self.attention_macs

    def memory_breakdown(self) -> dict[str, int]:
        return {"activation_bytes": self.activation_bytes, "param_bytes": self.param_bytes,
                "grad_bytes": self.grad_bytes,
                "optimizer_state_bytes": self.optimizer_state_bytes,
                "buffer_bytes": self.buffer_bytes}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["train_memory_bytes"] = self.train_memory_bytes
        out["conv_linear_macs"] = self.conv_linear_macs
        return out


# -- building without memory -------------------------------------------------------------


def build_meta(spec: Any) -> nn.Module:
    """``spec.build()`` on the meta device (shapes only, no storage, no init compute)."""
    with torch.device("meta"):
        return spec.build()


def count_params(spec: Any) -> int:
    """Exact parameter count of ``spec.build()``; built on meta, on CPU if meta fails."""
    try:
        model = build_meta(spec)
    except (RuntimeError, NotImplementedError):  # a block whose init needs real data
        model = spec.build()
    return sum(p.numel() for p in model.parameters())


# -- activations -------------------------------------------------------------------------


@contextlib.contextmanager
def _record_attention(model: nn.Module, calls: list[tuple[AttentionKernel, tuple, tuple]]):
    """Record (kernel, query map size, key map size) of every attention kernel call."""

    def hook(module: AttentionKernel, args: tuple, _out: Any) -> None:
        q, k = args[0], args[1]
        calls.append((module, tuple(q.shape[-2:]), tuple(k.shape[-2:])))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, AttentionKernel)]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


SDPA_MODES = ("fused", "math")


@contextlib.contextmanager
def _fused_sdpa_on_meta():
    """Make ``F.scaled_dot_product_attention`` on META tensors save what a fused
    kernel saves (q, k, v, output, log-sum-exp) instead of what the math fallback
    saves (the (HWq x HWk) weights). On the meta device PyTorch always takes the
    math path, while CUDA (flash / memory-efficient kernels) and the CPU flash
    kernel keep no attention matrix for backward. Calls on real tensors, and
    calls with a mask or dropout, go to the original function untouched."""
    original = F.scaled_dot_product_attention
    fused = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu

    def shim(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
             **kwargs):
        if query.device.type != "meta" or attn_mask is not None or dropout_p or kwargs:
            return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                            is_causal=is_causal, scale=scale, **kwargs)
        return fused(query, key, value, 0.0, is_causal, scale=scale)[0]

    F.scaled_dot_product_attention = shim
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def _forward_counts(model: nn.Module, shape: tuple[int, ...], device: str, sdpa: str = "math"):
    """(saved activation bytes, attention kernel calls) of one train-mode forward."""
    model.train()
    calls: list[tuple[AttentionKernel, tuple, tuple]] = []
    x = torch.zeros(shape, device=device)
    fused = _fused_sdpa_on_meta() if sdpa == "fused" else contextlib.nullcontext()
    with _record_attention(model, calls), fused:
        activations, _ = saved_activation_bytes(model, x)
    return activations, calls


def _activations_at(model: nn.Module, image: tuple[int, ...], batch: int, device: str,
                    sdpa: str = "math"):
    """(saved activation bytes at ``batch``, attention kernel calls) of a train-mode
    forward. Batch norm in training mode refuses one image on a 1x1 map (one value
    per channel): such a batch-1 count is taken at batches 2 and 3 and extrapolated
    along the line through them (saved tensors are per-image maps plus
    batch-independent tables). Counted directly wherever it runs, because at batch 1
    some reshapes are free views that copy at larger batches."""
    try:
        return _forward_counts(model, (batch, *image), device, sdpa)
    except ValueError:
        if batch != 1:
            raise
    two, calls = _forward_counts(model, (2, *image), device, sdpa)
    three, _ = _forward_counts(model, (3, *image), device, sdpa)
    return 2 * two - three, calls


def _rough_activations(resolved: Any, batch: int) -> int:
    """Last resort: every block keeps ~4 maps of its output size, the stem ~3."""
    elems = 3 * _numel(resolved.stem_shape) + _numel(resolved.input_shape)
    elems += sum(4 * _numel(b.out_shape) + _numel(b.in_shape) for b in resolved.blocks)
    return elems * batch * FLOAT_BYTES


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def estimate(spec: Any, batch: int = 1, optimizer: str = "sgd_momentum",
             sdpa: str = "fused") -> CostEstimate:
    """Estimate the cost of ``spec`` (anything ``load_spec`` takes) at ``batch``.

    ``sdpa``: how fused attention (``scaled_dot_product_attention``) keeps its
    activations: "fused" (default: q, k, v, output and log-sum-exp, as the CUDA
    flash / memory-efficient kernels and the CPU flash kernel do) or "math" (the
    attention weights too, as PyTorch's math fallback does, e.g. on CPU for
    non-contiguous inputs).
    """
    from . import load_spec

    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch {batch!r}: a positive int is required")
    if sdpa not in SDPA_MODES:
        raise ValueError(f"sdpa {sdpa!r}: allowed {', '.join(SDPA_MODES)}")
    optimizer_buffers(optimizer)  # validates the name
    spec = load_spec(spec)
    resolved = spec.resolve()

    try:
        model = build_meta(spec)
        activations, calls = _activations_at(model, resolved.input_shape, batch, "meta", sdpa)
        method = f"saved-tensors(meta, sdpa {sdpa})"
    except (RuntimeError, NotImplementedError):
        try:  # a block that needs real data: count on CPU at batch 1, scale
            model = spec.build()
            act1, calls = _activations_at(model, resolved.input_shape, 1, "cpu")
            activations, method = act1 * batch, "saved-tensors(cpu, batch 1, scaled)"
        except (RuntimeError, NotImplementedError, MemoryError):
            model = spec.build()
            activations, calls = _rough_activations(resolved, batch), []
            method = "analytic(rough)"

    # Per-node macs and attention bytes come from the spec graph (the blocks' own
    # formulas, the stem conv and the head's Linears), the same numbers `nas show` prints.
    graph = spec.graph(costs=True)
    per_node = {n: int(d["macs"]) for n, d in graph.nodes(data=True) if d["macs"]}
    attn_bytes = [int(d["attention_bytes"]) for _, d in graph.nodes(data=True)]
    attention_macs = sum(int(k.cost(q_hw, kv_hw).macs) for k, q_hw, kv_hw in calls) * batch
    foot = analytic_footprint(model, activations, optimizer)
    return CostEstimate(
        name=spec.name, batch=batch, params=sum(p.numel() for p in model.parameters()),
        macs=sum(per_node.values()) * batch, attention_macs=attention_macs,
        attention_bytes=sum(attn_bytes) * batch,
        attention_bytes_max=max(attn_bytes, default=0) * batch,
        activation_bytes=foot.activations, param_bytes=foot.params, grad_bytes=foot.grads,
        optimizer_state_bytes=foot.optimizer_state, buffer_bytes=foot.buffers,
        optimizer=optimizer, activation_method=method, per_node_macs=per_node)
