"""A trial's share of a GPU that several trials use at once, and what a trial leaves behind.

Ray does not isolate GPU memory between the trials that share a GPU
(``gpus_per_trial`` < 1): its documentation leaves keeping each task inside its share to
the user. Seen on an H100 (benchmarks/results/cuda/search, five trials at 0.2 GPU each):
without a cap, one trial's transient peak took 38 GiB, and neighbours that needed 4-8 GiB
ran out of memory and were recorded infeasible for it, 8 of 56 candidates.

So a Ray trial worker caps its process at its share (:func:`confine`, PyTorch's
``set_per_process_memory_fraction``): a candidate too large for its share runs out of
memory itself, and its message names the share (:func:`oom_context`), while its
neighbours are untouched. And a worker process runs many trials one after another:
:func:`release` hands the cached blocks of the last one back to the GPU, so the next
trial's measured peak (``max_memory_reserved``) is its own and the cache does not grow
to the largest trial the process ever ran.
"""

from __future__ import annotations

import gc

import torch

GIB = 2**30
#: this process's cap: (share of the device, device bytes), once :func:`confine` set it.
_confined: tuple[float, int] | None = None


def confine(share: float, device: int = 0) -> bool:
    """Cap this process's CUDA allocations at ``share`` of the device when the share is a
    fraction (0 < share < 1) and CUDA is here; True when a cap was set."""
    global _confined
    if not 0 < share < 1 or not torch.cuda.is_available():
        return False
    torch.cuda.set_per_process_memory_fraction(share, device)
    _confined = (share, torch.cuda.get_device_properties(device).total_memory)
    return True


def oom_context() -> str:
    """What an out-of-memory message should add in a capped process: the share's size."""
    if _confined is None:
        return ""
    share, total = _confined
    return (f" (this trial's share of the GPU: {share * total / GIB:.1f} of "
            f"{total / GIB:.1f} GiB at gpus_per_trial {share:g}; a larger share fits "
            "larger candidates)")


def release(device: torch.device) -> None:
    """Give the allocator's cached blocks back to the GPU (after a trial, after an OOM)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
