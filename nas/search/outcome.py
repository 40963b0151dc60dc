"""How a trial's outcome is told to Optuna: its state, objective values and constraints.

- ok: COMPLETE with the objective values and constraints;
- infeasible / oom: COMPLETE with constraints > 0, so NSGA-II / TPE rank it below every
  feasible trial; objective values never measured are placeholders (accuracy 0, an
  unmeasured minimised metric +inf) listed in ``user_attrs["placeholders"]``;
- stopped by ASHA: PRUNED (a low-fidelity accuracy must not enter the Pareto front);
- diverged (NaN loss), error, a worker that died twice: FAIL with ``message``;
- interrupted (the driver stopped mid-trial): FAIL, and the same candidate is enqueued
  again (:mod:`nas.search.core`).

Constraints are one per study constraint, as the RELATIVE amount over the limit,
``(value - limit) / limit`` (<= 0 feasible), so that violations of params (millions) and
latency (ms) weigh alike in constrained domination; plus ``oom`` (1 when the candidate
ran out of memory, else 0). Absolute violations are in ``user_attrs["violations"]``.
Pure functions: no Optuna, no Ray.
"""

from __future__ import annotations

import math
from typing import Any

from ..study.sections import judged_value

#: statuses that mean the candidate was trained (its cost predicts a trained trial's).
TRAINED = ("ok", "stopped", "diverged")
#: statuses told COMPLETE (with values and constraints); "stopped" is PRUNED, others FAIL.
COMPLETE = ("ok", "infeasible", "oom")


def objective_values(objectives: Any, out: dict[str, Any]) -> tuple[list[float], list[str]]:
    """(values in objective order, the metrics that are placeholders)."""
    metrics = out.get("metrics", {})
    trained = out["status"] == "ok"
    values, placeholders = [], []
    for obj in objectives:
        v = metrics.get(obj.metric)
        if obj.metric == "accuracy" and not trained:
            v = None  # a candidate that did not finish training has no accuracy
        if v is None or not math.isfinite(float(v)):
            placeholders.append(obj.metric)
            if obj.direction == "maximize":
                v = 0.0 if obj.metric == "accuracy" else -math.inf
            else:
                v = math.inf
        values.append(float(v))
    return values, placeholders


def constraint_values(limits: dict[str, float], out: dict[str, Any]) -> dict[str, float]:
    """Relative constraint values (<= 0 feasible) for Optuna's constrained samplers."""
    metrics, over = out.get("metrics", {}), out.get("violations", {})
    c: dict[str, float] = {}
    for name, limit in limits.items():
        value = judged_value(metrics, name)  # latency: its p10, as the checks judge it
        if over.get(name, 0) > 0:
            c[name] = float(over[name]) / limit
        elif value is not None and math.isfinite(float(value)):
            c[name] = (float(value) - limit) / limit
        else:
            c[name] = 0.0  # not measured: a cheaper check decided first
    for name, amount in over.items():
        if name not in c:
            c[name] = 1.0 if amount > 0 else 0.0
    c["oom"] = 1.0 if out["status"] == "oom" else 0.0
    if out["status"] != "ok" and all(v <= 0 for v in c.values()):
        c["infeasible"] = 1.0  # never let an untrained candidate look feasible
    return c


def worker_died(message: str) -> bool:
    """Does an executor's error text say the worker process died (rather than raised)?"""
    text = message.lower()
    return any(s in text for s in ("actor died", "died unexpectedly", "worker died",
                                   "actordiederror", "unexpected system error"))


def plain(value: Any) -> Any:
    """JSON-able copy (non-finite floats become strings: JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
