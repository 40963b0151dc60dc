"""Resources per trial: CPUs, whole or fractional GPUs, and ``gpus_per_trial: auto``.

A study's ``resources`` say what one trial holds on a Ray node:

- ``cpus_per_trial``: Ray CPUs (also the torch threads of a CPU trial);
- ``gpus_per_trial``: 0 (CPU trial), a fraction in (0, 1] (several trials share one
  GPU: 0.25 = four at a time), a whole number > 1 (a trial holds that many GPUs; Ray
  accepts fractions only up to 1), or ``auto``.

``auto`` picks the fraction from MEASURED memory, because Ray does not isolate GPU
memory between the trials that share a GPU: the fraction must leave room for each of
them (and each trial worker caps its process at its fraction, :mod:`nas.evaluate.gpu_share`,
so a candidate larger than the measured one runs out of memory alone instead of taking its
neighbours' memory). At the start of a search (and in ``--dry-run`` on a machine with a
GPU) we

1. draw a few candidates from the space (:mod:`nas.evaluate.candidates`) and take the one with
   the largest ESTIMATED training memory among those that pass the analytic checks
   (the others are never trained);
2. run ONE real training step of it at the study's batch size, precision and
   channels-last setting on a GPU (:func:`search_space.measure.measure`: peak
   ``max_memory_reserved``, what decides an out-of-memory error);
3. ``need = peak x (1 + HEADROOM) + CUDA_CONTEXT_BYTES`` (the headroom covers a larger
   candidate than the ones drawn and allocator fragmentation; the context is the CUDA
   context and cuDNN / cuBLAS workspaces each trial process holds, which the caching
   allocator does not count), and ``per_gpu = floor(device memory / need)`` trials fit
   on one GPU, capped at ``MAX_TRIALS_PER_GPU`` (beyond that the trials starve each
   other of compute, not memory); the fraction is ``1 / per_gpu`` (rounded down to Ray's
   4-decimal resolution, so that per_gpu of them still fit in 1.0). When even one trial
   needs more than the device has, the fraction is 1 (the checks of an over-large
   candidate then record it as infeasible on memory rather than sharing a GPU).

The measurement runs where a GPU is: in a child process when the driver has CUDA (so the
driver keeps no CUDA context on the GPU its trials use), else as a one-shot Ray task with
``num_gpus=1`` on the cluster named by ``--address``. A study's ``constraints.memory_mb``
bounds what a trained candidate may allocate; keep it at most ``fraction x device memory``
minus the context, and the plan warns when it is larger.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from ..study import Study

MIB = 2**20
#: fraction over the measured peak that a trial's share of the GPU must also hold.
HEADROOM = 0.25
#: per-process memory the caching allocator does not report (CUDA context, cuDNN/cuBLAS
#: workspaces); about 500 MiB on recent GPUs with PyTorch 2.x.
CUDA_CONTEXT_BYTES = 768 * MIB
#: at most this many trials share one GPU under ``auto``.
MAX_TRIALS_PER_GPU = 16
#: candidates drawn to find the largest one to measure.
AUTO_SAMPLES = 12


@dataclass(frozen=True)
class TrialResources:
    """What one trial holds: Ray CPUs and GPUs, and how the GPU figure was decided."""

    cpu: float
    gpu: float
    source: str  # "study" (a number in the study) or "auto" (measured)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def devices(self) -> float:
        """Devices the budget charges per second of trial time (a CPU trial: one)."""
        return self.gpu if self.gpu > 0 else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "gpu": self.gpu, "source": self.source,
                "devices_charged": self.devices, **self.detail}


# ---------------------------------------------------------------------- arithmetic
def gpu_fraction(peak_bytes: float, device_bytes: float, *, headroom: float = HEADROOM,
                 context_bytes: float = CUDA_CONTEXT_BYTES,
                 max_per_gpu: int = MAX_TRIALS_PER_GPU) -> float:
    """The GPU fraction of a trial whose one-step peak is ``peak_bytes`` on a device of
    ``device_bytes``: ``1 / floor(device / (peak (1 + headroom) + context))``, capped at
    ``max_per_gpu`` trials per GPU, rounded down to 4 decimals; 1.0 when one trial needs
    the whole device (or more)."""
    if peak_bytes < 0 or device_bytes <= 0:
        raise ValueError("peak_bytes must be >= 0 and device_bytes > 0")
    per_gpu = trials_per_gpu_for(peak_bytes, device_bytes, headroom=headroom,
                                 context_bytes=context_bytes, max_per_gpu=max_per_gpu)
    return math.floor(10_000 / per_gpu) / 10_000


def trials_per_gpu_for(peak_bytes: float, device_bytes: float, *,
                       headroom: float = HEADROOM, context_bytes: float = CUDA_CONTEXT_BYTES,
                       max_per_gpu: int = MAX_TRIALS_PER_GPU) -> int:
    """How many such trials fit on one device (at least 1)."""
    need = peak_bytes * (1.0 + headroom) + context_bytes
    return max(1, min(max_per_gpu, int(device_bytes // need)))


def trials_per_gpu(fraction: float) -> int:
    """How many trials of this GPU fraction Ray runs on one GPU at once."""
    if fraction <= 0:
        return 0
    if fraction >= 1:
        return 1
    return int(math.floor(1.0 / fraction + 1e-9))


# ---------------------------------------------------------------------- resolution
def trial_resources(study: Study) -> TrialResources:
    """The study's resources as written (``auto`` left undecided: gpu = nan)."""
    res = study.resources
    gpus = res.gpus_per_trial
    if gpus == "auto":
        return TrialResources(cpu=float(res.cpus_per_trial), gpu=math.nan, source="auto",
                              detail={"note": "measured at search start on a GPU"})
    return TrialResources(cpu=float(res.cpus_per_trial), gpu=float(gpus), source="study")


