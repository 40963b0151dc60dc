"""A study file: what a search is about (data, proxy training, objectives, constraints,
latency protocol, search space, sampler, resources, early stopping, budget, baselines).

``load_study(path_or_None)`` reads a YAML study (safe loading only), checks every field
and returns a frozen :class:`Study`; ``None`` means the packaged offline digits study
(``studies/digits.yaml``, package data ``nas.studies``). Every mistake raises ONE
:class:`nas.errors.UserError` whose message starts with the field's path, e.g.
``study.training.epochs: -1 is not a positive int``, and says what is allowed. Unknown
keys are errors (a typo must not silently fall back to a default).

``Study.to_dict()`` is the resolved study (defaults filled, baseline paths absolute) that
the search saves into its run directory, so a resume reads only that directory;
``load_study(study.to_dict())`` gives back an equal study.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError
from .evaluate.digit_scenes import TASKS as SCENE_TASKS
from .evaluate.digit_scenes import ScenesConfig, check_config

#: metric names a study may optimise or constrain.
METRICS = ("accuracy", "latency_ms", "memory_mb", "params", "macs")
#: metrics a constraint may bound from above (accuracy is an objective, never a maximum).
CONSTRAINT_METRICS = ("latency_ms", "memory_mb", "params", "macs")
DATASETS = ("digits", "digit-scenes", "cifar10", "cifar100", "imagefolder", "synthetic")
SAMPLERS = ("nsga2", "tpe", "random", "gp")
DEFAULT_STUDY = "digits"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# --------------------------------------------------------------------------- sections
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


@dataclass(frozen=True)
class Study:
    name: str
    space_dict: dict[str, Any]
    version: int = 1
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    objectives: tuple[Objective, ...] = (Objective("accuracy", "maximize"),)
    constraints: dict[str, float] = field(default_factory=dict)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    #: device-time budget string ("20gpumin"); None = the caller must give one.
    budget: str | None = None
    #: "zoo:NAME" or absolute spec paths (resolved against the study file's folder).
    baselines: tuple[str, ...] = ()
    #: the file it came from (not part of to_dict).
    source: str | None = field(default=None, compare=False)

    @property
    def space(self):
        """The parsed ``search_space.SearchSpace`` (built on demand, cached)."""
        cached = self.__dict__.get("_space")
        if cached is None:
            cached = _parse_space(self.space_dict)
            object.__setattr__(self, "_space", cached)
        return cached

    def __getstate__(self) -> dict[str, Any]:
        # Ship the plain fields only (Ray pickles the study to every worker); the parsed
        # space is rebuilt on first use there.
        state = dict(self.__dict__)
        state.pop("_space", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def primary(self) -> Objective:
        """The first objective: ASHA and "best" rank by it."""
        return self.objectives[0]

    @property
    def input_channels(self) -> int:
        return int(self.space_dict["input"]["channels"])

    @property
    def input_size(self) -> tuple[int, int]:
        return _size_pair(self.space_dict["input"]["size"])

    @property
    def classes(self) -> int:
        return int(self.space_dict["classes"])

    def check_data(self, bundle: Any) -> None:
        """Raise UserError unless a loaded DataBundle has the space's input and classes."""
        want = (self.input_channels, self.input_size, self.classes)
        got = (bundle.channels, tuple(bundle.size), bundle.classes)
        if want != got:
            raise UserError(
                f"study.space: input {_shape_str(*want)} does not match dataset "
                f"{self.data.dataset!r} which gives {_shape_str(*got)}")

    def to_dict(self) -> dict[str, Any]:
        """The resolved study as plain values (defaults filled)."""
        data = _plain(self.data)
        for section in ("synthetic", "scenes"):
            if getattr(self.data, section) is None:
                data.pop(section)
        return {
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "data": data,
            "training": _plain(self.training),
            "objectives": [_plain(o) for o in self.objectives],
            "constraints": dict(self.constraints),
            "measure": _plain(self.measure),
            "space": _plain(self.space_dict),
            "sampler": _plain(self.sampler),
            "resources": _plain(self.resources),
            "fidelity": _plain(self.fidelity),
            "budget": self.budget,
            "baselines": list(self.baselines),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# --------------------------------------------------------------------------- loading
def load_study(source: str | Path | dict[str, Any] | Study | None = None) -> Study:
    """Read and validate a study.

    ``source``: None (the packaged digits study), a path to a YAML file, the name of a
    packaged study ("digits"), a dict (plain values, as ``Study.to_dict()``), or a Study.
    """
    if isinstance(source, Study):
        return source
    if isinstance(source, dict):
        return parse_study(source, base_dir=Path.cwd())
    path = _find_file(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(f"study: cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"study: {path} is not a YAML text file (byte {err.start} is not "
                        "UTF-8 text)") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"study: {path}{where} is not valid YAML: {problem}") from None
    study = parse_study(raw, base_dir=path.parent)
    object.__setattr__(study, "source", str(path))
    return study


def packaged_studies() -> list[str]:
    """Names of the studies shipped with the package."""
    root = resources.files("nas.studies")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def _find_file(source: str | Path | None) -> Path:
    if source is None:
        source = DEFAULT_STUDY
    path = Path(source)
    if path.exists():
        return path
    name = str(source)
    if "/" not in name and not name.endswith((".yaml", ".yml")):
        packaged = resources.files("nas.studies") / f"{name}.yaml"
        if packaged.is_file():
            return Path(str(packaged))
    known = ", ".join(packaged_studies())
    raise UserError(f"study: no such file {str(source)!r} (packaged studies: {known})")


def parse_study(raw: Any, base_dir: Path | None = None) -> Study:
    """Validate plain values into a Study; relative baseline paths resolve against
    ``base_dir``."""
    p = "study"
    _mapping(raw, p)
    _keys(raw, p, required=("name", "space"), allowed=(
        "version", "name", "description", "data", "training", "objectives", "constraints",
        "measure", "space", "sampler", "resources", "fidelity", "budget", "baselines"))
    version = raw.get("version", 1)
    if version != 1 or isinstance(version, bool):
        raise UserError(f"{p}.version: {version!r} is not supported; allowed: 1")
    name = raw["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UserError(f"{p}.name: {name!r} is not a name (letters, digits, '.', '_', '-')")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise UserError(f"{p}.description: {description!r} is not a string")

    data = _parse_data(raw.get("data", {}), f"{p}.data")
    training = _parse_training(raw.get("training", {}), f"{p}.training")
    objectives = _parse_objectives(raw.get("objectives", [
        {"metric": "accuracy", "direction": "maximize"}]), f"{p}.objectives")
    constraints = _parse_constraints(raw.get("constraints", {}), f"{p}.constraints")
    measure = MeasureConfig(**_section(raw.get("measure", {}), f"{p}.measure", {
        "batch_size": _pos_int, "warmup": _nonneg_int, "repeats": _pos_int}))
    sampler = _parse_sampler(raw.get("sampler", {}), f"{p}.sampler")
    resources_ = ResourcesConfig(**_section(raw.get("resources", {}), f"{p}.resources", {
        "concurrency": _pos_int, "cpus_per_trial": _pos_number,
        "gpus_per_trial": _gpus, "device_profile": _opt(_string)}))
    fidelity = _parse_fidelity(raw.get("fidelity", {}), f"{p}.fidelity", training,
                               objectives)
    budget = _parse_budget(raw.get("budget"), f"{p}.budget")
    baselines = _parse_baselines(raw.get("baselines", []), f"{p}.baselines",
                                 base_dir or Path.cwd())

    space_dict = raw["space"]
    _mapping(space_dict, f"{p}.space")
    study = Study(name=name, space_dict=space_dict, version=1, description=description,
                  data=data, training=training, objectives=objectives,
                  constraints=constraints, measure=measure, sampler=sampler,
                  resources=resources_, fidelity=fidelity, budget=budget,
                  baselines=baselines)
    study.space  # noqa: B018 - validate the space now, with the study.space. prefix
    _check_agreement(study)
    return study


# --------------------------------------------------------------------------- sections
def _parse_data(raw: Any, p: str) -> DataConfig:
    _mapping(raw, p)
    values = _section({k: v for k, v in raw.items() if k not in ("synthetic", "scenes")},
                      p, {
        "dataset": _choice(DATASETS), "val_fraction": _open_fraction,
        "split_seed": _nonneg_int, "augment": _choice(("none", "standard")),
        "root": _opt(_string), "size": _opt(_size), "subset": _opt(_pos_int),
        "workers": _nonneg_int}, extra=("synthetic", "scenes"))
    dataset = values.get("dataset", "digits")
    synthetic = None
    if "synthetic" in raw:
        if dataset != "synthetic":
            raise UserError(f"{p}.synthetic: only allowed with dataset: synthetic "
                            f"(dataset is {dataset!r})")
        synthetic = SyntheticConfig(**_section(raw["synthetic"], f"{p}.synthetic", {
            "channels": _pos_int, "size": _size, "classes": _min_int(2),
            "train": _pos_int, "val": _pos_int, "signal": _nonneg_number}))
    elif dataset == "synthetic":
        synthetic = SyntheticConfig()
    if values.get("size") is not None and dataset != "imagefolder":
        raise UserError(f"{p}.size: only allowed with dataset: imagefolder "
                        f"(dataset {dataset!r} has a fixed size)")
    return DataConfig(**values, synthetic=synthetic,
                      scenes=_parse_scenes(raw.get("scenes"), dataset, f"{p}.scenes"))


def _parse_scenes(raw: Any, dataset: str, p: str) -> ScenesConfig | None:
    if raw is None:
        return ScenesConfig() if dataset == "digit-scenes" else None
    if dataset != "digit-scenes":
        raise UserError(f"{p}: only allowed with dataset: digit-scenes "
                        f"(dataset is {dataset!r})")
    cfg = ScenesConfig(**_section(raw, p, {
        "task": _choice(SCENE_TASKS), "size": _min_int(8), "train": _pos_int,
        "val": _pos_int, "seed": _nonneg_int, "digit_scale": _pos_int,
        "clutter": _nonneg_int, "clutter_size": _pos_int, "min_distance": _nonneg_int}))
    problem = check_config(cfg)
    if problem:
        raise UserError(f"{p}.{problem}")
    return cfg


def _parse_training(raw: Any, p: str) -> TrainingConfig:
    values = _section(raw, p, {
        "epochs": _pos_int, "batch_size": _pos_int,
        "optimizer": _choice(("sgd", "adamw")), "lr": _pos_number,
        "momentum": _fraction_excl_one, "weight_decay": _nonneg_number,
        "schedule": _choice(("cosine", "step", "constant")),
        "warmup_epochs": _nonneg_number, "milestones": _milestones, "gamma": _unit_gamma,
        "label_smoothing": _fraction_excl_one,
        "precision": _choice(("auto", "fp32", "bf16")), "channels_last": _auto_bool,
        "max_steps_per_epoch": _opt(_pos_int), "eval_batch_size": _pos_int,
        "compile": _bool})
    cfg = TrainingConfig(**values)
    if cfg.warmup_epochs >= cfg.epochs and cfg.warmup_epochs > 0:
        raise UserError(f"{p}.warmup_epochs: {cfg.warmup_epochs!r} must be less than "
                        f"epochs ({cfg.epochs})")
    return cfg


def _parse_objectives(raw: Any, p: str) -> tuple[Objective, ...]:
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{p}: {raw!r} is not a non-empty list of "
                        "{metric, direction} maps")
    out: list[Objective] = []
    for i, item in enumerate(raw):
        q = f"{p}[{i}]"
        values = _section(item, q, {"metric": _choice(METRICS),
                                    "direction": _choice(("maximize", "minimize"))},
                          required=("metric", "direction"))
        if any(o.metric == values["metric"] for o in out):
            raise UserError(f"{q}.metric: {values['metric']!r} is listed twice")
        out.append(Objective(**values))
    return tuple(out)


def _parse_constraints(raw: Any, p: str) -> dict[str, float]:
    _mapping(raw, p)
    out: dict[str, float] = {}
    for key, value in raw.items():
        if key not in CONSTRAINT_METRICS:
            raise UserError(f"{p}.{key}: unknown constraint; allowed (maxima): "
                            f"{', '.join(CONSTRAINT_METRICS)}")
        out[key] = _pos_number(value, f"{p}.{key}")
    return out


def _parse_sampler(raw: Any, p: str) -> SamplerConfig:
    values = _section(raw, p, {"name": _choice(SAMPLERS), "seed": seed_value},
                      extra=("options",))
    options = raw.get("options", {}) if isinstance(raw, dict) else {}
    _mapping(options, f"{p}.options")
    for key, value in options.items():
        _plain_value(value, f"{p}.options.{key}")
    return SamplerConfig(**values, options=dict(options))


def _parse_fidelity(raw: Any, p: str, training: TrainingConfig,
                    objectives: tuple[Objective, ...]) -> FidelityConfig:
    values = _section(raw, p, {"scheduler": _choice(("asha", "none")),
                               "grace_epochs": _pos_int, "reduction_factor": _rf})
    cfg = FidelityConfig(**values)
    if cfg.scheduler == "asha":
        if cfg.grace_epochs > training.epochs:
            raise UserError(f"{p}.grace_epochs: {cfg.grace_epochs} is more than "
                            f"study.training.epochs ({training.epochs})")
        if objectives[0].metric != "accuracy":
            raise UserError(f"{p}.scheduler: asha stops trials on the primary objective "
                            f"per epoch, which must then be accuracy (it is "
                            f"{objectives[0].metric!r}); use scheduler: none or put "
                            "accuracy first")
    return cfg


def _parse_budget(raw: Any, p: str) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise UserError(f"{p}: {raw!r} is not a budget string such as '20gpumin'")
    raw = str(raw)
    try:
        from .budget import parse_budget
    except ImportError:  # the search side's budget parser is not there: accept the string
        return raw
    try:
        parse_budget(raw)
    except (UserError, ValueError) as err:
        raise UserError(f"{p}: {_strip_prefix(str(err))}") from None
    return raw


def _parse_baselines(raw: Any, p: str, base_dir: Path) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise UserError(f"{p}: {raw!r} is not a list of 'zoo:NAME' or spec paths")
    out = []
    for i, item in enumerate(raw):
        q = f"{p}[{i}]"
        if not isinstance(item, str) or not item:
            raise UserError(f"{q}: {item!r} is not 'zoo:NAME' or a spec path")
        if item.startswith("zoo:"):
            known = _zoo_names()
            if known is not None and item[4:] not in known:
                raise UserError(f"{q}: unknown zoo model {item[4:]!r}; known: "
                                f"{', '.join(known)}")
            out.append(item)
            continue
        path = (base_dir / item).resolve()
        if not path.is_file():
            # A copy of a packaged study (e.g. studies/digits.yaml edited elsewhere) still
            # finds the baselines shipped beside the original.
            shipped = Path(str(resources.files("nas.studies"))) / item
            if Path(item).is_absolute() or not shipped.is_file():
                raise UserError(f"{q}: no such spec file {item!r} (looked at {path}, and "
                                f"among the packaged studies' at {shipped})")
            path = shipped.resolve()
        out.append(str(path))
    return tuple(out)


def _zoo_names() -> list[str] | None:
    try:
        from search_space.zoo import list_zoo
    except ImportError:
        return None
    return sorted(list_zoo())


def _parse_space(space_dict: dict[str, Any]):
    """SearchSpace.from_dict with errors re-raised as UserError under study.space."""
    from convattn.errors import ConfigError
    from search_space import SearchSpace
    from search_space.errors import SpecError

    try:
        return SearchSpace.from_dict(space_dict)
    except (SpecError, ConfigError, UserError) as err:
        text = _strip_prefix(str(err))
        if not text.startswith("space"):
            text = f"space.{text}" if not text.startswith("[") else f"space{text}"
        raise UserError(f"study.{text}") from None


def _strip_prefix(text: str) -> str:
    """Drop a leading 'study.' so that nested errors are not prefixed twice."""
    return text[len("study."):] if text.startswith("study.") else text


# Shapes the datasets give when that is known without reading files.
_FIXED_SHAPES = {"digits": (1, (8, 8), 10), "cifar10": (3, (32, 32), 10),
                 "cifar100": (3, (32, 32), 100)}


def _check_agreement(study: Study) -> None:
    """The dataset's channels/size/classes must be the space's input/classes."""
    try:
        want = (study.input_channels, study.input_size, study.classes)
    except (KeyError, TypeError, ValueError):
        raise UserError("study.space: needs input: {channels, size} and classes") from None
    data = study.data
    if data.dataset in _FIXED_SHAPES:
        got = _FIXED_SHAPES[data.dataset]
    elif data.dataset == "synthetic":
        s = data.synthetic
        got = (s.channels, s.size, s.classes)
    elif data.dataset == "digit-scenes":
        got = (1, (data.scenes.size, data.scenes.size), 10)
    else:  # imagefolder: classes are known when the folder is read (Study.check_data)
        got = (3, data.size or want[1], want[2])
    if want != got:
        raise UserError(
            f"study.space: input {_shape_str(*want)} does not match study.data.dataset "
            f"{data.dataset!r} which gives {_shape_str(*got)}; set space.input "
            f"{{channels: {got[0]}, size: [{got[1][0]}, {got[1][1]}]}} and classes: {got[2]}")


def _shape_str(channels: int, size: tuple[int, int], classes: int) -> str:
    return f"{channels}x{size[0]}x{size[1]} with {classes} classes"


# --------------------------------------------------------------------------- validators
def _mapping(value: Any, p: str) -> None:
    if not isinstance(value, dict):
        raise UserError(f"{p}: {value!r} is not a mapping")
    for key in value:
        if not isinstance(key, str):
            raise UserError(f"{p}: key {key!r} is not a string")


def _keys(raw: dict[str, Any], p: str, allowed: tuple[str, ...],
          required: tuple[str, ...] = ()) -> None:
    for key in raw:
        if key not in allowed:
            raise UserError(f"{p}.{key}: unknown key; allowed: {', '.join(allowed)}")
    for key in required:
        if key not in raw:
            raise UserError(f"{p}.{key}: missing (required)")


def _section(raw: Any, p: str, checks: dict[str, Any], required: tuple[str, ...] = (),
             extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check a mapping's keys against ``checks`` (key -> validator(value, path))."""
    if raw is None:
        raw = {}
    _mapping(raw, p)
    _keys(raw, p, allowed=tuple(checks) + extra, required=required)
    return {k: checks[k](v, f"{p}.{k}") for k, v in raw.items() if k in checks}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(float(v)))


def _pos_int(v: Any, p: str) -> int:
    if not _is_int(v) or v < 1:
        raise UserError(f"{p}: {v!r} is not a positive int")
    return int(v)


#: the largest seed NumPy and Optuna's samplers accept.
SEED_MAX = 2**32 - 1


def seed_value(v: Any, p: str) -> int:
    """What NumPy and Optuna's samplers accept: an int in 0..2**32-1 (``p`` names the
    field or option in the error)."""
    if not _is_int(v) or not 0 <= v <= SEED_MAX:
        raise UserError(f"{p}: {v!r} is not a seed (an integer from 0 to 2**32-1)")
    return v


def _nonneg_int(v: Any, p: str) -> int:
    if not _is_int(v) or v < 0:
        raise UserError(f"{p}: {v!r} is not an int >= 0")
    return int(v)


def _min_int(low: int):
    def check(v: Any, p: str) -> int:
        if not _is_int(v) or v < low:
            raise UserError(f"{p}: {v!r} is not an int >= {low}")
        return int(v)
    return check


# PyYAML (YAML 1.1) reads exponents without a sign ("2.0e6", "1e5") as STRINGS; a
# study author means a number, so such strings are accepted where a number is wanted.
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _number(v: Any) -> float | int | None:
    """``v`` as a finite number (int or float), or None."""
    if isinstance(v, str) and _FLOAT_TEXT.match(v.strip()):
        v = float(v)
        v = int(v) if v.is_integer() and abs(v) < 2**53 else v
    return v if _is_number(v) else None


def _ranged(test, what: str):
    def check(v: Any, p: str) -> float:
        n = _number(v)
        if n is None or not test(n):
            raise UserError(f"{p}: {v!r} is not {what}")
        return n
    return check


_pos_number = _ranged(lambda n: n > 0, "a positive number")
_nonneg_number = _ranged(lambda n: n >= 0, "a number >= 0")
_open_fraction = _ranged(lambda n: 0 < n < 1, "a number strictly between 0 and 1")
_fraction_excl_one = _ranged(lambda n: 0 <= n < 1, "a number in [0, 1)")
_unit_gamma = _ranged(lambda n: 0 < n <= 1, "a number in (0, 1]")
_rf = _ranged(lambda n: n > 1, "a number > 1")


def _gpus(v: Any, p: str) -> float | str:
    from .evaluate.cluster import check_gpus  # lazy: nas.evaluate.cluster imports this module

    return check_gpus(v, p)


def _milestones(v: Any, p: str) -> tuple[float, ...]:
    values = [_number(x) for x in v] if isinstance(v, list) else [None]
    if not all(x is not None and 0 < x < 1 for x in values) or sorted(values) != values:
        raise UserError(f"{p}: {v!r} is not an increasing list of fractions of the run "
                        "in (0, 1)")
    return tuple(float(x) for x in values)


def _string(v: Any, p: str) -> str:
    if not isinstance(v, str) or not v:
        raise UserError(f"{p}: {v!r} is not a non-empty string")
    return v


def _size(v: Any, p: str) -> tuple[int, int]:
    if _is_int(v) and v > 0:
        return (int(v), int(v))
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_int(x) and x > 0 for x in v):
        return (int(v[0]), int(v[1]))
    raise UserError(f"{p}: {v!r} is not a positive int or an [H, W] pair")


def _size_pair(v: Any) -> tuple[int, int]:
    if _is_int(v):
        return (int(v), int(v))
    return (int(v[0]), int(v[1]))


def _bool(v: Any, p: str) -> bool:
    if isinstance(v, bool):
        return v
    raise UserError(f"{p}: {v!r} is not allowed; allowed: true, false")


def _auto_bool(v: Any, p: str) -> bool | str:
    if v == "auto" or isinstance(v, bool):
        return v
    raise UserError(f"{p}: {v!r} is not allowed; allowed: auto, true, false")


def _choice(allowed: tuple[str, ...]):
    def check(v: Any, p: str) -> str:
        if v not in allowed or not isinstance(v, str):
            raise UserError(f"{p}: {v!r} is not allowed; allowed: {', '.join(allowed)}")
        return v
    return check


def _opt(check):
    def wrapped(v: Any, p: str):
        return None if v is None else check(v, p)
    return wrapped


def _plain_value(v: Any, p: str) -> None:
    """Plain YAML data, bounded in size (a YAML alias bomb is refused, not expanded)."""
    from search_space.errors import SpecError
    from search_space.fields import plain

    try:
        plain(v, p)
    except SpecError as err:
        raise UserError(str(err)) from None


def _plain(value: Any) -> Any:
    """Dataclasses/tuples -> dicts/lists of plain values, recursively."""
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
