"""``run_search``: a study run as a persistent, resumable search.

Optuna proposes the trials through the search core (:mod:`nas.search.core`), an executor
runs them: Ray Tune by default (a local Ray, or a cluster with ``address``,
:mod:`nas.search.ray_session`), or this process one trial at a time
(``executor="local"``, :mod:`nas.search.local`: no Ray to start, for a laptop, a
notebook or a debugger). Everything that matters is in the run directory
(:mod:`nas.run.rundir`): the Optuna storage, the device-time ledger, the trial logs,
ASHA's rungs, so a resume after Ctrl-C or ``kill -9`` keeps every told trial, re-runs the
interrupted ones and continues the same ledger, whichever executor ran them.

Stale trials: only one driver may hold a run directory (an flock, nas.run.rundir), so
every trial still RUNNING in Optuna when a session starts belongs to a dead driver; it is
failed and re-enqueued at once (no RDBStorage heartbeat / ``fail_stale_trials`` wait).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, TextIO

from ..budget import Budget
from ..errors import UserError
from ..run.ledger import Ledger
from ..run.rundir import RunDir, default_run_dir
from ..run.summary import SearchSummary, run_study, summarize
from ..study import SEED_MAX, Study, load_study
from .asha import AshaRule
from .core import SearchCore
from .local import run_in_process, training_trial
from .preflight import budget_notes, check_new_total, check_seed, on_device
from .progress import Progress
from .propose import enqueue_baselines, first_evaluated, make_sampler


def run_search(study: Study | str | Path | dict | None = None, run_dir: str | Path | None = None,
               budget: str | None = None, address: str | None = None,
               storage: str | None = None, seed: int | None = None,
               concurrency: int | None = None, with_baselines: bool = False,
               resume: str | Path | None = None, data_dir: str | None = None,
               progress: TextIO | bool | None = None, device: str = "auto",
               executor: str = "ray") -> SearchSummary:
    """Run (or resume) a search; returns when the budget is spent, the space is
    exhausted, or the user interrupts (Ctrl-C: running trials are re-run on resume).

    ``study``: a Study, a path, a packaged study name, or None (the digits study);
    ``run_dir``: where to write (default ``runs/<study>-<timestamp>``); ``budget``:
    overrides the study's (``nas.budget`` syntax); ``storage``: an SQLAlchemy URL for the
    Optuna storage (default: SQLite in the run dir); ``resume``: an existing run dir (then
    ``study``, ``run_dir`` and ``storage`` come from it); ``progress``: a stream for the
    live display, False for none, None for stderr; ``device``: "auto" (trials use the
    study's resources.gpus_per_trial), "cpu" (trials on CPUs only) or "cuda" (the study's
    GPU trials, refused where there is no GPU); ``executor``: "ray" (Ray Tune runs the
    trials, ``concurrency`` at once) or "local" (this process, one trial at a time).
    """
    if executor not in ("ray", "local"):
        raise UserError(f"--executor: {executor!r} is not one of ray, local")
    if executor == "local" and address:
        raise UserError("--executor local runs the trials in this process; --address "
                        "(a Ray cluster) needs --executor ray")
    if resume is not None:
        if study is not None or run_dir is not None:
            raise UserError("--resume: give either a study (a new search) or --resume "
                            "RUN_DIR, not both; --out does not apply to a resume")
        run = RunDir.open(resume)
        meta = run.meta()
        study_obj = run_study(run)  # with the budget in effect (run.json's)
    else:
        study_obj = load_study(study)
        meta = None
    # Everything is checked BEFORE anything is written: a refused start leaves no run
    # directory behind (and a refused resume leaves the saved run as it was).
    seed = _pick(seed, meta and meta.get("seed"), study_obj.sampler.seed)
    check_seed(seed, study_obj)
    saved = study_obj.budget
    if budget is not None:
        study_obj = study_obj.with_budget(budget)
    bud = study_obj.budget
    if bud is None:
        raise UserError("no budget: pass --budget (e.g. --budget 20gpumin) or set "
                        "budget: in the study")
    conc = concurrency if concurrency is not None else study_obj.resources.concurrency
    if not isinstance(conc, int) or isinstance(conc, bool) or conc < 1:
        raise UserError(f"--concurrency: {conc!r} is not a positive integer")
    study_obj = on_device(study_obj, device, address)
    notes: list[str] = []
    if resume is not None and budget is not None:
        notes += check_new_total(run, bud, saved)

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
                            data_dir=data_dir, progress=progress, executor=executor,
                            notes=notes)
    finally:
        run.release()


def _pick(*options: Any) -> Any:
    return next((o for o in options if o is not None), None)


def _run_session(run: RunDir, study: Study, budget: Budget, *, seed: int,
                 concurrency: int, address: str | None, with_baselines: bool,
                 data_dir: str | None, progress: TextIO | bool | None,
                 executor: str = "ray", notes: list[str] | None = None) -> SearchSummary:
    session = run.start_session()
    ostudy = open_run_study(run, study, seed + session, with_baselines)
    if executor == "ray":
        from ..evaluate.cluster import resolve_resources  # gpus_per_trial: auto -> a fraction

        study = resolve_resources(study, address=address, run=run)
    gpus = float(study.resources.gpus_per_trial)
    devices = gpus if gpus > 0 and executor == "ray" else 1.0
    core = SearchCore(study, ostudy, run=run, ledger=Ledger(run.ledger_path), budget=budget,
                      seed=seed, session=session, devices=devices,
                      wall_before=run.wall_spent())
    recovered = core.recover()
    display = _display(run, study, budget, progress, [*(notes or []), *(
        [f"resumed {run.path}: {recovered} interrupted trial(s) marked failed and "
         "enqueued again"] if recovered else [])])
    if core.admission()["decision"] == "finished":  # e.g. a resume with its budget spent
        core.stop_reason = "budget"
    asha = None
    try:
        if core.stop_reason is None:
            asha = AshaRule.for_study(study, run)
            if executor == "local":
                _run_here(run, study, core, asha, session=session, data_dir=data_dir,
                          display=display)
            else:
                from .ray_session import run_on_ray

                run_on_ray(run, study, core, asha, session=session,
                           concurrency=concurrency, address=address, data_dir=data_dir,
                           display=display)
    finally:
        core.close_session()
        if asha is not None:
            asha.save()  # the snapshot lags the rung log by up to a second
        run.tick(session, core.session_start)
        run.update_meta(last_stop={"reason": core.stop_reason or "interrupted",
                                   "why": core.stop_detail, "time": time.time()})
        if display is not None:
            display.update(core.snapshot(), force=True)
            display.close()
    if core.fatal:
        raise UserError(core.fatal)
    summary = summarize(run)
    summary.stop_reason = core.stop_reason or "interrupted"
    summary.interrupted_recovered = recovered
    if core.stop_detail:
        summary.extra["why"] = core.stop_detail
    return summary


def open_run_study(run: RunDir, study: Study, sampler_seed: int, with_baselines: bool):
    """The run's Optuna study (created on the first session), its sampler seeded per
    session, the study's start points and (``with_baselines``) baselines enqueued once."""
    import optuna

    from ..run.sole_writer import driver_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    meta = run.meta()
    try:
        sampler = make_sampler(study.sampler.name, sampler_seed % (SEED_MAX + 1),
                               study.sampler.options)
    except (TypeError, ValueError) as err:
        raise UserError(f"study.sampler.options: {err}") from None
    try:
        ostudy = optuna.create_study(
            study_name=meta["optuna_study"],
            storage=driver_storage(run.storage_url()),
            sampler=sampler, directions=[o.direction for o in study.objectives],
            load_if_exists=True)
    except Exception as err:  # noqa: BLE001 - a bad URL / unreachable database is the user's
        raise UserError(f"--storage: cannot open the Optuna storage: {err}") from None
    if ostudy.metric_names is None:
        with warnings.catch_warnings():  # experimental in Optuna; the dashboard shows them
            warnings.simplefilter("ignore")
            ostudy.set_metric_names([o.metric for o in study.objectives])
    # The study's start points first (every search), then, with --with-baselines, the
    # other baselines; each group once per run, whichever session asks first.
    start, others = first_evaluated(study, with_baselines, meta)
    if start:
        enqueue_baselines(ostudy, study, start)
        run.update_meta(start_points_enqueued=True)
    if others:
        enqueue_baselines(ostudy, study, others)
        run.update_meta(baselines_enqueued=True)
    return ostudy


