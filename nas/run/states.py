"""How a search's trials are read back from Optuna: what each user attribute says and each
trial's category. Feasibility and the front: :mod:`nas.run.dominance`.

Ray-free, so ``nas status`` and the results commands can use it without starting Ray.
The search core (nas.search.core) writes these user attributes on every trial; everything in
them is a plain JSON value, so the study opens in optuna-dashboard as is:

- ``kind``: "search" or "baseline" (``baseline``: its name, e.g. "zoo:resnet18-cifar";
  ``in_space``: the baseline is a point of the study's space, told with its params so
  the sampler learns from it)
- ``spec``: the model spec dict; ``hash``: its canonical hash
- ``status``: what happened: ok, infeasible, oom, stopped, diverged, error,
  worker_died, interrupted, invalid, duplicate
- ``duplicate_of``: the trial that evaluated the same architecture (no training; a
  baseline twin, or the last proposal of a search that found its space exhausted)
- ``duplicates_skipped``: how many proposals of architectures already evaluated (or
  running) this trial replaced; none of them is a trial (``proposed_by``: neighbour or
  random, ``neighbour_of``, ``redrawn``: what replaced the last one)
- ``metrics``, ``violations``, ``message``, ``epochs_done``, ``curve`` (primary metric per
  epoch), ``wall_s``, ``check_s``, ``device_s``, ``devices``, ``attempts``,
  ``provenance`` (device, torch, precision, batch_size, seed), ``placeholders`` (objective
  values that are stand-ins, e.g. accuracy 0 for a candidate never trained)
- ``retry_of``: the interrupted trial this one re-runs
- ``admission``: the budget policy's inputs when the trial was started (spent, expected
  cost, running, told, limit; seconds or trials); ``pre_training_s``: wall time before
  the first epoch (checks + model build; what a trial stopped by ASHA has instead of
  ``check_s``); ``session``, ``executor_id`` (Ray's trial id, or local-N), ``seed``

Categories (``category``): complete (feasible, full fidelity), infeasible (broke a hard
constraint or ran out of memory: never trained / cut off), stopped (by ASHA: told PRUNED),
failed (error, NaN loss, worker died twice, interrupted), duplicate, running, waiting.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .dominance import is_feasible

CATEGORIES = ("complete", "infeasible", "stopped", "failed", "duplicate", "running",
              "waiting")


def category(trial: Any) -> str:
    """The category of an Optuna FrozenTrial."""
    state = trial.state.name
    if trial.user_attrs.get("duplicate_of") is not None and state != "RUNNING":
        return "duplicate"
    if state == "RUNNING":
        return "running"
    if state == "WAITING":
        return "waiting"
    if state == "PRUNED":
        return "stopped"
    if state == "FAIL":
        return "failed"
    return "complete" if is_feasible(trial) else "infeasible"


def counts(trials: Iterable[Any]) -> dict[str, int]:
    out = dict.fromkeys(CATEGORIES, 0)
    n = 0
    skipped = 0
    for t in trials:
        out[category(t)] += 1
        skipped += int(t.user_attrs.get("duplicates_skipped", 0))
        n += 1
    out["total"] = n
    out["duplicates_skipped"] = skipped
    return out
