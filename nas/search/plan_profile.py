"""The dry-run plan's price of a trial from a device profile instead of a step timed here.

``nas search STUDY --dry-run`` times one training step of the typical candidate on the
machine it runs on. That is right when the study will train on this machine's kind of
device, and wrong otherwise: a laptop's CPU says nothing about an H100. So:

- with a profile (``--device-profile`` or the study's ``resources.device_profile``),
  the step is PREDICTED from the profile (:func:`nas.evaluate.device_profile.predict_step_s`) and
  ``gpus_per_trial: auto`` is decided from its memory rule;
- a study that trains on GPUs (``gpus_per_trial`` > 0 or ``auto``) planned on a machine
  without one and without a profile is not priced at all: the plan says so and how to
  get a profile, rather than count hours from the CPU.
"""

from __future__ import annotations

import math
from typing import Any

from ..evaluate.device_profile import (
    describe,
    predict_step_s,
    predicted_peak_bytes,
    trials_per_device,
)
from ..study import Study

#: inference of one image costs about this fraction of a training step's image.
INFERENCE_FRACTION = 1.0 / 3.0
#: warn when a block's work is more than this many times the largest measured point's.
EXTRAPOLATION_WARN_X = 4.0


def trains_on_gpu(study: Study) -> bool:
    gpus = study.resources.gpus_per_trial
    return gpus == "auto" or float(gpus) > 0


def no_profile_warning(study: Study) -> str:
    gpus = study.resources.gpus_per_trial
    return (f"not priced: this study trains on GPUs (gpus_per_trial: {gpus}) and this "
            "machine has none, and no device profile was given; a CPU step says nothing "
            "about a GPU. Run `nas profile-device --out gpu.yaml` once on the GPU and pass "
            "--device-profile gpu.yaml (or set resources.device_profile in the study)")


def price_with_profile(spec: Any, study: Study, profile: dict[str, Any]) -> dict[str, Any]:
    """What :func:`nas.search.plan.measure_step` returns, predicted from ``profile``."""
    batch = study.training.batch_size
    step = predict_step_s(spec, profile, batch)
    latency = predict_step_s(spec, profile, study.measure.batch_size)["step_s"]
    s = profile["setting"]
    parts = {k: v for k, v in step.items() if k not in ("step_s", "beyond_measured_x")}
    return {"spec": spec.name, "batch": batch, "step_s": step["step_s"],
            "beyond_measured_x": step["beyond_measured_x"],
            "step_s_at_train_batch": step["step_s"],
            "latency_ms": latency * INFERENCE_FRACTION * 1e3,
            "precision": s["precision"], "channels_last": s["channels_last"],
            "threads": profile["device"].get("threads"), "source": "device profile",
            "parts_s": parts}


def extrapolation_warning(measured: dict[str, Any]) -> str | None:
    """A warning when the typical candidate's blocks lie far beyond the profile's grid
    (the curves are then extended linearly: a rough price)."""
    x = measured.get("beyond_measured_x", 1.0)
    if x <= EXTRAPOLATION_WARN_X:
        return None
    return (f"the typical candidate's largest block is {x:.0f}x the work of the "
            "profile's largest measured point: the price extrapolates the profile "
            "linearly; measure a profile with maps and channels like this study's")


def profile_info(profile: dict[str, Any], study: Study) -> tuple[dict[str, Any], list[str]]:
    """The profile as the plan reports it, and warnings about how well it fits."""
    import torch

    from ..evaluate.train import resolve_precision

    d, s = profile["device"], profile["setting"]
    warnings = []
    want = resolve_precision(study.training.precision, torch.device(d["type"]))
    if want != s["precision"]:
        warnings.append(f"device profile measured {s['precision']}, the study trains "
                        f"{want} on {d['type']}: the price is off by the precision's speed-up")
    if d["type"] == "cpu" and trains_on_gpu(study):
        warnings.append("device profile is of a CPU, the study trains on GPUs")
    if d["type"] == "cuda" and not trains_on_gpu(study):
        warnings.append("device profile is of a GPU, the study trains on CPUs "
                        "(gpus_per_trial: 0)")
    info = {"path": profile["path"], "describe": describe(profile), **d,
            "precision": s["precision"]}
    return info, warnings


def auto_resources(drawn: list[Any], profile: dict[str, Any]) -> dict[str, Any]:
    """``gpus_per_trial: auto`` decided from the profile's memory rule for the largest
    drawn candidate that passes the analytic checks (as nas.evaluate.cluster does with a
    measured step at search start)."""
    from ..evaluate.cluster import MIB

    pool = [c for c in drawn if c.feasible] or drawn
    largest = max(pool, key=lambda c: c.train_memory_mb)
    per_gpu = trials_per_device(largest.train_memory_mb * MIB, profile)
    fraction = math.floor(10_000 / per_gpu) / 10_000
    return {"gpu": fraction, "devices_charged": fraction, "trials_per_gpu": per_gpu,
            "predicted_peak_mb": predicted_peak_bytes(largest.train_memory_mb * MIB,
                                                      profile) / MIB,
            "note": f"from the device profile's memory rule for {largest.spec.name}; "
                    "measured again on the GPU at search start"}