def _display(run: RunDir, study: Study, budget: Budget, progress: TextIO | bool | None,
             notes: list[str]) -> Progress | None:
    if progress is False:
        return None
    display = Progress(budget, study.primary.metric,
                       stream=progress if progress not in (None, True) else None)
    display.message(f"run directory {run.path}  (watch it: nas status {run.path})")
    for note in [*notes, *budget_notes(budget, study)]:
        display.message(note)
    return display


def _run_here(run: RunDir, study: Study, core: SearchCore, asha: AshaRule | None, *,
              session: int, data_dir: str | None, display: Progress | None) -> None:
    """The in-process executor: one trial at a time, in this process."""
    from ..evaluate.data import cached_data
    from .ray_session import record_driver

    data = cached_data(study.data, data_dir)
    record_driver(run, session)
    last_tick = [0.0]

    def on_step() -> None:
        now = time.time()
        if now - last_tick[0] >= 1.0:
            last_tick[0] = now
            run.tick(session, core.session_start)
        if display is not None:
            display.update(core.snapshot())

    try:
        run_in_process(core, training_trial(study, data, data_dir), workers=1, asha=asha,
                       on_step=on_step)
    except KeyboardInterrupt:  # Ctrl-C: the session ends "interrupted" (the caller says
        pass  # how to resume); the trial it cut off is re-enqueued by close_session
