"""What the study's TPE (:mod:`nas.search.snapshot_tpe`) needs to know of each trial,
kept from one ask to the next and updated only for the trials that changed.

Optuna's TPE re-derives everything from the trial objects at every ask: each trial's
feasibility (re-parsing its constraints from the system attrs) once per ask, and each
trial's value of a parameter (``to_internal_repr``) once per parameter per ask: a Python
loop over all trials, ~13 times per digits candidate, which made an ask grow from 65 ms
to 330 ms over 10,000 surrogate trials (benchmarks/driver_scale.py). A trial's facts
change only when the trial does, and the storages hand out a new trial object when
that happens (the driver's :class:`nas.run.sole_writer.SoleWriterStorage` and Optuna's
own), so one pass per ask finds the changed ones by identity; a parameter's values are
then one NumPy column indexed by trial number, read for the below and above groups by
fancy indexing instead of a loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers._tpe.sampler import _get_infeasible_trial_score
from optuna.trial import FrozenTrial, TrialState

#: how a trial enters TPE's split (None: not at all, e.g. a duplicate or a failed trial)
RUNNING, INFEASIBLE, COMPLETE, PRUNED = "running", "infeasible", "complete", "pruned"


def _kind(trial: FrozenTrial) -> str | None:
    """Optuna's ``_split_trials`` categories, in its order (a RUNNING trial has no
    constraints yet); None for a trial the search core told as a duplicate (see
    SnapshotTPE: a repeat of a cached result is no observation) and for other states."""
    if "duplicate_of" in trial.user_attrs:
        return None
    if trial.state == TrialState.RUNNING:
        return RUNNING
    if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
        return None
    if _get_infeasible_trial_score(trial) > 0:
        return INFEASIBLE
    return COMPLETE if trial.state == TrialState.COMPLETE else PRUNED


class TrialTable:
    """One study's trials as TPE sees them: each one's split category and, per
    (parameter, distribution) asked so far, a column of internal values by trial number
    (NaN where the trial does not have the parameter)."""

    def __init__(self) -> None:
        self._seen: dict[int, FrozenTrial] = {}  # number -> the trial object last seen
        self._kinds: dict[int, str | None] = {}
        self._columns: dict[tuple[str, BaseDistribution], _Column] = {}

    def groups(self, snapshot: list[FrozenTrial], *, skip: int,
               running: bool) -> dict[str, list[FrozenTrial]]:
        """The trials of ``snapshot`` by split category, in its order, without trial
        number ``skip`` (the one being asked) and, unless ``running``, without the
        running ones. Refreshes what changed since the last call."""
        changed = []
        seen, kinds = self._seen, self._kinds
        out: dict[str, list[FrozenTrial]] = {RUNNING: [], INFEASIBLE: [], COMPLETE: [],
                                             PRUNED: []}
        for t in snapshot:
            number = t.number
            if seen.get(number) is not t:
                seen[number] = t
                kinds[number] = _kind(t)
                changed.append(t)
            kind = kinds[number]
            if kind is None or number == skip or (kind == RUNNING and not running):
                continue
            out[kind].append(t)
        for column in self._columns.values():
            column.update(changed, kinds)
        return out

    def values(self, name: str, dist: BaseDistribution, numbers: np.ndarray) -> np.ndarray:
        """The internal values of parameter ``name`` for the trials ``numbers`` that have
        it, in that order: what Optuna's ``_get_internal_repr`` returns for them."""
        column = self._columns.get((name, dist))
        if column is None:
            column = self._columns[(name, dist)] = _Column(name, dist)
            column.update(list(self._seen.values()), self._kinds)
        return column.read(numbers)


class _Column:
    """One parameter's internal values by trial number."""

    def __init__(self, name: str, dist: BaseDistribution):
        self.name, self.dist = name, dist
        self.data = np.full(0, np.nan)
        self.dtype: Any = None  # Optuna's array dtype (int for categorical indices)

    def update(self, trials: list[FrozenTrial], kinds: dict[int, str | None]) -> None:
        if not trials:
            return
        top = max(t.number for t in trials) + 1
        if top > self.data.size:
            grown = np.full(max(top, 2 * self.data.size), np.nan)
            grown[:self.data.size] = self.data
            self.data = grown
        for t in trials:
            params = t.params
            if self.name in params and kinds[t.number] is not None:
                value = self.dist.to_internal_repr(params[self.name])
                if self.dtype is None:
                    self.dtype = np.asarray([value]).dtype
                self.data[t.number] = value
            else:
                self.data[t.number] = np.nan

    def read(self, numbers: np.ndarray) -> np.ndarray:
        picked = self.data[numbers]
        picked = picked[~np.isnan(picked)]
        return picked.astype(self.dtype) if self.dtype is not None else picked
