"""Measure latency and peak training memory of a model on a real device.

    >>> m = measure("zoo:resnet18-cifar", batch=8, device="cpu", repeats=5)
    >>> m.latency_ms["median"], m.peak_memory_bytes, m.memory_method, m.protocol

Protocol (recorded in ``Measurement.protocol`` so a number can be reproduced):

- Latency is INFERENCE latency of one batch by default (``train=False``: eval
  mode, ``torch.inference_mode``); ``train=True`` times one full training step
  instead (zero_grad, forward, cross-entropy, backward, optimizer step).
  ``warmup`` untimed runs, then ``repeats`` timed runs, each synchronised
  (CUDA events on CUDA, ``perf_counter`` on CPU); the median is the headline,
  with p10/p90, IQR, std and mean as the spread (timm: 10 warm-up + 40 timed).
- Peak memory is always TRAINING memory of one full step. On CUDA:
  ``reset_peak_memory_stats``, then one step after an untimed warm-up step (so
  cuDNN workspaces and the optimizer state exist, as in a steady-state step),
  reporting ``max_memory_allocated`` (tensors) and ``max_memory_reserved``
  (what decides an OOM). On CPU there is no reliable allocator peak, so the
  method is ``cpu-saved-tensors``: the bytes autograd saved during a REAL step
  (counted per storage) + parameters + gradients + optimizer state + buffers as
  they exist after that step. ``memory_method`` says which one was used.
- The optimizer is SGD with momentum (one state buffer per parameter) at lr 0,
  so timing a step costs what a real step costs but does not change the weights;
  batch-norm running statistics are restored afterwards.

Timings belong in benchmarks, not in tests; tests check the structure and the
memory counts, which are deterministic.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .footprint import SavedTensorCounter, make_optimizer, module_storages, tensor_bytes

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Measurement:
    """What one call of :func:`measure` observed.

    latency_ms: median, p10, p90, iqr, std, mean, min, max over ``repeats`` runs
        (milliseconds per batch).
    peak_memory_bytes: peak training memory of one step (see ``memory_method``).
    peak_reserved_bytes: CUDA ``max_memory_reserved`` (None on CPU).
    memory_breakdown: the terms behind the CPU figure (activations, params, ...).
    """

    latency_ms: dict[str, float]
    mode: str
    params: int
    peak_memory_bytes: int | None
    peak_reserved_bytes: int | None
    memory_method: str | None
    memory_breakdown: dict[str, int] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- inputs ----------------------------------------------------------------------------------


def _resolve_model(model_or_spec: Any) -> tuple[nn.Module, Any]:
    """A module (with its spec if it has one) from a module, ModelSpec, dict, path or zoo:NAME."""
    if isinstance(model_or_spec, nn.Module):
        return model_or_spec, getattr(model_or_spec, "spec", None)
    from . import load_spec  # lazy: keeps this module importable on its own

    spec = load_spec(model_or_spec)
    return spec.build(), spec


def _input_shape(spec: Any, input_size: Any) -> tuple[int, int, int]:
    """(C, H, W) from ``input_size`` ((C, H, W), (H, W) or an int) or the spec."""
    if input_size is None:
        if spec is None:
            raise ValueError("input_size=(C, H, W) is required for a module without a .spec")
        return (int(spec.input.channels), *(int(s) for s in spec.input.size))
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    size = tuple(int(s) for s in input_size)
    if len(size) == 2:
        channels = int(spec.input.channels) if spec is not None else 3
        return (channels, *size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"input_size {input_size!r}: expected (C, H, W), (H, W) or an int")
    return size  # type: ignore[return-value]


def _device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: allowed cpu, cuda, cuda:N or auto")
    return dev


def device_name(dev: torch.device) -> str:
    """The GPU's name, or the CPU model (from /proc/cpuinfo where there is one)."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


# -- timing ----------------------------------------------------------------------------------


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of already sorted values."""
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(samples_ms: list[float]) -> dict[str, float]:
    """Median and spread of timing samples (ms)."""
    values = sorted(samples_ms)
    p25, p75 = _percentile(values, 0.25), _percentile(values, 0.75)
    return {
        "median": statistics.median(values), "p10": _percentile(values, 0.10),
        "p90": _percentile(values, 0.90), "iqr": p75 - p25,
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "mean": statistics.fmean(values), "min": values[0], "max": values[-1],
        "n": float(len(values)),
    }


def _time_runs(fn: Callable[[], Any], dev: torch.device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
    return samples


# -- one training step -----------------------------------------------------------------------


def _loss(out: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against fixed labels for (B, classes) logits, else the mean."""
    out = out.float()
    if out.dim() == 2:
        target = torch.arange(out.shape[0], device=out.device) % out.shape[1]
        return F.cross_entropy(out, target)
    return out.mean()


def _autocast(dev: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                dev: torch.device, precision: str,
                counter: SavedTensorCounter | None = None) -> None:
    opt.zero_grad(set_to_none=True)
    hooks = counter.active() if counter is not None else contextlib.nullcontext()
    with hooks, _autocast(dev, precision):
        out = model(x)
    _loss(out).backward()
    opt.step()


# -- public API ------------------------------------------------------------------------------


