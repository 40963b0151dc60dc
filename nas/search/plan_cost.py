"""What one trial of a study costs on this device, and how many trials a budget pays
for (the arithmetic of the dry-run plan, :mod:`nas.search.plan`): ASHA's expected
epochs, a trained trial's seconds from one measured training step, and that step's
measurement."""

from __future__ import annotations

import math
import os
from typing import Any

from ..budget import Budget
from ..study import Study
from .asha import rung_epochs

#: first batch of the measured step on a CPU; it grows 4x while a step stays under
#: CPU_STEP_TARGET_MS, then the time is scaled linearly to the training batch.
CPU_MEASURE_BATCH = 4
CPU_STEP_TARGET_MS = 1000.0
#: a validation image costs this fraction of a training image (forward only).
EVAL_FRACTION = 1.0 / 3.0


# ---------------------------------------------------------------------- arithmetic
def asha_expected_epochs(epochs: int, grace: int, reduction_factor: float) -> float:
    """Expected epochs a trial trains under ASHA when each rung promotes 1/rf of the
    trials that reach it: every trial trains to the first rung, 1/rf of them on to the
    second, 1/rf^2 to the third, ..., and 1/rf^k of them (k rungs) to the last epoch."""
    rungs = rung_epochs(epochs, grace, reduction_factor)
    if not rungs:
        return float(epochs)
    total, previous = 0.0, 0.0
    for k, rung in enumerate([*rungs, float(epochs)]):
        total += (rung - previous) / reduction_factor ** k
        previous = rung
    return total


def trial_seconds(*, n_train: int, n_val: int, study: Study, step_s: float,
                  latency_s: float) -> dict[str, float]:
    """Wall seconds of one TRAINED trial at full fidelity, and its parts."""
    from ..evaluate.train import steps_per_epoch

    t = study.training
    steps = steps_per_epoch(n_train, t)
    per_image = step_s / t.batch_size
    eval_s = n_val * per_image * EVAL_FRACTION
    epoch_s = steps * step_s + eval_s
    m = study.measure
    checks_s = (m.warmup + m.repeats) * latency_s + 2 * step_s
    return {"steps_per_epoch": steps, "train_s_per_epoch": steps * step_s,
            "eval_s_per_epoch": eval_s, "epoch_s": epoch_s, "checks_s": checks_s,
            "full_s": checks_s + t.epochs * epoch_s}


def expected_trials(budget: Budget, *, trial_s: float, devices: float, parallel: int,
                    spent: float = 0.0) -> float:
    """Trials the (remaining) budget pays for at ``trial_s`` wall seconds per trial,
    each holding ``devices`` devices, ``parallel`` running at once."""
    left = budget.left(spent)
    if budget.kind == "trials":
        return left
    if trial_s <= 0:
        return math.inf
    if budget.kind == "device":
        return left / (trial_s * devices)
    return left * parallel / trial_s  # wall clock: trials overlap


def admitted_first(budget: Budget, trained_s: list[float], *, devices: float,
                   parallel: int, spent: float = 0.0) -> int:
    """How many of the trials a search evaluates first (``trained_s``: each one's wall
    seconds, in order) the budget starts: the search's admission rule
    (:func:`nas.budget.admit`) played out with ``parallel`` trials at once, each next one
    asked for when a slot is free or a trial ends. A budget smaller than the start points
    does not run them all."""
    from ..budget import admit, expected_cost

    def cost(seconds: float) -> float:  # of one trial, in the budget's base units
        return {"trials": 1.0, "device": seconds * devices}.get(budget.kind, seconds)

    clock, started = 0.0, 0
    running: list[tuple[float, float]] = []  # (end time, cost)
    finished: list[float] = []
    while started < len(trained_s):
        used = (clock if budget.kind == "wall" else sum(finished)) + (
            0.0 if budget.kind == "trials" else spent)
        told = len(finished) + (int(spent) if budget.kind == "trials" else 0)
        decision = ("wait" if len(running) >= max(1, parallel) else
                    admit(budget, spent=used, running=len(running), told=told,
                          expected=expected_cost(finished, finished, [])))
        if decision == "start":
            seconds = trained_s[started]
            running.append((clock + seconds, cost(seconds)))
            started += 1
        elif decision == "finished" or not running:
            break
        else:  # wait for the next trial to end
            running.sort()
            clock, done = running.pop(0)
            finished.append(done)
    return started


def start_cost(budget: Budget, trained_s: list[float], *, devices: float,
               parallel: int) -> float:
    """What the trials a search evaluates before proposing (start points, baselines;
    ``trained_s``: each one's wall seconds) take of ``budget``, in its base units."""
    if budget.kind == "trials":
        return float(len(trained_s))
    if budget.kind == "device":
        return sum(trained_s) * devices
    return sum(trained_s) / max(1, parallel)


# ---------------------------------------------------------------------- measuring
def measure_step(spec: Any, study: Study, device: Any) -> dict[str, Any]:
    """One training step of ``spec`` on ``device`` (see the module docstring), and its
    latency at the study's measure batch."""
    import torch

    from search_space.measure import measure

    from ..evaluate.checks import is_oom, optimizer_name
    from ..evaluate.train import resolve_channels_last, resolve_precision

    t = study.training
    cuda = device.type == "cuda"
    precision = resolve_precision(t.precision, device)
    channels_last = resolve_channels_last(t.channels_last, device)
    cores = len(os.sched_getaffinity(0))
    threads = None if cuda else max(1, min(cores, int(study.resources.cpus_per_trial)))
    common = {"device": str(device), "precision": precision, "channels_last": channels_last,
              "threads": threads, "memory": False}

    def step_at(batch: int) -> Any:
        return measure(spec, batch=batch, train=True, warmup=3 if cuda else 1,
                       repeats=10 if cuda else 1, optimizer=optimizer_name(study), **common)

    if cuda:  # the training batch, halved until it fits
        batch = t.batch_size
        while True:
            try:
                step = step_at(batch)
                break
            except Exception as err:  # noqa: BLE001 - only running out of memory is retried
                # not below 2: batch norm cannot take a training step on one image
                # of a 1x1 map
                if not (is_oom(err) and batch > 2):
                    raise
                torch.cuda.empty_cache()
                batch = max(2, batch // 2)
    else:  # a small batch, grown while a step stays cheap (small batches are overhead)
        batch = min(t.batch_size, CPU_MEASURE_BATCH)
        step = step_at(batch)
        while batch < t.batch_size and step.latency_ms["median"] * 4 < CPU_STEP_TARGET_MS:
            batch = min(t.batch_size, batch * 4)
            step = step_at(batch)
    m = study.measure
    lat = measure(spec, batch=m.batch_size, train=False, warmup=3 if cuda else 1,
                  repeats=10 if cuda else 2, **common)
    step_s = step.latency_ms["median"] / 1e3
    return {"spec": spec.name, "batch": batch, "step_s": step_s,
            "step_s_at_train_batch": step_s * t.batch_size / batch,
            "latency_ms": lat.latency_ms["median"], "precision": precision,
            "channels_last": channels_last, "threads": threads}


def device_info(device: Any) -> dict[str, Any]:
    import torch

    from search_space.measure import device_name

    info: dict[str, Any] = {"type": device.type, "name": device_name(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["memory_mb"] = props.total_memory / 2**20
        info["count"] = torch.cuda.device_count()
    else:
        info["cores"] = len(os.sched_getaffinity(0))
    return info
