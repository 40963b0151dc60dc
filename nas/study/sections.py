"""The sections of a study file as frozen dataclasses with their defaults, and the names
a study may use (metrics, datasets, samplers). Plain data: the checks that fill them are
in :mod:`nas.study.parse`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..evaluate.digit_scenes import ScenesConfig

#: metric names a study may optimise or constrain.
METRICS = ("accuracy", "latency_ms", "memory_mb", "params", "macs")
#: metrics a constraint may bound from above (accuracy is an objective, never a maximum).
CONSTRAINT_METRICS = ("latency_ms", "memory_mb", "params", "macs")
#: the measured statistic a limit is judged by, where it is not the metric itself:
#: latency by the 10th percentile of its repeats (load on a shared machine adds delay to
#: some repeats and never removes any; nas.evaluate.checks). ``nas rank`` compares on it.
JUDGED_ON = {"latency_ms": "latency_p10_ms"}
DATASETS = ("digits", "digit-scenes", "cifar10", "cifar100", "imagefolder", "synthetic")
SAMPLERS = ("nsga2", "tpe", "random", "gp")


@dataclass(frozen=True)
class SyntheticConfig:
    """Random tensors with a learnable signal (class prototypes + noise); tests only."""

    channels: int = 3
    size: tuple[int, int] = (32, 32)
    classes: int = 10
    train: int = 256
    val: int = 64
    #: prototype amplitude over unit noise; 0 = pure noise (nothing to learn).
    signal: float = 1.0


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    val_fraction: float = 0.2
    split_seed: int = 0
    augment: str = "none"  # none | standard (random crop pad 4 + horizontal flip)
    #: where cifar*/imagefolder data live (``--data-dir`` overrides).
    root: str | None = None
    #: imagefolder only: resize images to this (H, W); None = keep the files' size.
    size: tuple[int, int] | None = None
    #: use only this many training examples (after the split); None = all.
    subset: int | None = None
    #: DataLoader workers for datasets read from files (imagefolder); tensors need none.
    workers: int = 0
    synthetic: SyntheticConfig | None = None
    #: digit-scenes only: how the images are composed (nas/evaluate/digit_scenes.py).
    scenes: ScenesConfig | None = None


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 4
    batch_size: int = 64
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.05
    momentum: float = 0.9  # SGD momentum; AdamW beta1
    weight_decay: float = 5.0e-4
    schedule: str = "cosine"  # cosine | step | constant
    warmup_epochs: float = 0.0
    #: step schedule: multiply the lr by ``gamma`` at these fractions of the run.
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    label_smoothing: float = 0.0
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    channels_last: bool | str = "auto"  # auto = on CUDA only
    max_steps_per_epoch: int | None = None
    eval_batch_size: int = 256
    #: torch.compile the model for training (off by default: compiling costs tens of
    #: seconds per candidate, see benchmarks/train_throughput.py for what it pays back).
    compile: bool = False


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str  # maximize | minimize


@dataclass(frozen=True)
class MeasureConfig:
    """Latency protocol of the pre-training checks (recorded with every result)."""

    batch_size: int = 1
    warmup: int = 5
    repeats: int = 20


@dataclass(frozen=True)
class SamplerConfig:
    name: str = "nsga2"
    seed: int = 0
    #: extra keyword arguments for the Optuna sampler (plain values).
    options: dict[str, Any] = field(default_factory=dict)
    #: baselines (entries of ``Study.baselines``, each a point of the space) evaluated
    #: first in every search and told to the sampler with their params: the search
    #: starts from the hand-designed networks (Ray Tune's ``points_to_evaluate``).
    start_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResourcesConfig:
    concurrency: int = 2
    cpus_per_trial: float = 1
    #: 0, a fraction in (0, 1], a whole number, or "auto" (nas.evaluate.cluster decides).
    gpus_per_trial: float | str = 0
    #: the device profile (``nas profile-device``: a YAML path or a shipped profile name)
    #: that ``--dry-run`` prices a trial with on a machine without the study's device.
    device_profile: str | None = None


@dataclass(frozen=True)
class FidelityConfig:
    scheduler: str = "asha"  # asha | none
    grace_epochs: int = 1
    reduction_factor: float = 2


def judged_value(values: dict[str, Any], name: str) -> Any:
    """The value of ``name`` a limit is judged by (``JUDGED_ON``, else ``name`` itself)."""
    value = values.get(JUDGED_ON.get(name, name))
    return values.get(name) if value is None else value
