"""``run_search``: a study run as a persistent, resumable search on Ray Tune + Optuna.

Ray Tune runs the trials (a local Ray by default, a cluster with ``address``), Optuna
proposes them through :class:`nas.search.searcher.NasSearcher`, and everything that matters is
in the run directory (:mod:`nas.run.rundir`): the Optuna storage, the device-time ledger, the
trial logs, ASHA's rungs. Ray's own experiment state is NOT used to resume (Ray's restore
has replaced custom searchers silently before, Ray #30861): each session is a fresh Tune
run whose searcher reloads the Optuna study, so a resume after Ctrl-C or ``kill -9`` keeps
every told trial, re-runs the interrupted ones and continues the same ledger.

Stale trials: only one driver may hold a run directory (an flock, nas.run.rundir), so every
trial still RUNNING in Optuna when a session starts belongs to a dead driver; it is
failed and re-enqueued at once (no RDBStorage heartbeat / ``fail_stale_trials`` wait).

Tune settings: a function trainable (nas.search.trainable) reporting each epoch,
``reuse_actors=True``, a ConcurrencyLimiter at ``concurrency``, ASHA on the primary
objective when ``fidelity.scheduler: asha`` (nas.search.asha), ``FailureConfig(max_failures=1)``
(a dead worker is retried once), results under ``RUN_DIR/ray/session-K``. A local Ray is
started with every CPU of the machine, no dashboard and no worker log forwarding.

Ray is imported inside the functions that need it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, TextIO

from ..budget import Budget, parse_budget
from ..errors import UserError
from ..run.ledger import Ledger
from ..run.reaper import start_reaper, stop_reaper
from ..run.rundir import RunDir, default_run_dir, descendants, process_start
from ..run.storage import open_storage
from ..run.summary import SearchSummary, summarize
from ..study import Study, load_study
from .preflight import SEED_MAX, budget_notes, check_new_total, check_seed, on_device


def run_search(study: Study | str | Path | dict | None = None, run_dir: str | Path | None = None,
               budget: str | None = None, address: str | None = None,
               storage: str | None = None, seed: int | None = None,
               concurrency: int | None = None, with_baselines: bool = False,
               resume: str | Path | None = None, data_dir: str | None = None,
               progress: TextIO | bool | None = None, device: str = "auto") -> SearchSummary:
    """Run (or resume) a search; returns when the budget is spent, the space is
    exhausted, or the user interrupts (Ctrl-C: running trials are re-run on resume).

    ``study``: a Study, a path, a packaged study name, or None (the digits study);
    ``run_dir``: where to write (default ``runs/<study>-<timestamp>``); ``budget``:
    overrides the study's (``nas.budget`` syntax); ``storage``: an SQLAlchemy URL for the
    Optuna storage (default: SQLite in the run dir); ``resume``: an existing run dir (then
    ``study``, ``run_dir`` and ``storage`` come from it); ``progress``: a stream for the
    live display, False for none, None for stderr; ``device``: "auto" (trials use the
    study's resources.gpus_per_trial), "cpu" (trials on CPUs only) or "cuda" (the study's
    GPU trials, refused where there is no GPU).
    """
    if resume is not None:
        if study is not None or run_dir is not None:
            raise UserError("--resume: give either a study (a new search) or --resume "
                            "RUN_DIR, not both; --out does not apply to a resume")
        run = RunDir.open(resume)
        meta = run.meta()
        study_obj = load_study(run.study_dict())
    else:
        study_obj = load_study(study)
        meta = None
    # Everything is checked BEFORE anything is written: a refused start leaves no run
    # directory behind (and a refused resume leaves the saved run as it was).
    seed = _pick(seed, meta and meta.get("seed"), study_obj.sampler.seed)
    check_seed(seed, study_obj)
    budget_text = _pick(budget, meta and meta.get("budget"), study_obj.budget)
    if budget_text is None:
        raise UserError("no budget: pass --budget (e.g. --budget 20gpumin) or set "
                        "budget: in the study")
    try:
        bud = parse_budget(budget_text)
    except UserError as err:
        raise UserError(f"--budget: {err}") from None
    conc = concurrency if concurrency is not None else study_obj.resources.concurrency
    if not isinstance(conc, int) or isinstance(conc, bool) or conc < 1:
        raise UserError(f"--concurrency: {conc!r} is not a positive integer")
    study_obj = on_device(study_obj, device, address)
    notes: list[str] = []
    if resume is not None and budget is not None:
        notes += check_new_total(run, bud, meta)

    if resume is None:
        path = Path(run_dir) if run_dir is not None else default_run_dir(study_obj.name)
        optuna_name = study_obj.name if storage is None else f"{study_obj.name}-{path.name}"
        run = RunDir.create(path, study_obj.to_dict(), optuna_study=optuna_name,
                            storage=storage, seed=seed, budget=bud.text)
    elif storage is not None:
        run.update_meta(storage=storage)
    run.acquire()
    try:
        run.reap_stale_ray()
        if budget is not None:
            run.update_meta(budget=bud.text, seed=seed)
        return _run_session(run, study_obj, bud, seed=seed, concurrency=conc,
                            address=address, with_baselines=with_baselines,
                            data_dir=data_dir, progress=progress, notes=notes)
    finally:
        run.release()


def _pick(*options: Any) -> Any:
    return next((o for o in options if o is not None), None)


def _run_session(run: RunDir, study: Study, budget: Budget, *, seed: int,
                 concurrency: int, address: str | None, with_baselines: bool,
                 data_dir: str | None, progress: TextIO | bool | None,
                 notes: list[str] | None = None) -> SearchSummary:
    import optuna

    from .progress import Progress
    from .searcher import NasSearcher, make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    session = run.start_session()
    meta = run.meta()
    try:
        sampler = make_sampler(study.sampler.name, (seed + session) % (SEED_MAX + 1),
                               study.sampler.options)
    except (TypeError, ValueError) as err:
        raise UserError(f"study.sampler.options: {err}") from None
    try:
        ostudy = optuna.create_study(
            study_name=meta["optuna_study"], storage=open_storage(run.storage_url()),
            sampler=sampler, directions=[o.direction for o in study.objectives],
            load_if_exists=True)
    except Exception as err:  # noqa: BLE001 - a bad URL / unreachable database is the user's
        raise UserError(f"--storage: cannot open the Optuna storage: {err}") from None
    if ostudy.metric_names is None:
        with warnings.catch_warnings():  # experimental in Optuna; the dashboard shows them
            warnings.simplefilter("ignore")
            ostudy.set_metric_names([o.metric for o in study.objectives])
    ledger = Ledger(run.ledger_path)
    if with_baselines and not meta.get("baselines_enqueued"):
        enqueue_baselines(ostudy, study)
        run.update_meta(baselines_enqueued=True)
    from ..evaluate.cluster import resolve_resources  # gpus_per_trial: auto -> a measured fraction

    study = resolve_resources(study, address=address, run=run)
    gpus = float(study.resources.gpus_per_trial)
    devices = gpus if gpus > 0 else 1.0
    searcher = NasSearcher(study, ostudy, run=run, ledger=ledger, budget=budget, seed=seed,
                           session=session, devices=devices, wall_before=run.wall_spent())
    recovered = searcher.recover()
    display = None
    if progress is not False:
        display = Progress(budget, study.primary.metric,
                           stream=progress if progress not in (None, True) else None)
        display.message(f"run directory {run.path}  (watch it: nas status {run.path})")
        for note in [*(notes or []), *budget_notes(budget, study)]:
            display.message(note)
        if recovered:
            display.message(f"resumed {run.path}: {recovered} interrupted trial(s) marked "
                            "failed and enqueued again")
    nothing_to_do = searcher.admission()["decision"] == "finished"
    if nothing_to_do:  # e.g. a resume whose budget is already spent: no Ray needed
        searcher.stop_reason = "budget"
    started_ray = False if nothing_to_do else _start_ray(address)
    reaper = start_reaper() if started_ray and not address else None
    try:
        if not nothing_to_do:
            _record_driver(run, session)
            _fit(run, study, searcher, session=session, concurrency=concurrency,
                 data_dir=data_dir, display=display)
    finally:
        searcher.close_session()
        run.tick(session, searcher.session_start)
        run.update_meta(last_stop={"reason": searcher.stop_reason or "interrupted",
                                   "why": searcher.stop_detail, "time": time.time()})
        if display is not None:
            display.update(searcher.snapshot(), force=True)
            display.close()
        if started_ray:
            import ray

            ray.shutdown()
        stop_reaper(reaper)
    if searcher.fatal:
        raise UserError(searcher.fatal)
    summary = summarize(run)
    summary.stop_reason = searcher.stop_reason or "interrupted"
    summary.interrupted_recovered = recovered
    if searcher.stop_detail:
        summary.extra["why"] = searcher.stop_detail
    return summary


def _fit(run: RunDir, study: Study, searcher: Any, *, session: int, concurrency: int,
         data_dir: str | None, display: Any) -> None:
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from .callbacks import SearchCallback

    # Our own run directory holds the results: skip Tune's per-trial CSV/JSON/TB writers;
    # the legacy output engine with verbose=0 prints nothing (the live line is ours).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")  # recorded per trial instead
    for name in ("ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    res = study.resources
    resources = {"cpu": float(res.cpus_per_trial), "gpu": float(res.gpus_per_trial)}
    _check_resources(resources)
    asha = study.fidelity.scheduler == "asha" and study.training.epochs > 1
    scheduler = None
    if asha:
        from .asha import RecordingASHA

        primary = study.primary
        scheduler = RecordingASHA(
            metric=primary.metric, mode="max" if primary.direction == "maximize" else "min",
            epochs=study.training.epochs, grace=study.fidelity.grace_epochs,
            reduction_factor=study.fidelity.reduction_factor, run=run, searcher=searcher)
    trainable = tune.with_resources(
        tune.with_parameters(_trial_fn, study_dict=study.to_dict(), data_dir=data_dir,
                             asha=asha), resources)
    callback = SearchCallback(searcher, run, display, session,
                              on_first_start=lambda: _record_driver(run, session))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrency),
            scheduler=scheduler, num_samples=-1, reuse_actors=True,
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(
            name=f"session-{session}", storage_path=str(run.ray_dir),
            failure_config=tune.FailureConfig(max_failures=1), verbose=0,
            callbacks=[callback], log_to_file=False))
    tuner.fit()


def _trial_fn(config: dict[str, Any], study_dict: dict[str, Any], data_dir: str | None,
              asha: bool) -> None:
    """The Tune function trainable (a module-level function: workers import it)."""
    from .trainable import run_trial

    run_trial({**config, "asha": asha}, study_dict, data_dir)


def _trial_name(trial: Any) -> str:
    return f"trial-{int(trial.config.get('number', -1)):05d}-{trial.trial_id}"


def _check_resources(resources: dict[str, float]) -> None:
    import ray

    have = ray.cluster_resources()
    for key, name in (("cpu", "CPU"), ("gpu", "GPU")):
        if resources[key] > have.get(name, 0.0):
            raise UserError(f"study.resources: a trial needs {resources[key]:g} {name} but "
                            f"the Ray cluster has {have.get(name, 0.0):g}")


def _start_ray(address: str | None) -> bool:
    """Start (or connect to) Ray unless this process already did; True if we did."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **kwargs)
    else:
        # Ray enables token authentication for a new local cluster by default and warns
        # about it at every start: noise for a cluster this driver starts for itself.
        # The warning is filtered out (authentication stays as Ray sets it up; setting
        # RAY_AUTH_MODE=token instead skips Ray's token creation and the start hangs).
        logging.getLogger(_RAY_AUTH_LOGGER).addFilter(_drop_token_notice)
        ray.init(num_cpus=len(os.sched_getaffinity(0)), **kwargs)
    return True


_RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def _drop_token_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled")


def _record_driver(run: RunDir, session: int) -> None:
    """driver.json: this driver and the processes its local Ray started, so that a
    resume after ``kill -9`` can reap what outlived it (nas.run.rundir.reap_stale_ray)."""
    run.write_driver({"pid": os.getpid(), "pid_start": process_start(os.getpid()),
                      "host": socket.gethostname(),
                      "session": session, "time": time.time(),
                      "ray_processes": descendants(os.getpid())})


def enqueue_baselines(ostudy: Any, study: Study) -> list[str]:
    """Enqueue the study's baselines as fixed specs (user_attrs kind=baseline), their
    input and classes adapted to the study's data. A baseline that cannot run at that
    input is still enqueued and told FAIL with the reason, so the user sees it."""
    from search_space import ModelSpec, load_spec

    names = []
    for ref in study.baselines:
        attrs: dict[str, Any] = {"kind": "baseline", "baseline": ref}
        try:
            d = load_spec(ref).to_dict()
            d["input"] = {"channels": study.input_channels, "size": list(study.input_size)}
            d["classes"] = study.classes
            attrs["spec"] = d
            ModelSpec.from_dict(d)
        except Exception as err:  # noqa: BLE001 - recorded on the trial, not fatal
            attrs["baseline_error"] = (f"baseline {ref} cannot run on the study's data "
                                       f"({study.input_channels}x{study.input_size[0]}x"
                                       f"{study.input_size[1]}, {study.classes} classes): "
                                       f"{err}")
        ostudy.enqueue_trial({}, user_attrs=attrs)
        names.append(ref)
    return names
