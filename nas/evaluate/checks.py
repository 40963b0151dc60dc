"""The cheap pre-training checks of a candidate, compared with the study's constraints.

Cheap first: the analytic numbers (parameters, multiply-accumulates per image, estimated
peak training memory at the training batch size, from ``search_space.cost.estimate``)
cost no compute; only when none of them breaks a constraint are the device measurements
taken (inference latency with the study's latency protocol and, on CUDA, peak memory of
one real training step at the training batch size, via ``search_space.measure.measure``;
on the CPU the memory is the estimate unless it comes near the host's free memory, see
``run_checks``). A
candidate that breaks a constraint is never trained (a baseline is: it is a comparison,
measured in full and trained, its violations kept, see ``measure_all``).

Units: ``memory_mb`` is MiB (2**20 bytes), ``latency_ms`` the median milliseconds per
batch of ``measure.batch_size``, ``macs`` per image. A latency LIMIT is judged on the
10th percentile of the repeats (``nas.study.sections.JUDGED_ON``): other processes on a
shared machine add delay to some repeats and never remove any, so the low percentile is
the network's own latency and a loaded machine does not reject a candidate that meets
the limit; ``nas rank`` compares latency on the same statistic. ``violations`` maps a constraint
name to how far over its maximum the candidate is (same unit, > 0). Running out of
memory during the measurement (CUDA OOM or a host MemoryError) makes the candidate
infeasible on memory.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..study import Study
from ..study.sections import judged_value
from .gpu_share import oom_context, release

MIB = 2**20
#: the violation recorded for memory when a measurement ran out of memory but the
#: estimate was under the limit: the amount over is unknown, only that it is over.
OOM_MIN_OVER_MB = 1.0


@dataclass
class CheckResult:
    metrics: dict[str, Any] = field(default_factory=dict)
    violations: dict[str, float] = field(default_factory=dict)
    #: how the numbers were obtained: the memory estimate's method, and once measured
    #: the latency protocol (warmup, repeats, statistic, batch, device, threads, ...)
    #: and the memory measurement's method and batch.
    protocol: dict[str, Any] = field(default_factory=dict)
    measured: bool = False
    oom: bool = False
    message: str = ""
    check_s: float = 0.0

    @property
    def feasible(self) -> bool:
        return not self.violations


def is_oom(err: BaseException) -> bool:
    """A CUDA out-of-memory error or a host allocation failure."""
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    # A failed host allocation, or cuBLAS failing to get its workspace, is a plain
    # RuntimeError whose text says so.
    text = str(err)
    return isinstance(err, RuntimeError) and any(s in text for s in (
        "DefaultCPUAllocator: can't allocate", "CUBLAS_STATUS_ALLOC_FAILED",
        "CUDA out of memory"))


def optimizer_name(study: Study) -> str:
    """The optimizer name the cost model / measurement know for the study's training."""
    t = study.training
    if t.optimizer == "adamw":
        return "adamw"
    return "sgd_momentum" if t.momentum > 0 else "sgd"


def violations(values: dict[str, Any], constraints: dict[str, float]) -> dict[str, float]:
    """{name: value - maximum} for each constraint whose value is known and over (the
    value a limit is judged by: :func:`judged_value`)."""
    out = {}
    for name, limit in constraints.items():
        value = judged_value(values, name)
        if value is not None and value > limit:
            out[name] = float(value - limit)
    return out


def analytic_with_method(spec: Any, study: Study) -> tuple[dict[str, Any], dict[str, str]]:
    """Parameters, MACs per image, attention bytes per image and estimated training
    memory (MiB) at the training batch size, without running the model; and how the
    memory was estimated."""
    from search_space.cost import estimate

    batch = study.training.batch_size
    est = estimate(spec, batch=batch, optimizer=optimizer_name(study))
    # The estimate's totals are for the whole batch; constraints are per image.
    return {"params": int(est.params), "macs": int(est.macs // batch),
            "attention_bytes": int(est.attention_bytes // batch),
            "memory_est_mb": est.train_memory_bytes / MIB}, {
                "memory_estimate": f"{est.activation_method} activations + params, grads, "
                                   f"{est.optimizer} state at batch {batch}"}


def analytic(spec: Any, study: Study) -> dict[str, Any]:
    """The numbers of :func:`analytic_with_method` (all numeric)."""
    return analytic_with_method(spec, study)[0]


def run_checks(spec: Any, study: Study, model: nn.Module | None = None, *,
               device: torch.device, precision: str, channels_last: bool,
               measure_all: bool = False) -> CheckResult:
    """Analytic checks, then (if they pass, or always with ``measure_all``) measured
    latency and training memory of ``model`` (built from ``spec`` when not given) on
    ``device``; the violations of both."""
    start = time.perf_counter()
    result = CheckResult()
    limits = study.constraints
    numbers, method = analytic_with_method(spec, study)
    result.metrics.update(numbers)
    result.protocol.update(method)
    est = result.metrics
    result.violations = violations(
        {"params": est["params"], "macs": est["macs"], "memory_mb": est["memory_est_mb"]},
        limits)
    if result.violations and not measure_all:
        result.check_s = time.perf_counter() - start
        return result
    analytic_over = dict(result.violations)

    from search_space.measure import measure

    try:
        if model is None:
            model = spec.build()
        m = study.measure
        lat = measure(model, batch=m.batch_size, device=str(device), precision=precision,
                      warmup=m.warmup, repeats=m.repeats, channels_last=channels_last,
                      memory=False)
        # One real training step at the training batch size: what decides an OOM. On the
        # CPU there is no allocator peak and search_space.measure counts the same saved
        # tensors as the estimate, so the step (a third of the checks' time,
        # benchmarks/search_overhead.py) is taken only where the estimate says host
        # memory could run out.
        mem = (measure(model, batch=study.training.batch_size, device=str(device),
                       precision=precision, warmup=0, repeats=1,
                       channels_last=channels_last, optimizer=optimizer_name(study),
                       memory=True)
               if device.type == "cuda" or est["memory_est_mb"] * MIB > _host_headroom()
               else None)
    except Exception as err:  # noqa: BLE001 - only OOM is ours to classify; re-raise the rest
        if not is_oom(err):
            raise
        release(device)
        over = max(est["memory_est_mb"] - limits.get("memory_mb", 0.0), OOM_MIN_OVER_MB)
        result.violations = {"memory_mb": float(over)}
        result.oom = True
        result.message = f"out of memory during the checks{oom_context()}: {_first_line(err)}"
        result.check_s = time.perf_counter() - start
        return result
    result.measured = True
    result.protocol.update(lat.protocol)
    result.protocol.update(
        memory_method=mem.memory_method if mem else "estimate (cpu: " + method[
            "memory_estimate"] + ")",
        memory_batch=study.training.batch_size)
    result.metrics.update({
        "latency_ms": lat.latency_ms["median"], "latency_p10_ms": lat.latency_ms["p10"],
        "latency_p90_ms": lat.latency_ms["p90"],
        "memory_mb": (mem.peak_memory_bytes or 0) / MIB if mem else est["memory_est_mb"]})
    if mem is not None and mem.peak_reserved_bytes is not None:
        result.metrics["memory_reserved_mb"] = mem.peak_reserved_bytes / MIB
    result.violations = {**analytic_over, **violations(result.metrics, limits)}
    result.check_s = time.perf_counter() - start
    return result


def _host_headroom() -> float:
    """A quarter of the host memory available now, in bytes: an estimate above it makes
    a host OOM plausible enough to take the real training step in the checks."""
    return 0.25 * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"
