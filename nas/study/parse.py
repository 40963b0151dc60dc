"""``parse_study``: plain values (a YAML document) -> a checked :class:`Study`.

Each section is read with the field readers of :mod:`nas.study.readers`; a mistake
raises one UserError whose text starts with the field's path and says what is allowed.
Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import re
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from search_space import fields as f
from search_space.errors import SpecError

from ..budget import Budget, parse_budget
from ..errors import UserError
from ..evaluate.digit_scenes import TASKS as SCENE_TASKS
from ..evaluate.digit_scenes import ScenesConfig, check_config
from . import readers as r
from .sections import (
    CONSTRAINT_METRICS,
    DATASETS,
    METRICS,
    SAMPLERS,
    DataConfig,
    FidelityConfig,
    MeasureConfig,
    Objective,
    ResourcesConfig,
    SamplerConfig,
    SyntheticConfig,
    TrainingConfig,
)
from .study import Study, adapt_spec, shape_str

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_KEYS = ("version", "name", "description", "data", "training", "objectives", "constraints",
         "measure", "space", "sampler", "resources", "fidelity", "budget", "baselines")
# Shapes the datasets give when that is known without reading files.
_FIXED_SHAPES = {"digits": (1, (8, 8), 10), "cifar10": (3, (32, 32), 10),
                 "cifar100": (3, (32, 32), 100)}


def parse_study(raw: Any, base_dir: Path | None = None) -> Study:
    """Validate plain values into a Study; relative baseline paths resolve against
    ``base_dir``."""
    with r.user_errors():
        p = "study"
        f.expect_map(raw, p)
        f.check_keys(raw, p, required=("name", "space"),
                     optional=[k for k in _KEYS if k not in ("name", "space")])
        version = raw.get("version", 1)
        if version != 1 or isinstance(version, bool):
            raise SpecError(f"{p}.version", f"{version!r} is not supported; allowed: 1")
        name = raw["name"]
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise SpecError(f"{p}.name", f"{name!r} is not a name (letters, digits, '.', "
                                         "'_', '-')")
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise SpecError(f"{p}.description", f"{description!r} is not a string")
        training = _training(raw.get("training"), f"{p}.training")
        objectives = _objectives(raw.get("objectives", [
            {"metric": "accuracy", "direction": "maximize"}]), f"{p}.objectives")
        study = Study(
            name=name, space_dict=f.expect_map(raw["space"], f"{p}.space"), version=1,
            description=description, data=parse_data(raw.get("data"), f"{p}.data"),
            training=training, objectives=objectives,
            constraints=_constraints(raw.get("constraints", {}), f"{p}.constraints"),
            measure=MeasureConfig(**r.section(raw.get("measure"), f"{p}.measure", {
                "batch_size": f.positive_int, "warmup": r.int_at_least(0),
                "repeats": f.positive_int})),
            sampler=_sampler(raw.get("sampler"), f"{p}.sampler"),
            resources=ResourcesConfig(**r.section(raw.get("resources"), f"{p}.resources", {
                "concurrency": f.positive_int, "cpus_per_trial": r.positive_number,
                "gpus_per_trial": r.gpus, "device_profile": r.optional(f.text)})),
            fidelity=_fidelity(raw.get("fidelity"), f"{p}.fidelity", training, objectives),
            budget=_budget(raw.get("budget"), f"{p}.budget"),
            baselines=_baselines(raw.get("baselines", []), f"{p}.baselines",
                                 base_dir or Path.cwd()))
        study.space  # noqa: B018 - validate the space now, with the study.space. prefix
        _check_agreement(study)
        if study.sampler.start_from:
            study = replace(study, sampler=replace(study.sampler, start_from=_start_points(
                study, base_dir or Path.cwd())))
    return study


def parse_data(raw: Any, p: str = "study.data") -> DataConfig:
    """The ``data`` section (also what ``nas.evaluate.data.load_data`` reads a plain
    dict with)."""
    raw = f.expect_map({} if raw is None else raw, p)
    values = r.section({k: v for k, v in raw.items() if k not in ("synthetic", "scenes")},
                       p, {
        "dataset": r.choice(DATASETS), "val_fraction": r.open_fraction,
        "split_seed": r.int_at_least(0), "augment": r.choice(("none", "standard")),
        "root": r.optional(f.text), "size": r.optional(r.size),
        "subset": r.optional(f.positive_int), "workers": r.int_at_least(0)},
        extra=("synthetic", "scenes"))
    dataset = values.get("dataset", "digits")
    synthetic = None
    if "synthetic" in raw:
        if dataset != "synthetic":
            raise SpecError(f"{p}.synthetic", f"only allowed with dataset: synthetic "
                                              f"(dataset is {dataset!r})")
        synthetic = SyntheticConfig(**r.section(raw["synthetic"], f"{p}.synthetic", {
            "channels": f.positive_int, "size": r.size, "classes": r.int_at_least(2),
            "train": f.positive_int, "val": f.positive_int, "signal": r.nonneg_number}))
    elif dataset == "synthetic":
        synthetic = SyntheticConfig()
    if values.get("size") is not None and dataset != "imagefolder":
        raise SpecError(f"{p}.size", f"only allowed with dataset: imagefolder (dataset "
                                     f"{dataset!r} has a fixed size)")
    return DataConfig(**values, synthetic=synthetic,
                      scenes=_scenes(raw.get("scenes"), dataset, f"{p}.scenes"))


def _scenes(raw: Any, dataset: str, p: str) -> ScenesConfig | None:
    if raw is None:
        return ScenesConfig() if dataset == "digit-scenes" else None
    if dataset != "digit-scenes":
        raise SpecError(p, f"only allowed with dataset: digit-scenes (dataset is "
                           f"{dataset!r})")
    cfg = ScenesConfig(**r.section(raw, p, {
        "task": r.choice(SCENE_TASKS), "size": r.int_at_least(8), "train": f.positive_int,
        "val": f.positive_int, "seed": r.int_at_least(0), "digit_scale": f.positive_int,
        "clutter": r.int_at_least(0), "clutter_size": f.positive_int,
        "min_distance": r.int_at_least(0)}))
    problem = check_config(cfg)  # "field: what is wrong"
    if problem:
        raise SpecError("", f"{p}.{problem}")
    return cfg


def _training(raw: Any, p: str) -> TrainingConfig:
    cfg = TrainingConfig(**r.section(raw, p, {
        "epochs": f.positive_int, "batch_size": f.positive_int,
        "optimizer": r.choice(("sgd", "adamw")), "lr": r.positive_number,
        "momentum": r.fraction, "weight_decay": r.nonneg_number,
        "schedule": r.choice(("cosine", "step", "constant")),
        "warmup_epochs": r.nonneg_number, "milestones": r.milestones, "gamma": r.unit_gamma,
        "label_smoothing": r.fraction, "precision": r.choice(("auto", "fp32", "bf16")),
        "channels_last": r.auto_bool, "max_steps_per_epoch": r.optional(f.positive_int),
        "eval_batch_size": f.positive_int, "compile": f.boolean}))
    if cfg.warmup_epochs >= cfg.epochs and cfg.warmup_epochs > 0:
        raise SpecError(f"{p}.warmup_epochs", f"{cfg.warmup_epochs!r} must be less than "
                                              f"epochs ({cfg.epochs})")
    return cfg


def _objectives(raw: Any, p: str) -> tuple[Objective, ...]:
    if not isinstance(raw, list) or not raw:
        raise SpecError(p, f"{raw!r} is not a non-empty list of {{metric, direction}} maps")
    out: list[Objective] = []
    for i, item in enumerate(raw):
        q = f.index(p, i)
        values = r.section(item, q, {"metric": r.choice(METRICS),
                                     "direction": r.choice(("maximize", "minimize"))},
                           required=("metric", "direction"))
        if any(o.metric == values["metric"] for o in out):
            raise SpecError(f"{q}.metric", f"{values['metric']!r} is listed twice")
        out.append(Objective(**values))
    return tuple(out)


def _constraints(raw: Any, p: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in f.expect_map(raw, p).items():
        if key not in CONSTRAINT_METRICS:
            raise SpecError(f.join(p, key), f"unknown constraint; allowed (maxima): "
                                            f"{', '.join(CONSTRAINT_METRICS)}")
        out[key] = r.positive_number(value, f.join(p, key))
    return out


def _sampler(raw: Any, p: str) -> SamplerConfig:
    values = r.section(raw, p, {"name": r.choice(SAMPLERS), "seed": r.seed_value,
                                "options": r.plain_options, "start_from": _refs})
    return SamplerConfig(**values)


def _refs(raw: Any, p: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise SpecError(p, f"{raw!r} is not a list of the study's baselines")
    return tuple(raw)


def _start_points(study: Study, base_dir: Path) -> tuple[str, ...]:
    """``sampler.start_from`` resolved like ``baselines``: each entry must name one of the
    study's baselines that is a point of the space (the sampler is told its params)."""
    from search_space.inverse import params_of

    p = "study.sampler.start_from"
    resolved = []
    for i, ref in enumerate(study.sampler.start_from):
        q = f.index(p, i)
        path = _baseline(ref, q, base_dir)
        if path not in study.baselines:
            raise SpecError(q, f"{ref!r} is not one of study.baselines")
        try:
            spec = adapt_spec(path, study)
        except UserError as err:
            raise SpecError(q, str(err)) from None
        if not params_of(study.space, spec):
            raise SpecError(q, f"{ref!r} is not a point of the study's space (a search "
                               "can start only from networks the space can propose)")
        resolved.append(path)
    if len(set(resolved)) != len(resolved):
        raise SpecError(p, "names a baseline twice")
    return tuple(resolved)


