"""Stopping a search whose constraints nothing meets, and saying why.

A study with limits no candidate can meet would otherwise spend its whole budget on
infeasible and duplicate trials (506 trials of a 6-minute digits search with
``params <= 100``) and end as if all were well. The search core asks :func:`hopeless`
before each suggestion: once ``MIN_VERDICTS`` distinct search candidates have been
judged against the constraints and not one met them all, the search stops with reason
``constraints`` and this module's one-line account of which limit failed how.

Why 50: a space where a twentieth of the candidates is feasible shows none in 50 draws
only 8% of the time (0.95^50), a tenth 0.5%, and the sampler, which sees the constraints,
steers towards feasible ones; a study whose feasible share is smaller than that needs its
limits or its space changed rather than more budget. A space of fewer architectures is
hopeless once all of them were judged. Baselines do not count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from optuna.trial import TrialState

from ..evaluate.candidates import fmt_count

#: distinct candidates judged (complete or stopped) before a search can be hopeless.
MIN_VERDICTS = 50


def hopeless(records: Iterable[tuple[Any, Any, Mapping[str, float], Mapping[str, Any]]],
             limits: Mapping[str, float], minimum: int = MIN_VERDICTS) -> str | None:
    """None while some candidate met every constraint (or too few were judged); else
    e.g. ``"0 of 127 candidates met the constraints: 127 over params (smallest 32.8k >
    100)"``. ``records``: (state, values, constraints, attrs) of the distinct told
    trials, constraints as Optuna keeps them (value - limit) / limit, <= 0 = met."""
    judged = [c for state, _, c, attrs in records
              if attrs.get("kind") != "baseline" and state in (TrialState.COMPLETE,
                                                               TrialState.PRUNED)]
    if not limits or len(judged) < minimum:
        return None
    if any(all(v <= 0 for v in c.values()) for c in judged):
        return None
    parts = []
    for name, limit in limits.items():
        over = [c[name] for c in judged if c.get(name, 0.0) > 0]
        if over:
            smallest = limit * (1.0 + min(over))
            parts.append(f"{len(over)} over {name} (smallest {fmt_count(smallest)} > "
                         f"{fmt_count(limit)})")
    return (f"0 of {len(judged)} candidates met the constraints: {'; '.join(parts)}; "
            "raise the limits or change the space")
