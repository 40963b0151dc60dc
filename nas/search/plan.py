"""``nas search STUDY --dry-run``: what a search would do and cost, without running it.

The plan says: the dataset (present or not, and how to get it: the plan never needs
it), the size of the space, the objectives, constraints and budget, the resources per
trial, and the EXPECTED NUMBER OF TRIALS the budget pays for. That last figure is

    expected trials = budget / expected cost of one trial

with the cost of a trial priced from the cost model and one measured step:

1. draw ``samples`` candidates from the space and price them analytically
   (:mod:`nas.evaluate.candidates`); the share that breaks an analytic constraint is never
   trained (it costs only its checks);
2. measure one training step of the typical candidate (median MACs among the
   analytically feasible ones) on THIS device at the study's precision: on a GPU at
   the training batch size (halved until it fits), on a CPU at a small batch grown
   while a step stays cheap, then scaled linearly to the training batch; and its
   latency at ``measure.batch_size``;
3. a trained trial = checks (latency protocol + two training steps for the memory
   measurement) + epochs x (steps per epoch x step time + validation forward passes at
   a third of a training step per image); the step time is scaled from the measured
   candidate to the mean MACs of the feasible ones (the cost model's ratio); under
   ASHA the epochs are the EXPECTED epochs per trial, :func:`asha_expected_epochs`;
4. device budgets charge wall time x devices held (a GPU fraction, or one device for a
   CPU trial, as the ledger does); wall-clock budgets divide by the trials that run at
   once; trials budgets are the number itself.

Not in the figure: data loading (it is often what bounds image-folder datasets), Ray's
per-trial overhead (about a second), a worker's first dataset load, and candidates that
turn out infeasible only when measured (latency, measured memory). Every number is an
estimate for this device; the plan says which device measured it.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from ..budget import Budget, parse_budget
from ..errors import UserError
from ..evaluate.candidates import Candidate, fmt_count, median_candidate, sample_candidates, spread
from ..study import Study, load_study

#: candidates drawn to price the space.
SAMPLES = 8
#: first batch of the measured step on a CPU; it grows 4x while a step stays under
#: CPU_STEP_TARGET_MS, then the time is scaled linearly to the training batch.
CPU_MEASURE_BATCH = 4
CPU_STEP_TARGET_MS = 1000.0
#: a validation image costs this fraction of a training image (forward only).
EVAL_FRACTION = 1.0 / 3.0
DIGITS_EXAMPLES = 1797
CIFAR_TRAIN_EXAMPLES = 50_000
_CIFAR_FOLDERS = {"cifar10": ("CIFAR-10", "cifar-10-batches-py"),
                  "cifar100": ("CIFAR-100", "cifar-100-python")}
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff",
                     ".webp")


# ---------------------------------------------------------------------- arithmetic
def asha_rungs(epochs: int, grace: int, reduction_factor: float) -> list[float]:
    """The epochs at which ASHA may stop a trial: grace x rf^k below ``epochs`` (a trial
    that reached its last epoch is never stopped, see :mod:`nas.search.asha`)."""
    rungs, r = [], float(grace)
    while r < epochs:
        rungs.append(r)
        r *= reduction_factor
    return rungs


def asha_expected_epochs(epochs: int, grace: int, reduction_factor: float) -> float:
    """Expected epochs a trial trains under ASHA when each rung promotes 1/rf of the
    trials that reach it: every trial trains to the first rung, 1/rf of them on to the
    second, 1/rf^2 to the third, ..., and 1/rf^k of them (k rungs) to the last epoch."""
    rungs = asha_rungs(epochs, grace, reduction_factor)
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
    left = max(0.0, budget.limit - spent)
    if budget.kind == "trials":
        return left
    if trial_s <= 0:
        return math.inf
    if budget.kind == "device":
        return left / (trial_s * devices)
    return left * parallel / trial_s  # wall clock: trials overlap


# ---------------------------------------------------------------------- the dataset
def data_status(study: Study, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Whether the study's dataset is where the search would look, and its sizes
    (``train``/``val`` examples; counted, derived from the split, or assumed)."""
    cfg = study.data
    kind = cfg.dataset
    out: dict[str, Any] = {"dataset": kind, "present": True, "where": None,
                           "train": None, "val": None, "sizes": "the dataset's fixed size",
                           "message": ""}
    if kind == "digits":
        out.update(_split_sizes(DIGITS_EXAMPLES, cfg))
        out["where"] = "bundled with scikit-learn"
    elif kind == "synthetic":
        s = cfg.synthetic
        train = min(s.train, cfg.subset) if cfg.subset else s.train
        out.update(train=train, val=s.val, where="generated")
    elif kind == "digit-scenes":
        s = cfg.scenes
        train = min(s.train, cfg.subset) if cfg.subset else s.train
        out.update(train=train, val=s.val, where="composed from scikit-learn's digits")
    elif kind in _CIFAR_FOLDERS:
        from ..evaluate.data import _root

        root = _root(cfg, data_dir)
        out["where"] = str(root.resolve())
        out.update(_split_sizes(CIFAR_TRAIN_EXAMPLES, cfg))
        if not (root / _CIFAR_FOLDERS[kind][1]).is_dir():
            out.update(present=False, message=_missing_message(study, data_dir))
    else:  # imagefolder
        from ..evaluate.data import _root

        root = _root(cfg, data_dir)
        out["where"] = str(root.resolve())
        train_dir = root / "train" if (root / "train").is_dir() else root
        if train_dir.is_dir() and any(p.is_dir() for p in train_dir.iterdir()):
            out["classes"] = sum(1 for p in train_dir.iterdir() if p.is_dir())
            n = _count_images(train_dir)
            val_dir = root / "val"
            n_val = _count_images(val_dir) if val_dir.is_dir() else 0
            if n_val:
                train = min(n, cfg.subset) if cfg.subset else n
                out.update(train=train, val=n_val, sizes="counted")
            else:
                out.update(_split_sizes(n, cfg), sizes="counted")
        else:
            out.update(present=False, message=_missing_message(study, data_dir))
            if cfg.subset:
                out.update(train=cfg.subset, val=max(1, round(cfg.subset * cfg.val_fraction)),
                           sizes="assumed from data.subset (dataset missing)")
            else:
                out["sizes"] = "unknown (dataset missing and no data.subset)"
    return out