def _fidelity(raw: Any, p: str, training: TrainingConfig,
              objectives: tuple[Objective, ...]) -> FidelityConfig:
    cfg = FidelityConfig(**r.section(raw, p, {
        "scheduler": r.choice(("asha", "none")), "grace_epochs": f.positive_int,
        "reduction_factor": r.above_one}))
    if cfg.scheduler == "asha":
        if cfg.grace_epochs > training.epochs:
            raise SpecError(f"{p}.grace_epochs", f"{cfg.grace_epochs} is more than "
                                                 f"study.training.epochs ({training.epochs})")
        if objectives[0].metric != "accuracy":
            raise SpecError(f"{p}.scheduler", f"asha stops trials on the primary objective "
                                              f"per epoch, which must then be accuracy (it "
                                              f"is {objectives[0].metric!r}); use "
                                              "scheduler: none or put accuracy first")
    return cfg


def _budget(raw: Any, p: str) -> Budget | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise SpecError(p, f"{raw!r} is not a budget string such as '20gpumin'")
    try:
        return parse_budget(raw)
    except UserError as err:
        raise SpecError(p, str(err)) from None


def _baselines(raw: Any, p: str, base_dir: Path) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise SpecError(p, f"{raw!r} is not a list of 'zoo:NAME' or spec paths")
    return tuple(_baseline(item, f.index(p, i), base_dir) for i, item in enumerate(raw))


