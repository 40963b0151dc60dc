"""The Ray Tune function trainable: one trial = ``nas.evaluate.trial.evaluate_candidate``.

It reports after every epoch (``tune.report``) so ASHA can stop it, then once more with
``final: True`` and the whole outcome as a JSON string (``outcome``), which the core
tells Optuna. Every report carries ``trial_wall_s``, the seconds since the trainable was
entered (data loading of a worker's first trial and the checks included): that is the
wall time the ledger charges. The study and the dataset are loaded once per worker
process and reused by the trials that worker runs (``reuse_actors=True``). A worker of a
GPU shared by several trials (``gpus_per_trial`` < 1) caps its CUDA memory at its share
(:mod:`nas.evaluate.gpu_share`): Ray does not, and one large trial would otherwise run
its neighbours out of memory.

A UserError (the study's fault, e.g. a dataset that is missing or does not match the
space) is reported as ``fatal``: the core stops the search and re-enqueues the trial,
and ``nas search`` ends with that one line instead of failing every trial in turn.

The in-process executor (:mod:`nas.search.local`) runs the same :func:`trial_reports`;
ASHA's rule (:mod:`nas.search.asha`) never stops a trial at its last epoch.

Test-only fault injection (tiny, inert unless BOTH ``NAS_TEST_FAULTS`` and pytest's
``PYTEST_CURRENT_TEST`` are set in the worker's environment): ``NAS_TEST_FAULTS`` names a
JSON file holding a list of faults; each trial takes the first one left (under a file
lock) and suffers it:

- ``kill``: the worker process exits (``os._exit``) after the first epoch (Ray retries
  the trial once on a new worker);
- ``memory`` / ``error`` / ``nan``: the training split is replaced by one whose items
  raise MemoryError / RuntimeError, or are NaN images, so the REAL evaluation code
  classifies it (oom / error / diverged).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

_STUDIES: dict[str, Any] = {}


def run_trial(config: dict[str, Any], study_dict: dict[str, Any],
              data_dir: str | None = None) -> None:
    """The body of one trial on a Ray worker (see the module docstring)."""
    from ray import tune

    from ..errors import UserError
    from ..evaluate.gpu_share import confine

    t0 = time.perf_counter()
    try:
        study = _study(study_dict)
        if not isinstance(gpus := study.resources.gpus_per_trial, str):  # auto: resolved
            confine(float(gpus))
        data = _data(study, data_dir)
    except UserError as err:  # the study's fault, not the trial's: stop the search
        tune.report({"final": True, "fatal": str(err), "trial_wall_s": 0.0,
                     study_dict["objectives"][0]["metric"]: math.nan})
        return
    fault = _take_fault()
    if fault in ("memory", "error", "nan"):
        data = _faulty(data, fault)

    def report(result: dict[str, Any]) -> bool:
        if fault == "kill" and not result.get("final"):
            os._exit(17)
        tune.report(result)  # blocks; exits this thread if ASHA stops the trial
        return False

    trial_reports(config, study, data, report, data_dir=data_dir, t0=t0,
                  provenance=_node())


def trial_reports(config: dict[str, Any], study: Any, data: Any,
                  report: Callable[[dict[str, Any]], bool], *, data_dir: str | None = None,
                  t0: float | None = None, provenance: dict[str, Any] | None = None,
                  clock: Callable[[], float] = time.perf_counter) -> None:
    """Evaluate one proposed candidate, sending ``report`` one result per epoch and a final
    one (``final: True`` with the ``outcome`` as JSON, or ``fatal``). Every result carries
    ``trial_wall_s``, the ``clock`` seconds since ``t0`` (the ledger charges it; a
    benchmark may charge CPU time instead); ``report`` returning True stops training
    (ASHA). Both executors run trials through this."""
    from ..errors import UserError
    from ..evaluate.trial import evaluate_candidate

    t0 = clock() if t0 is None else t0
    primary = study.primary.metric

    def on_epoch(epoch: int, metrics: dict[str, Any]) -> bool:
        result = {k: float(v) for k, v in metrics.items() if _is_num(v)}
        result.update(epoch=epoch, trial_wall_s=clock() - t0)
        result.setdefault(primary, math.nan)
        return bool(report(result))

    try:
        outcome = evaluate_candidate(config["spec"], study, seed=int(config["seed"]),
                                     data=data, on_epoch=on_epoch, data_dir=data_dir,
                                     comparison=config.get("kind") == "baseline")
    except UserError as err:  # e.g. the dataset does not match the space
        report({"final": True, "fatal": str(err), "trial_wall_s": clock() - t0,
                primary: math.nan})
        return
    result = outcome.to_dict()
    result["provenance"].update(provenance or {})  # which Ray node ran it (clusters)
    final = {"final": True, "outcome": json.dumps(result, default=str),
             "epoch": int(result.get("epochs_done", 0)),
             "trial_wall_s": clock() - t0}
    value = result.get("metrics", {}).get(primary)
    final[primary] = float(value) if _is_num(value) else math.nan
    report(final)


def _node() -> dict[str, Any]:
    """The Ray node id and host name of this worker (provenance of cluster runs)."""
    import socket

    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(),
            "hostname": socket.gethostname()}


def _study(study_dict: dict[str, Any]):
    from ..study import load_study

    key = json.dumps(study_dict, sort_keys=True, default=str)
    if key not in _STUDIES:
        # The checks import their cost model and measurement lazily; import them with
        # the worker's other start-up work so that a worker's first trial does not
        # report its import time as check time (it is still in the trial's wall time).
        import search_space.cost  # noqa: F401
        import search_space.measure  # noqa: F401

        from ..evaluate import checks  # noqa: F401

        _STUDIES.clear()
        _STUDIES[key] = load_study(study_dict)
    return _STUDIES[key]


def _data(study: Any, data_dir: str | None):
    from ..evaluate.data import cached_data

    return cached_data(study.data, data_dir)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ---------------------------------------------------------------------- test-only faults
def _take_fault() -> str | None:
    path = os.environ.get("NAS_TEST_FAULTS")
    if not path or not os.environ.get("PYTEST_CURRENT_TEST"):
        return None
    try:
        with open(path, "r+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            faults = json.load(fh)
            if not faults:
                return None
            fh.seek(0)
            fh.truncate()
            json.dump(faults[1:], fh)
            return str(faults[0])
    except (OSError, ValueError):
        return None


def _faulty(data: Any, fault: str):
    """A copy of the bundle whose training split fails the way ``fault`` says."""
    import dataclasses

    import torch
    from torch.utils.data import Dataset

    shape = (data.channels, *data.size)

    class Faulty(Dataset):
        def __len__(self) -> int:
            return len(data.train)

        def __getitem__(self, i: int):
            if fault == "memory":
                raise MemoryError("injected by NAS_TEST_FAULTS")
            if fault == "error":
                raise RuntimeError("injected by NAS_TEST_FAULTS")
            return torch.full(shape, math.nan), 0

    return dataclasses.replace(data, train=Faulty())