def _split_sizes(n: int, cfg: Any) -> dict[str, int]:
    n_val = max(1, round(n * cfg.val_fraction))
    train = n - n_val
    return {"train": min(train, cfg.subset) if cfg.subset else train, "val": n_val}


def _count_images(folder: Path) -> int:
    n = 0
    for _, _, files in os.walk(folder):
        n += sum(1 for f in files if f.lower().endswith(_IMAGE_EXTENSIONS))
    return n


def _missing_message(study: Study, data_dir: Any) -> str:
    """The loader's own one-line message (it fails fast, before reading anything)."""
    from ..evaluate.data import load_data

    try:
        load_data(study.data, data_dir)
    except UserError as err:
        return str(err)
    return ""


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


# ---------------------------------------------------------------------- the plan
def make_plan(study: Study | str | Path | dict | None, *, budget: str | None = None,
              concurrency: int | None = None, data_dir: str | os.PathLike | None = None,
              address: str | None = None, storage: str | None = None,
              samples: int = SAMPLES, seed: int = 0, device: str = "auto",
              spent: float = 0.0, measure: bool = True,
              device_profile: str | None = None) -> dict[str, Any]:
    """The dry-run plan as plain values (``--json`` prints it as is). ``spent``: budget
    already spent, in base units (a resumed run). ``device_profile`` (else the study's
    ``resources.device_profile``): price the trial from it (:mod:`nas.search.plan_profile`)."""
    from ..evaluate.cluster import decide_auto, trial_resources, trials_per_gpu
    from ..evaluate.device_profile import load_profile
    from ..evaluate.train import resolve_device
    from . import plan_profile as pp

    started = time.perf_counter()
    study = load_study(study)
    profile_ref = device_profile or study.resources.device_profile
    profile = load_profile(profile_ref) if profile_ref else None  # a bad one fails first
    warnings: list[str] = []
    budget_text = budget if budget is not None else study.budget
    bud = None
    if budget_text is None:
        warnings.append("no budget: pass --budget (e.g. --budget 20gpumin) or set budget: "
                        "in the study; the search would refuse to start")
    else:
        try:
            bud = parse_budget(budget_text)
        except UserError as err:
            raise UserError(f"--budget: {err}") from None
    conc = concurrency if concurrency is not None else study.resources.concurrency
    if not isinstance(conc, int) or isinstance(conc, bool) or conc < 1:
        raise UserError(f"--concurrency: {conc!r} is not a positive integer")

    data = data_status(study, data_dir)
    if not data["present"]:
        warnings.append(f"dataset missing: {data['message']}")
    elif data.get("classes") not in (None, study.classes):
        warnings.append(f"dataset has {data['classes']} classes (class folders in "
                        f"{data['where']}) but the study has {study.classes}: the search "
                        "would fail; fix study.space.classes or the data")

    space = study.space
    t0 = time.perf_counter()
    drawn = sample_candidates(study, n=samples, seed=seed)
    price_s = (time.perf_counter() - t0) / max(1, len(drawn))
    feasible = [c for c in drawn if c.feasible]
    typical = median_candidate(feasible or drawn)
    space_info = {
        "size": space.size(), "stages": len(space.stages),
        "blocks": [list(s.blocks) for s in space.stages],
        "sampled": len(drawn), "analytically_feasible": len(feasible),
        "params": spread([c.params for c in drawn]), "macs": spread([c.macs for c in drawn]),
        "train_memory_mb": spread([round(c.train_memory_mb, 1) for c in drawn]),
        "typical": typical.to_dict(), "candidates": [c.to_dict() for c in drawn]}
    if not feasible:
        warnings.append(f"none of {len(drawn)} sampled candidates passes the analytic "
                        "constraints (params, macs, estimated memory): check the limits")

    dev = resolve_device(device)
    profile_info = None
    if profile is not None:
        profile_info, notes = pp.profile_info(profile, study)
        warnings += notes
        measured = pp.price_with_profile(typical.spec, study, profile)
        warnings += [w for w in [pp.extrapolation_warning(measured)] if w]
    elif measure and pp.trains_on_gpu(study) and dev.type != "cuda":
        measured = None
        warnings.append(pp.no_profile_warning(study))
    else:
        measured = measure_step(typical.spec, study, dev) if measure else None

    res = trial_resources(study)
    resources = res.to_dict()
    if res.source == "auto":
        if profile is not None and profile["device"]["type"] == "cuda":
            resources.update(pp.auto_resources(drawn, profile))
        elif dev.type == "cuda":
            decided = decide_auto(study)
            resources = decided.to_dict()
            if "warning" in decided.detail:
                warnings.append(decided.detail["warning"])
        else:
            resources.update(gpu=None, devices_charged=1.0, note=(
                "gpus_per_trial: auto is decided at search start by a measured step on a "
                "GPU; this plan charges one device per trial until then"))
    devices = float(resources["devices_charged"])
    parallel, machine = _parallel(study, conc, address, resources.get("gpu"))
    if parallel == 0:
        warnings.append(f"this machine ({machine['cpus']} CPUs, {machine['gpus']} GPUs) "
                        f"cannot hold one trial ({study.resources.cpus_per_trial:g} CPUs, "
                        f"{study.resources.gpus_per_trial} GPUs): run it on a bigger machine "
                        "or a cluster (--address), or lower study.resources")
    if resources.get("gpu"):
        resources["trials_per_gpu"] = trials_per_gpu(float(resources["gpu"]))

    trial = None
    n_trials = None
    if measured is not None and data["train"] is not None:
        scale = (sum(c.macs for c in feasible) / len(feasible) / typical.macs
                 if feasible and typical.macs else 1.0)
        step_s = measured["step_s_at_train_batch"] * scale
        parts = trial_seconds(n_train=data["train"], n_val=data["val"] or 0, study=study,
                              step_s=step_s, latency_s=measured["latency_ms"] / 1e3)
        f = study.fidelity
        epochs = (asha_expected_epochs(study.training.epochs, f.grace_epochs,
                                       f.reduction_factor)
                  if f.scheduler == "asha" and study.training.epochs > 1
                  else float(study.training.epochs))
        trained_s = parts["checks_s"] + epochs * parts["epoch_s"]
        share = len(feasible) / len(drawn) if drawn else 1.0
        expected_s = share * trained_s + (1.0 - share) * price_s
        trial = {**parts, "step_s": step_s, "macs_scale": scale,
                 "expected_epochs": epochs, "trained_s": trained_s,
                 "feasible_share": share, "expected_s": expected_s,
                 "expected_device_s": expected_s * devices}
        if bud is not None:
            n = expected_trials(bud, trial_s=expected_s, devices=devices, parallel=parallel,
                                spent=spent)
            n_trials = math.floor(n) if math.isfinite(n) else None
            trial["expected_wall_s_total"] = (n * expected_s / max(1, parallel)
                                              if math.isfinite(n) and n >= 1 else None)
            if n < 1:
                warnings.append("the budget does not pay for one trial at its expected cost")
            elif n > space.size():
                warnings.append(f"the budget pays for ~{_big(n)} trials but the space has "
                                f"{space.size():,} architectures: the search ends when it "
                                "has tried them all, leaving the rest of the budget unspent")
    elif data["train"] is None:
        warnings.append("cannot price a trial: the number of training examples is unknown")

    from .preflight import budget_notes

    return {
        "notes": budget_notes(bud, study) if bud is not None else [],
        "study": {"name": study.name, "source": study.source,
                  "description": study.description},
        "device": device_info(dev),
        "profile": profile_info,
        "data": data,
        "space": space_info,
        "objectives": [{"metric": o.metric, "direction": o.direction}
                       for o in study.objectives],
        "constraints": dict(study.constraints),
        "baselines": list(study.baselines),
        "budget": None if bud is None else {**bud.to_dict(spent)},
        "fidelity": {"scheduler": study.fidelity.scheduler,
                     "grace_epochs": study.fidelity.grace_epochs,
                     "reduction_factor": study.fidelity.reduction_factor,
                     "epochs": study.training.epochs},
        "measurement": measured,
        "trial": trial,
        "expected_trials": n_trials,
        "resources": {"per_trial": resources, "concurrency": conc, "parallel": parallel,
                      "machine": machine,
                      "address": address or "local Ray on this machine",
                      "storage": storage or "sqlite:///RUN_DIR/optuna.db (default)"},
        "warnings": warnings,
        "plan_s": time.perf_counter() - started,
    }