def _baseline(item: Any, q: str, base_dir: Path) -> str:
    """One baseline: 'zoo:NAME' as written, a spec path resolved."""
    if not isinstance(item, str) or not item:
        raise SpecError(q, f"{item!r} is not 'zoo:NAME' or a spec path")
    if item.startswith("zoo:"):
        from search_space.zoo import list_zoo

        known = sorted(list_zoo())
        if item[4:] not in known:
            raise SpecError(q, f"unknown zoo model {item[4:]!r}; known: {', '.join(known)}")
        return item
    path = (base_dir / item).resolve()
    if not path.is_file():
        # A copy of a packaged study (e.g. studies/digits.yaml edited elsewhere) still
        # finds the baselines shipped beside the original.
        shipped = Path(str(resources.files("nas.studies"))) / item
        if Path(item).is_absolute() or not shipped.is_file():
            raise SpecError(q, f"no such spec file {item!r} (looked at {path}, and "
                               f"among the packaged studies' at {shipped})")
        path = shipped.resolve()
    return str(path)


def _check_agreement(study: Study) -> None:
    """The dataset's channels/size/classes must be the space's input/classes."""
    try:
        want = (study.input_channels, study.input_size, study.classes)
    except (KeyError, TypeError, ValueError):
        raise SpecError("study.space", "needs input: {channels, size} and classes") from None
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
        raise SpecError("study.space", (
            f"input {shape_str(*want)} does not match study.data.dataset {data.dataset!r} "
            f"which gives {shape_str(*got)}; set space.input {{channels: {got[0]}, size: "
            f"[{got[1][0]}, {got[1][1]}]}} and classes: {got[2]}"))