def measure(model_or_spec: Any, batch: int = 1, input_size: Any = None, device: str = "auto",
            precision: str = "fp32", train: bool = False, warmup: int = 10, repeats: int = 40,
            channels_last: bool = False, threads: int | None = None,
            optimizer: str = "sgd_momentum", memory: bool = True) -> Measurement:
    """Latency of one batch (inference by default, a training step with ``train``) and the
    peak memory of one training step; see the module docstring for the protocol.

    ``model_or_spec``: an nn.Module (moved to ``device``; weights are left unchanged) or
    anything :func:`search_space.load_spec` takes (ModelSpec, dict, path, ``zoo:NAME``).
    ``threads`` sets torch's intra-op threads for the call only (restored afterwards).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: allowed {', '.join(PRECISIONS)}")
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch {batch!r}: a positive int is required")
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    dev = _device(device)
    model, spec = _resolve_model(model_or_spec)
    shape = _input_shape(spec, input_size)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    was_training = model.training
    saved_buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    try:
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model.to(device=dev, memory_format=memory_format)
        x = torch.randn(batch, *shape, device=dev).contiguous(memory_format=memory_format)
        opt = make_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad])

        try:
            mem = _measure_memory(model, opt, x, dev, precision) if memory else {}
            if train:
                model.train()
                samples = _time_runs(lambda: _train_step(model, opt, x, dev, precision), dev,
                                     warmup, repeats)
        except ValueError as err:  # batch norm cannot train on one value per channel
            if batch > 1:
                raise
            raise ValueError(f"a training step at batch 1 is impossible for this model "
                             f"({err}); measure training at batch >= 2, or inference "
                             "latency alone with memory=False") from None
        if not train:
            model.eval()

            def infer() -> None:
                with torch.inference_mode(), _autocast(dev, precision):
                    model(x)

            samples = _time_runs(infer, dev, warmup, repeats)
        protocol = {
            "mode": "train_step" if train else "inference", "warmup": warmup,
            "repeats": repeats, "statistic": "median; spread p10/p90, IQR, std",
            "batch": batch, "input": list(shape), "precision": precision,
            "device": str(dev), "device_name": device_name(dev),
            "torch": torch.__version__, "channels_last": channels_last,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "optimizer": f"{optimizer}, lr 0", "timer":
                "cuda events" if dev.type == "cuda" else "time.perf_counter",
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        }
        return Measurement(
            latency_ms=summarize(samples), mode=protocol["mode"],
            params=sum(p.numel() for p in model.parameters()),
            peak_memory_bytes=mem.get("peak"), peak_reserved_bytes=mem.get("reserved"),
            memory_method=mem.get("method"), memory_breakdown=mem.get("breakdown", {}),
            protocol=protocol)
    finally:
        with torch.no_grad():
            for name, buf in model.named_buffers():
                if name in saved_buffers:
                    buf.copy_(saved_buffers[name].to(buf.device))
        model.train(was_training)
        if threads is not None:
            torch.set_num_threads(old_threads)


def _measure_memory(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                    dev: torch.device, precision: str) -> dict[str, Any]:
    model.train()
    if dev.type == "cuda":
        # blocks cached before (another model's) would count in the reserved peak
        torch.cuda.empty_cache()
        _train_step(model, opt, x, dev, precision)  # warm-up: workspaces, optimizer state
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        _train_step(model, opt, x, dev, precision)
        torch.cuda.synchronize(dev)
        return {"peak": int(torch.cuda.max_memory_allocated(dev)),
                "reserved": int(torch.cuda.max_memory_reserved(dev)),
                "method": "cuda-max-allocated"}
    counter = SavedTensorCounter(module_storages(model))
    _train_step(model, opt, x, dev, precision, counter)
    state = [t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    breakdown = {
        "activation_bytes": counter.bytes,
        "param_bytes": tensor_bytes(model.parameters()),
        "grad_bytes": tensor_bytes(p.grad for p in model.parameters()),
        "optimizer_state_bytes": tensor_bytes(state),
        "buffer_bytes": tensor_bytes(model.buffers()),
    }
    opt.zero_grad(set_to_none=True)
    return {"peak": sum(breakdown.values()), "reserved": None,
            "method": "cpu-saved-tensors", "breakdown": breakdown}


def estimate_vs_measured(estimate: Any, measurement: Measurement) -> dict[str, dict[str, float]]:
    """Relative error (estimate - measured) / measured of each quantity both report.

    ``estimate`` is a :class:`search_space.cost.CostEstimate` for the same batch;
    params are always compared, training memory when the measurement has it (on CPU
    also each term of the breakdown).
    """
    batch = measurement.protocol.get("batch")
    if getattr(estimate, "batch", batch) != batch:
        raise ValueError(f"estimate is for batch {estimate.batch}, measurement for batch {batch}")
    pairs: dict[str, tuple[float, float]] = {"params": (estimate.params, measurement.params)}
    if measurement.peak_memory_bytes is not None:
        pairs["train_memory_bytes"] = (estimate.train_memory_bytes,
                                       measurement.peak_memory_bytes)
    est = estimate.memory_breakdown() if hasattr(estimate, "memory_breakdown") else {}
    for key, measured in measurement.memory_breakdown.items():
        if key in est:
            pairs[key] = (est[key], measured)
    out = {}
    for key, (e, m) in pairs.items():
        rel = (e - m) / m if m else (0.0 if e == m else math.inf)
        out[key] = {"estimate": e, "measured": m, "relative_error": rel}
    return out