def resolve_resources(study: Study, address: str | None = None,
                      run: Any = None) -> Study:
    """The study with ``gpus_per_trial: auto`` replaced by a measured fraction (see the
    module docstring); any other study is returned unchanged. ``run`` (a RunDir) records
    the decision in run.json under ``resources``."""
    if study.resources.gpus_per_trial != "auto":
        return study
    decided = decide_auto(study, address=address)
    if run is not None:
        run.update_meta(resources=decided.to_dict())
    resources = dataclasses.replace(study.resources, gpus_per_trial=decided.gpu)
    return dataclasses.replace(study, resources=resources)


def decide_auto(study: Study, address: str | None = None) -> TrialResources:
    """Measure the largest drawn candidate's one-step peak on a GPU and choose the
    fraction (``TrialResources`` with the measurement in ``detail``)."""
    spec = largest_candidate(study)
    measured = _measure_somewhere(spec.to_dict(), study.to_dict(), address)
    fraction = gpu_fraction(measured["peak_reserved_bytes"], measured["device_bytes"])
    detail = {"measured_spec": spec.name, "peak_reserved_mb": measured["peak_reserved_bytes"] / MIB,
              "peak_allocated_mb": measured["peak_allocated_bytes"] / MIB,
              "device_memory_mb": measured["device_bytes"] / MIB,
              "device_name": measured["device_name"], "trials_per_gpu":
              trials_per_gpu(fraction), "headroom": HEADROOM,
              "context_mb": CUDA_CONTEXT_BYTES / MIB, "measured_where": measured["where"]}
    limit = study.constraints.get("memory_mb")
    if limit is not None:
        share = fraction * measured["device_bytes"] / MIB - CUDA_CONTEXT_BYTES / MIB
        if limit > share:
            detail["warning"] = (f"constraints.memory_mb {limit:g} is more than a trial's "
                                 f"share of the GPU ({share:.0f} MiB): a feasible candidate "
                                 "larger than the measured one may run out of memory")
    return TrialResources(cpu=float(study.resources.cpus_per_trial), gpu=fraction,
                          source="auto", detail=detail)


def largest_candidate(study: Study, n: int = AUTO_SAMPLES, seed: int = 0) -> Any:
    """Of ``n`` drawn candidates, the one with the largest estimated training memory
    among those that pass the analytic checks (all of them if none does)."""
    from .candidates import sample_candidates

    drawn = sample_candidates(study, n=n, seed=seed)
    pool = [c for c in drawn if c.feasible] or drawn
    return max(pool, key=lambda c: c.train_memory_mb).spec


def measure_peak(spec_dict: dict[str, Any], study_dict: dict[str, Any]) -> dict[str, Any]:
    """One real training step of ``spec_dict`` on this process's CUDA device, at the
    study's batch size, precision and memory format: peak reserved and allocated bytes,
    and the device's total memory. Runs in a child process or a Ray task."""
    import torch

    from search_space import ModelSpec
    from search_space.measure import measure

    from ..study import load_study
    from .checks import optimizer_name
    from .train import resolve_channels_last, resolve_precision

    study = load_study(study_dict)
    dev = torch.device("cuda")
    m = measure(ModelSpec.from_dict(spec_dict), batch=study.training.batch_size,
                device="cuda", precision=resolve_precision(study.training.precision, dev),
                channels_last=resolve_channels_last(study.training.channels_last, dev),
                optimizer=optimizer_name(study), warmup=0, repeats=1, memory=True)
    props = torch.cuda.get_device_properties(dev)
    return {"peak_reserved_bytes": int(m.peak_reserved_bytes or m.peak_memory_bytes or 0),
            "peak_allocated_bytes": int(m.peak_memory_bytes or 0),
            "device_bytes": int(props.total_memory), "device_name": props.name}


def _measure_in_child(spec_dict: dict[str, Any], study_dict: dict[str, Any]) -> dict[str, Any]:
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure_peak, (spec_dict, study_dict))


def _measure_somewhere(spec_dict: dict[str, Any], study_dict: dict[str, Any],
                       address: str | None) -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        return {**_measure_in_child(spec_dict, study_dict), "where": "driver (child process)"}
    if not address:
        raise UserError("study.resources.gpus_per_trial: auto measures one training step on "
                        "a GPU, but this machine has no CUDA GPU and no --address names a "
                        "Ray cluster with one; set a number instead (0 for CPU trials)")
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        if ray.cluster_resources().get("GPU", 0) < 1:
            raise UserError(f"study.resources.gpus_per_trial: auto needs a GPU to measure "
                            f"on, and the Ray cluster at {address} has none; set a number "
                            "instead (0 for CPU trials)")
        task = ray.remote(num_gpus=1, max_calls=1)(measure_peak)
        result = ray.get(task.remote(spec_dict, study_dict))
    finally:
        if started:
            ray.shutdown()
    return {**result, "where": f"Ray task on {address}"}
