"""What the study's TPE (:mod:`nas.search.snapshot_tpe`) needs to know of each trial,
kept from one ask to the next as arrays indexed by trial number, updated only for the
trials that can have changed.

Optuna's TPE re-derives everything from the trial objects at every ask: each trial's
category (re-parsing its constraints from the system attrs), its objective values for
the split, and its value of each parameter once per parameter: Python loops over all
trials, which made an ask grow from 65 ms to 330 ms over 10,000 surrogate trials
(benchmarks/driver_scale.py). A finished trial never changes (Optuna's storages refuse
to update one), so only the trials that were still waiting or running at the last ask,
and the new ones, are looked at again, by identity (the storages hand out a new trial
object when a trial changes); everything else the split and the Parzen estimators read
is a NumPy column indexed by trial number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers._tpe.sampler import _get_infeasible_trial_score
from optuna.trial import FrozenTrial, TrialState

#: how a trial enters TPE's split; NONE: not at all (a duplicate, a failed trial)
NONE, RUNNING, INFEASIBLE, COMPLETE, PRUNED = 0, 1, 2, 3, 4


def _kind(trial: FrozenTrial) -> int:
    """Optuna's ``_split_trials`` categories, in its order (a RUNNING trial has no
    constraints yet); NONE for a trial the search core told as a duplicate (see
    SnapshotTPE: a repeat of a cached result is no observation) and for other states."""
    if "duplicate_of" in trial.user_attrs:
        return NONE
    if trial.state == TrialState.RUNNING:
        return RUNNING
    if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
        return NONE
    if _get_infeasible_trial_score(trial) > 0:
        return INFEASIBLE
    return COMPLETE if trial.state == TrialState.COMPLETE else PRUNED


class TrialTable:
    """One study's trials as TPE sees them, by trial number: each one's split category,
    objective values (complete trials), infeasibility score (infeasible ones) and, per
    (parameter, distribution) asked so far, its internal value (NaN where absent)."""

    def __init__(self, n_objectives: int) -> None:
        self.objects: list[FrozenTrial | None] = []  # the trial object last seen
        self.kind = np.zeros(0, dtype=np.int8)
        self.values = np.zeros((0, n_objectives))
        self.score = np.zeros(0)
        self._unsettled: set[int] = set()  # numbers whose trial may still change
        #: how many times a trial became complete: the split of the complete trials is
        #: kept while neither this nor the size of the good group changes (see tpe_split)
        self.complete_version = 0
        self.complete_split: tuple | None = None
        self._columns: dict[tuple[str, BaseDistribution], _Column] = {}

    def refresh(self, snapshot: list[FrozenTrial]) -> None:
        """Take in the trials of ``snapshot`` (the study's, in number order) that are new
        or were unfinished at the last call and have changed since."""
        seen = len(self.objects)
        check = sorted(i for i in self._unsettled if i < len(snapshot))
        check += range(seen, len(snapshot))
        changed = []
        for i in check:
            t = snapshot[i]
            if t.number != i:  # not one study's trials in number order: look at all
                return self._refresh_all(snapshot)
            if i >= seen or self.objects[i] is not t:
                changed.append(t)
        self._take(changed)

    def _refresh_all(self, snapshot: list[FrozenTrial]) -> None:
        self._take([t for t in snapshot if t.number >= len(self.objects)
                    or self.objects[t.number] is not t])

    def _take(self, changed: list[FrozenTrial]) -> None:
        if not changed:
            return
        self._grow(max(t.number for t in changed) + 1)
        for t in changed:
            n = t.number
            self.objects[n] = t
            self.kind[n] = kind = _kind(t)
            if kind == COMPLETE:
                self.values[n] = t.values
                self.complete_version += 1
            elif kind == INFEASIBLE:
                self.score[n] = _get_infeasible_trial_score(t)
            if t.state.is_finished():
                self._unsettled.discard(n)
            else:
                self._unsettled.add(n)
        for column in self._columns.values():
            column.update(changed, self.kind)

    def _grow(self, size: int) -> None:
        if size <= len(self.objects):
            return
        self.objects.extend([None] * (size - len(self.objects)))
        if size > self.kind.size:  # doubled: appending trials one by one stays linear
            cap = max(size, 2 * self.kind.size)
            self.kind = np.concatenate([self.kind, np.zeros(cap - self.kind.size, np.int8)])
            self.values = np.concatenate(
                [self.values, np.zeros((cap - len(self.values), self.values.shape[1]))])
            self.score = np.concatenate([self.score, np.zeros(cap - self.score.size)])

    def numbers(self, kind: int, skip: int) -> np.ndarray:
        """The numbers of the trials of one category, ascending, without ``skip``."""
        found = np.flatnonzero(self.kind[:len(self.objects)] == kind)
        return found[found != skip]

    def values_of(self, name: str, dist: BaseDistribution, numbers: np.ndarray) -> np.ndarray:
        """The internal values of parameter ``name`` for the trials ``numbers`` that have
        it, in that order: what Optuna's ``_get_internal_repr`` returns for them."""
        column = self._columns.get((name, dist))
        if column is None:  # a parameter asked for the first time: every trial's value
            column = self._columns[(name, dist)] = _Column(name, dist)
            column.update([t for t in self.objects if t is not None], self.kind)
        return column.read(numbers)


class _Column:
    """One parameter's internal values by trial number."""

    def __init__(self, name: str, dist: BaseDistribution):
        self.name, self.dist = name, dist
        self.data = np.full(0, np.nan)
        self.dtype: Any = None  # Optuna's array dtype (int for categorical indices)

    def update(self, trials: list[FrozenTrial], kinds: np.ndarray) -> None:
        if not trials:
            return
        top = max(t.number for t in trials) + 1
        if top > self.data.size:
            grown = np.full(max(top, 2 * self.data.size), np.nan)
            grown[:self.data.size] = self.data
            self.data = grown
        for t in trials:
            params = t.params
            if self.name in params and kinds[t.number] != NONE:
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
