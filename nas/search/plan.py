"""``nas search STUDY --dry-run``: what a search would do and cost, without running it.

The plan says: the dataset (present or not, and how to get it: the plan never needs
it), the size of the space, the objectives, constraints and budget, the resources per
trial, and the EXPECTED NUMBER OF TRIALS the budget pays for. That last figure is

    expected trials = first evaluated + (budget - their cost) / expected cost of one trial

with the cost of a trial priced from the cost model and measured steps:

1. draw ``samples`` candidates from the space and price them analytically
   (:mod:`nas.evaluate.candidates`); the share that breaks an analytic constraint is never
   trained (it costs only its checks);
2. measure one training step of EVERY analytically feasible candidate drawn on THIS
   device at the study's precision: on a GPU at the training batch size (halved until it
   fits), on a CPU at a small batch grown while a step stays cheap, then scaled linearly
   to the training batch; and its latency at ``measure.batch_size`` (or predict both
   from a device profile). The plan shows the typical candidate (median MACs);
3. a trained trial = checks (latency protocol + two training steps for the memory
   measurement) + epochs x (steps per epoch x step time + validation forward passes at
   a third of a training step per image), at the MEAN step and latency of the measured
   candidates (a trial's time is linear in both, so this is their mean trial); under
   ASHA the epochs are the EXPECTED epochs per trial, :func:`asha_expected_epochs`;
4. what the search evaluates before its sampler proposes (the study's start points and,
   with ``--with-baselines``, its other baselines; not those a resumed run has already
   evaluated) is priced the same way, each trained in full (ASHA never stops them), and
   taken off the budget first;
5. device budgets charge wall time x devices held (a GPU fraction, or one device for a
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

from ..errors import UserError
from ..evaluate.candidates import median_candidate, sample_candidates, spread
from ..study import Study, load_study
from .plan_cost import (
    admitted_first,
    asha_expected_epochs,
    device_info,
    expected_trials,
    measure_step,
    start_cost,
    trial_seconds,
)
from .plan_data import data_status
from .plan_text import fmt_big, format_plan
from .propose import first_evaluated

#: candidates drawn to price the space. A trial's cost is heavy-tailed (digit-scenes: 10 s
#: to 5 min): its mean needs more than a handful. On digit-scenes' 20 device-minutes, 8
#: drawn gave 29 expected trials, 16 gave 26, 24 gave 24; its searches ran 15-22 (median
#: 20, five seeds) beside other work on the second core.
SAMPLES = 16


def make_plan(study: Study | str | Path | dict | None, *, budget: str | None = None,
              concurrency: int | None = None, data_dir: str | os.PathLike | None = None,
              address: str | None = None, storage: str | None = None,
              samples: int = SAMPLES, seed: int = 0, device: str = "auto",
              spent: float = 0.0, measure: bool = True,
              device_profile: str | None = None, with_baselines: bool = False,
              run_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dry-run plan as plain values (``--json`` prints it as is). ``budget``: text
    that overrides the study's (``--budget``); ``spent``: budget already spent, in base
    units (a resumed run). ``device_profile`` (else the study's
    ``resources.device_profile``): price the trial from it (:mod:`nas.search.plan_profile`).
    ``with_baselines``, ``run_meta`` (a resumed run's run.json): what the search evaluates
    before its sampler proposes (:func:`nas.search.propose.first_evaluated`), priced too."""
    from ..evaluate.cluster import decide_auto, trial_resources, trials_per_gpu
    from ..evaluate.device_profile import load_profile
    from ..evaluate.train import resolve_device
    from . import plan_profile as pp

    started = time.perf_counter()
    study = load_study(study)
    profile_ref = device_profile or study.resources.device_profile
    profile = load_profile(profile_ref) if profile_ref else None  # a bad one fails first
    warnings: list[str] = []
    if budget is not None:
        study = study.with_budget(budget)
    bud = study.budget
    if bud is None:
        warnings.append("no budget: pass --budget (e.g. --budget 20gpumin) or set budget: "
                        "in the study; the search would refuse to start")
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

        def price_one(spec: Any) -> dict[str, Any]:
            return pp.price_with_profile(spec, study, profile)
    elif not measure:
        price_one = None
    elif pp.trains_on_gpu(study) and dev.type != "cuda":
        price_one = None
        warnings.append(pp.no_profile_warning(study))
    else:
        def price_one(spec: Any) -> dict[str, Any]:
            return measure_step(spec, study, dev)
    # Every analytically feasible candidate drawn is priced, not one scaled by MACs: on
    # digit-scenes two candidates of 20-23M MACs measured 0.36 and 2.3 s a step (attention
    # is memory-bound). The typical one is shown.
    to_price = feasible or [typical]  # typical is one of them
    priced = [price_one(c.spec) for c in to_price] if price_one else []
    measured = priced[to_price.index(typical)] if priced else None
    if measured is not None and profile is not None:
        warnings += [w for w in [pp.extrapolation_warning(measured)] if w]
    first = _price_first(first_evaluated(study, with_baselines, run_meta), study, price_one)

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
        # a trial's seconds are linear in the step and the latency: the mean trial of the
        # priced candidates is the trial at their mean step and mean latency
        step_s = sum(m["step_s_at_train_batch"] for m in priced) / len(priced)
        latency_s = sum(m["latency_ms"] for m in priced) / len(priced) / 1e3
        parts = trial_seconds(n_train=data["train"], n_val=data["val"] or 0, study=study,
                              step_s=step_s, latency_s=latency_s)
        f = study.fidelity
        epochs = (asha_expected_epochs(study.training.epochs, f.grace_epochs,
                                       f.reduction_factor)
                  if f.scheduler == "asha" and study.training.epochs > 1
                  else float(study.training.epochs))
        trained_s = parts["checks_s"] + epochs * parts["epoch_s"]
        share = len(feasible) / len(drawn) if drawn else 1.0
        expected_s = share * trained_s + (1.0 - share) * price_s
        trial = {**parts, "step_s": step_s, "steps_priced": len(priced),
                 "step_s_spread": spread([m["step_s_at_train_batch"] for m in priced]),
                 "expected_epochs": epochs, "trained_s": trained_s,
                 "feasible_share": share, "expected_s": expected_s,
                 "expected_device_s": expected_s * devices}
        for entry in first:  # evaluated in full (never stopped), before any proposal
            entry["trained_s"] = (
                trial_seconds(n_train=data["train"], n_val=data["val"] or 0, study=study,
                              step_s=entry["step_s"],
                              latency_s=entry["latency_ms"] / 1e3)["full_s"]
                if "step_s" in entry else 0.0)
        if bud is not None:
            firsts = [e["trained_s"] for e in first]
            k = admitted_first(bud, firsts, devices=devices, parallel=parallel, spent=spent)
            for i, entry in enumerate(first):
                entry["within_budget"] = i < k
            first_cost = start_cost(bud, firsts[:k], devices=devices, parallel=parallel)
            # the search proposes only once everything evaluated first has started
            n = (expected_trials(bud, trial_s=expected_s, devices=devices,
                                 parallel=parallel, spent=spent + first_cost)
                 if k == len(first) else 0.0)
            trial["first_evaluated_s"] = sum(firsts[:k])
            trial["first_admitted"] = k
            trial["proposed_trials"] = math.floor(n) if math.isfinite(n) else None
            n_trials = (math.floor(n) + k) if math.isfinite(n) else None
            wall = (n * expected_s + trial["first_evaluated_s"]) / max(1, parallel)
            trial["expected_wall_s_total"] = wall if math.isfinite(n) else None
            if n < 1 and first:
                warnings.append(f"the budget is spent on the trials evaluated first ({k} of "
                                f"{len(first)} run): nothing is left for the sampler's "
                                "proposals")
            elif n < 1:
                warnings.append("the budget does not pay for one trial at its expected cost")
            elif n > space.size():
                warnings.append(f"the budget pays for ~{fmt_big(n)} trials but the space has "
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
        "start_from": list(study.sampler.start_from),
        "first_evaluated": first,
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


def _price_first(groups: tuple[list[str], list[str]], study: Study,
                 price_one: Any) -> list[dict[str, Any]]:
    """The start points and baselines a search evaluates first, each priced (a baseline
    that cannot run on the study's data costs nothing: it is told failed at once)."""
    from ..study.study import adapt_spec

    out = []
    for group, refs in zip(("start point", "baseline"), groups, strict=True):
        for ref in refs:
            entry: dict[str, Any] = {"ref": ref, "as": group}
            try:
                spec = adapt_spec(ref, study)
            except UserError as err:
                entry["problem"] = f"{err} (the search tells it failed at once)"
                out.append(entry)
                continue
            if price_one is not None:
                try:
                    m = price_one(spec)
                except Exception as err:  # noqa: BLE001 - the search reports it on the trial
                    entry["problem"] = f"cannot be measured here: {err}"
                else:
                    entry.update(step_s=m["step_s_at_train_batch"],
                                 latency_ms=m["latency_ms"])
            out.append(entry)
    return out


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
    storage = args.storage
    meta = None
    if args.resume is not None:
        if args.study is not None:
            raise UserError("--resume: give either a study or --resume RUN_DIR, not both")
        from ..run.rundir import RunDir
        from ..run.summary import run_spent, run_study

        run = RunDir.open(args.resume)
        meta = run.meta()
        study = run_study(run)
        if args.budget is not None:
            study = study.with_budget(args.budget)
        storage = args.storage or run.storage_url()
        spent = run_spent(run, study.budget) if study.budget is not None else 0.0
    plan = make_plan(study, budget=None if args.resume else args.budget,
                     with_baselines=args.with_baselines, run_meta=meta,
                     concurrency=args.concurrency,
                     data_dir=args.data_dir, address=args.address, storage=storage,
                     seed=args.seed or 0, spent=spent, device=args.device,
                     device_profile=getattr(args, "device_profile", None))
    print(json.dumps(plan, indent=2, default=str) if args.json else format_plan(plan))
    return 0


__all__ = ["asha_expected_epochs", "data_status", "dry_run", "expected_trials",
           "format_plan", "make_plan", "measure_step", "trial_seconds"]