def _parallel(study: Study, concurrency: int, address: str | None,
              gpu: Any) -> tuple[int, dict[str, Any]]:
    """Trials that can run at once: the concurrency, bounded by this machine's CPUs (and
    GPUs) when the search runs locally (0: not even one fits); a cluster's capacity is
    not queried."""
    import torch

    cpus = len(os.sched_getaffinity(0))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    machine = {"cpus": cpus, "gpus": gpus}
    if address:
        return concurrency, machine
    slots = int(cpus // float(study.resources.cpus_per_trial))
    if gpu:
        slots = min(slots, int(gpus / float(gpu) + 1e-9))
    return min(concurrency, slots), machine


def dry_run(args: Any) -> int:
    """``nas search ... --dry-run``: print the plan (text, or one JSON object with
    ``--json``). With ``--resume RUN_DIR`` the plan is for what is left of that run."""
    import json

    spent = 0.0
    study: Any = args.study
    budget = args.budget
    storage = args.storage
    if args.resume is not None:
        if args.study is not None:
            raise UserError("--resume: give either a study or --resume RUN_DIR, not both")
        from ..run.rundir import RunDir
        from ..run.summary import summarize

        run = RunDir.open(args.resume)
        study = run.study_dict()
        storage = args.storage or run.storage_url()
        budget = budget or run.meta().get("budget")
        summary = summarize(run)
        spent = parse_budget(budget).per_unit * float(summary.budget.get("spent", 0.0)) \
            if budget else 0.0
    plan = make_plan(study, budget=budget, concurrency=args.concurrency,
                     data_dir=args.data_dir, address=args.address, storage=storage,
                     seed=args.seed or 0, spent=spent, device=args.device,
                     device_profile=getattr(args, "device_profile", None))
    print(json.dumps(plan, indent=2, default=str) if args.json else format_plan(plan))
    return 0


# ---------------------------------------------------------------------- text
def format_plan(plan: dict[str, Any]) -> str:
    """The plan as a few readable lines."""
    lines = []
    s, d, sp = plan["study"], plan["data"], plan["space"]
    lines.append(f"study {s['name']}" + (f"  ({s['source']})" if s["source"] else ""))
    where = (f" at {d['where']}" if str(d["where"]).startswith("/")
             else f" ({d['where']})" if d["where"] else "")
    state = "present" if d["present"] else "MISSING"
    sizes = (f"{d['train']} train / {d['val']} val images (sizes: {d['sizes']})"
             if d["train"] is not None else f"sizes {d['sizes']}")
    lines.append(f"data      {d['dataset']}{where}: {state}; {sizes}")
    if not d["present"]:
        lines.append(f"          {d['message']}")
    lines.append(f"space     {sp['size']:,} architectures; blocks per stage: "
                 f"{'; '.join('/'.join(b) for b in sp['blocks'])}")
    lines.append(f"          {sp['sampled']} sampled: params "
                 f"{fmt_count(sp['params']['min'])}-{fmt_count(sp['params']['max'])}, "
                 f"MACs/image {fmt_count(sp['macs']['min'])}-{fmt_count(sp['macs']['max'])}, "
                 f"est. training memory {sp['train_memory_mb']['min']:.3g}-"
                 f"{sp['train_memory_mb']['max']:.3g} MiB; "
                 f"{sp['analytically_feasible']} pass the analytic limits")
    objectives = ", ".join(f"{o['direction']} {o['metric']}" for o in plan["objectives"])
    lines.append(f"objective {objectives}")
    limits = ", ".join(f"{k} <= {v:g}" for k, v in plan["constraints"].items()) or "none"
    lines.append(f"limits    {limits}")
    if plan["baselines"]:
        names = ", ".join(b.removeprefix("zoo:") for b in plan["baselines"])
        lines.append(f"baselines {names} (evaluated with --with-baselines)")
    b = plan["budget"]
    if b is None:
        lines.append("budget    none given")
    else:
        spent = f" ({b['spent']:.4g} spent, {b['left']:.4g} left)" if b.get("spent") else ""
        lines.append(f"budget    {b['text']} = {b['limit']:.4g} {b['unit']} of "
                     f"{b['kind']} time{spent}" if b["kind"] != "trials"
                     else f"budget    {b['text']}{spent}")
    f = plan["fidelity"]
    lines.append(f"fidelity  {f['epochs']} epochs"
                 + (f", ASHA grace {f['grace_epochs']} reduction {f['reduction_factor']:g}"
                    if f["scheduler"] == "asha" else ", no early stopping"))
    dev, m = plan["device"], plan["measurement"]
    if plan.get("profile"):
        lines.append(f"priced    with device profile {plan['profile']['path']}: "
                     f"{plan['profile']['describe']}")
    if m is not None and m.get("source") == "device profile":
        lines.append(f"predicted {m['spec']} {m['step_s']:.3g} s per training step at batch "
                     f"{m['batch']}, ~{m['latency_ms']:.3g} ms latency (profile, not timed "
                     "here)")
    elif m is not None:
        lines.append(f"measured  on {dev['name']} ({dev['type']}, {m['precision']}): "
                     f"{m['spec']} {m['step_s']:.3g} s per training step at batch "
                     f"{m['batch']}, {m['latency_ms']:.3g} ms latency")
    t = plan["trial"]
    if t is not None:
        lines.append(f"trial     {t['steps_per_epoch']} steps/epoch, "
                     f"{t['epoch_s']:.3g} s/epoch, checks {t['checks_s']:.2g} s; "
                     f"full {_dur(t['full_s'])}, expected {_dur(t['expected_s'])} "
                     f"({t['expected_epochs']:.3g} epochs, "
                     f"{t['feasible_share']:.0%} trained)")
    r = plan["resources"]
    pt = r["per_trial"]
    gpu = "auto (decided at search start)" if pt.get("gpu") is None else f"{pt['gpu']:g}"
    lines.append(f"resources {pt['cpu']:g} CPU + {gpu} GPU per trial "
                 f"({pt['source']}), concurrency {r['concurrency']}, {r['parallel']} at "
                 f"once on {r['address']}; storage {r['storage']}")
    n = plan["expected_trials"]
    if n is not None:
        wall = t.get("expected_wall_s_total") if t else None
        lines.append(f"expect    ~{n} trials within the budget"
                     + (f" (~{_dur(wall)} of wall time)" if wall else "")
                     + "  [estimate]")
    for note in plan.get("notes", []):
        lines.append(f"note      {note}")
    for w in plan["warnings"]:
        lines.append(f"warning   {w}")
    return "\n".join(lines)


def _big(n: float) -> str:
    return f"{n:,.0f}" if n < 1e9 else f"{n:.3g}"


def _dur(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


__all__ = ["Candidate", "asha_expected_epochs", "asha_rungs", "data_status",
           "expected_trials", "format_plan", "make_plan", "measure_step", "trial_seconds"]
