"""Checks a search makes BEFORE it writes anything (a refused start leaves no run
directory behind, a refused resume leaves the saved run as it was), and what it tells
the user about its budget at the start (the dry-run's plan says the same)."""

from __future__ import annotations

from typing import Any

from ..budget import Budget
from ..errors import UserError
from ..run.rundir import RunDir
from ..run.summary import run_spent
from ..study import (
    Study,
    seed_value,
    user_errors,
)


def check_seed(seed: Any, study: Study) -> None:
    """A seed the samplers and NumPy accept, and a sampler the study's options build."""
    from .propose import make_sampler

    with user_errors():
        seed_value(seed, "--seed")
    try:
        make_sampler(study.sampler.name, seed, study.sampler.options)
    except (TypeError, ValueError) as err:
        raise UserError(f"study.sampler.options: {err}") from None


def on_device(study: Study, device: str, address: str | None) -> Study:
    """``--device``: cpu runs every trial on CPUs; cuda checks this machine has a GPU
    (unless the trials run on a cluster) and that the study's trials use one."""
    import dataclasses

    if device in (None, "auto"):
        return study
    if device == "cpu":
        cpu_only = dataclasses.replace(study.resources, gpus_per_trial=0)
        return dataclasses.replace(study, resources=cpu_only)
    if address is None:
        from ..evaluate.train import resolve_device

        resolve_device(device)
    if study.resources.gpus_per_trial == 0:
        raise UserError(f"--device {device}: the study runs its trials on CPUs "
                        "(study.resources.gpus_per_trial: 0); set gpus_per_trial "
                        "(e.g. auto) to train on GPUs")
    return study


def check_new_total(run: RunDir, new: Budget, saved: Budget | None) -> list[str]:
    """``--resume RUN --budget X``: X is the run's new TOTAL. Refuse one that the run has
    already spent (it would run nothing and silently replace the ``saved`` budget)."""
    if saved is not None and saved.text == new.text:
        return []
    was = saved.text if saved is not None else None
    spent = run_spent(run, new)
    if spent >= new.limit:
        raise UserError(
            f"--budget {new.text}: a budget is the run's total, and this run has already "
            f"spent {spent / new.per_unit:.4g} {new.unit} (saved budget: {was}); pass a "
            f"larger total, or resume without --budget to keep {was}")
    return [f"budget: the total is now {new.text} (was {was}); "
            f"{spent / new.per_unit:.4g} {new.unit} already spent"]


def budget_notes(budget: Budget, study: Study) -> list[str]:
    """What a user should know about how the budget is counted (search start, dry-run)."""
    notes = []
    if budget.kind == "device" and study.resources.gpus_per_trial == 0:
        notes.append(f"budget: {budget.text} of device time; trials here run on CPUs "
                     "(gpus_per_trial 0), so each counts as one device: device hours are "
                     "CPU-worker hours")
    if budget.kind != "trials":
        notes.append("budget: a trial starts only if the budget left pays for its expected "
                     "(median) cost, and started trials always finish, so a run may end "
                     "over budget by what its last trials cost beyond that estimate")
    return notes
