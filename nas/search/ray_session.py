"""One search session on Ray Tune: start (or join) Ray, run the core's trials as Tune
trials, shut down.

Ray's own experiment state is NOT used to resume (Ray's restore has replaced custom
searchers silently before, Ray #30861): each session is a fresh Tune run whose searcher
reloads the Optuna study through the core, so a resume after Ctrl-C or ``kill -9`` keeps
every told trial, re-runs the interrupted ones and continues the same ledger.

Tune settings: a function trainable (:mod:`nas.search.trainable`) reporting each epoch,
``reuse_actors=True``, a ConcurrencyLimiter at ``concurrency``, the ASHA rule as Tune's
scheduler, ``FailureConfig(max_failures=1)`` (a dead worker is retried once), results
under ``RUN_DIR/ray/session-K``. A local Ray is started with every CPU of the machine, no
dashboard and no worker log forwarding, and a watcher (:mod:`nas.run.reaper`) kills it if
this driver dies by ``kill -9``. Ray is imported inside the functions.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from ..errors import UserError
from ..run.reaper import start_reaper, stop_reaper
from ..run.rundir import RunDir, descendants, process_start
from ..study import Study
from .asha import AshaRule
from .core import SearchCore


def run_on_ray(run: RunDir, study: Study, core: SearchCore, asha: AshaRule | None, *,
               session: int, concurrency: int, address: str | None, data_dir: str | None,
               display: Any, trainable: Any = None) -> None:
    """Run the core's trials on Ray until the core finishes the search (or Ctrl-C).
    ``trainable``: another Tune function trainable instead of the study's trials, with the
    study's resources (``benchmarks/driver_scale.py`` runs sleeping surrogate trials)."""
    started = _start_ray(address)
    reaper = start_reaper() if started and not address else None
    try:
        record_driver(run, session)
        _fit(run, study, core, asha, session=session, concurrency=concurrency,
             data_dir=data_dir, display=display, trainable=trainable)
    finally:
        if started:
            import ray

            ray.shutdown()
        stop_reaper(reaper)


def _fit(run: RunDir, study: Study, core: SearchCore, asha: AshaRule | None, *,
         session: int, concurrency: int, data_dir: str | None, display: Any,
         trainable: Any = None) -> None:
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from .ray_adapter import CoreAsha, CoreCallback, CoreSearcher

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
    trainable = tune.with_resources(
        trainable or tune.with_parameters(_trial_fn, study_dict=study.to_dict(),
                                          data_dir=data_dir), resources)
    callback = CoreCallback(core, run, display, session,
                            on_first_start=lambda: record_driver(run, session))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(CoreSearcher(core), max_concurrent=concurrency),
            scheduler=CoreAsha(asha, core) if asha is not None else None, num_samples=-1,
            reuse_actors=True, trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(
            name=f"session-{session}", storage_path=str(run.ray_dir),
            failure_config=tune.FailureConfig(max_failures=1), verbose=0,
            callbacks=[callback], log_to_file=False))
    tuner.fit()


def _trial_fn(config: dict[str, Any], study_dict: dict[str, Any],
              data_dir: str | None) -> None:
    """The Tune function trainable (a module-level function: workers import it)."""
    from .trainable import run_trial

    run_trial(config, study_dict, data_dir)


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


def record_driver(run: RunDir, session: int) -> None:
    """driver.json: this driver and the processes its local Ray started, so that a
    resume after ``kill -9`` can reap what outlived it (nas.run.rundir.reap_stale_ray)."""
    run.write_driver({"pid": os.getpid(), "pid_start": process_start(os.getpid()),
                      "host": socket.gethostname(),
                      "session": session, "time": time.time(),
                      "ray_processes": descendants(os.getpid())})


