"""Search budgets: how much a search may spend, and whether the next trial may start.

A budget is written as a number followed by a unit (case-insensitive, spaces allowed):

============  ==========================================================
``100gpuh``   device-hours of trial time (``gpumin``, ``gpusec`` likewise)
``2h``        wall-clock time of the search (``min``, ``s`` likewise)
``200trials`` trials told to Optuna (``trial`` works too)
============  ==========================================================

Device time is what the design calls the budget: each trial attempt costs its wall time
times the devices it held (GPUs it held, fractions allowed; a CPU-only worker counts as
one device), see :mod:`nas.run.ledger`. Wall-clock time is the elapsed time of the search
summed over all its sessions (a resumed search continues the same clock). A trials budget
counts the trials told to Optuna (infeasible trials included, since they are told too;
trials failed by an interruption are not, since they are re-run; a proposal of an
architecture already evaluated is no trial: the core replaces it in the same trial).

:func:`admit` is the policy the search core follows before it starts a trial: no trial starts
that the remaining budget cannot pay for at its expected cost (:func:`expected_cost`).
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from typing import Literal

from .errors import UserError

#: unit -> (kind, seconds or trials per unit).
UNITS: dict[str, tuple[str, float]] = {
    "gpuh": ("device", 3600.0),
    "gpumin": ("device", 60.0),
    "gpusec": ("device", 1.0),
    "h": ("wall", 3600.0),
    "min": ("wall", 60.0),
    "s": ("wall", 1.0),
    "trials": ("trials", 1.0),
    "trial": ("trials", 1.0),
}

_BUDGET_RE = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]+)\s*$")
_EXAMPLES = "e.g. '100gpuh', '30gpumin', '2h', '45min', '200trials'"

Decision = Literal["start", "wait", "finished"]


@dataclass(frozen=True)
class Budget:
    """A parsed budget. ``limit`` is in seconds (device or wall) or in trials."""

    kind: str  # "device" | "wall" | "trials"
    limit: float
    unit: str  # the canonical unit it was written in (gpuh, min, trials, ...)
    text: str  # what the user wrote

    @property
    def per_unit(self) -> float:
        return UNITS[self.unit][1]

    def in_unit(self, amount: float) -> float:
        """Seconds (or trials) expressed in this budget's unit."""
        return amount / self.per_unit

    def spent(self, *, device_s: float, wall_s: float, told: int) -> float:
        """THE rule for what a search has spent of this budget, in base units: device
        seconds of trial time (the ledger's sum, :mod:`nas.run.ledger`) for a device
        budget, wall seconds of the search over all its sessions for a wall-clock budget,
        trials told to Optuna (not those failed by an interruption: they are re-run) for
        a trials budget. Every reader of a search (the core, ``nas status``, the
        dry-run of a resume) counts through this one method."""
        return {"device": float(device_s), "wall": float(wall_s),
                "trials": float(told)}[self.kind]

    def left(self, spent: float) -> float:
        """What is left after ``spent`` (base units), never below zero."""
        return max(0.0, self.limit - spent)

    def to_dict(self, spent: float | None = None) -> dict[str, object]:
        """JSON-able description; with ``spent`` (base units) also spent/left."""
        out: dict[str, object] = {"text": self.text, "kind": self.kind, "unit": self.unit,
                                  "limit": self.in_unit(self.limit)}
        if spent is not None:
            out["spent"] = self.in_unit(spent)
            out["left"] = self.in_unit(self.left(spent))
        return out

    def format(self, amount: float) -> str:
        """``amount`` (base units) as text in this budget's unit, e.g. '1.25gpumin'."""
        value = self.in_unit(amount)
        if self.kind == "trials":
            return f"{int(round(value))} trials"
        return f"{value:.3g}{self.unit}"


def parse_budget(text: str | int) -> Budget:
    """Parse a budget string; a UserError names what was wrong and what is allowed.

    The message carries no field prefix: callers add one ("--budget: ...",
    "study.budget: ...").
    """
    raw = str(text)
    match = _BUDGET_RE.match(raw)
    allowed = ", ".join(u for u in UNITS if u != "trial")
    if match is None:
        raise UserError(f"{raw!r} is not a budget; write a number and a unit "
                        f"({allowed}), {_EXAMPLES}")
    number, unit = float(match.group(1)), match.group(2).lower()
    if unit not in UNITS:
        raise UserError(f"{raw!r}: unknown budget unit {match.group(2)!r}; allowed: "
                        f"{allowed} ({_EXAMPLES})")
    if not math.isfinite(number) or number <= 0:
        raise UserError(f"{raw!r}: a budget must be a positive amount ({_EXAMPLES})")
    kind, scale = UNITS[unit]
    if kind == "trials":
        if number != int(number):
            raise UserError(f"{raw!r}: a trials budget must be a whole number")
        unit = "trials"
    return Budget(kind=kind, limit=number * scale, unit=unit, text=raw.strip())


def expected_cost(trained: list[float], finished: list[float],
                  extrapolated: list[float]) -> float | None:
    """The expected cost (device or wall seconds) of the next trial.

    ``trained``: costs of finished trials that trained (their median is the estimate:
    robust to one slow or fast trial, and conservative because infeasible candidates,
    rejected by the cheap checks, would pull a mean of all trials down); ``finished``:
    costs of all finished attempts, used when none trained yet; ``extrapolated``: full-run
    costs extrapolated from running trials' first epochs (check time + epochs x time per
    epoch), used before any trial finished. None: nothing known yet.
    """
    for costs in (trained, extrapolated, finished):
        if costs:
            return float(statistics.median(costs))
    return None


def admit(budget: Budget, *, spent: float, running: int, expected: float | None,
          told: int) -> Decision:
    """May one more trial start now?

    ``spent``: device or wall seconds spent so far (the ledger, or the clock);
    ``running``: trials started and not yet told; ``expected``: :func:`expected_cost`
    (None = unknown: a trial may start, the concurrency limit bounds the overshoot);
    ``told``: trials told to Optuna (trials budgets).

    "finished" means the search ends once running trials end; "wait" means ask again
    later (running trials hold part of the budget and may release it).
    """
    if budget.kind == "trials":
        return "start" if told + running < budget.limit else "finished"
    if spent >= budget.limit:
        return "finished"
    if expected is None:
        return "start"
    if spent + expected > budget.limit:
        return "finished"
    if budget.kind == "wall":
        # Running trials run beside the next one: they do not use its wall time.
        return "start"
    committed = spent + running * expected
    return "start" if committed + expected <= budget.limit else "wait"
