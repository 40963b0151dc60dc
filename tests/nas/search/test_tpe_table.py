"""The study's TPE keeps each trial's split category and parameter values between asks
(nas.search.tpe_table.TrialTable): they must be what Optuna derives from the trials, and
follow a trial that changed (a new trial object)."""

from __future__ import annotations

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from nas.search.tpe_table import COMPLETE, INFEASIBLE, PRUNED, RUNNING, TrialTable

WIDTH = CategoricalDistribution([8, 16, 32])
LR = FloatDistribution(1e-3, 1.0, log=True)


def _trial(number: int, state: TrialState, *, width=None, lr=0.01, violation=None,
           duplicate=False):
    params, dists = {"lr": lr}, {"lr": LR}
    if width is not None:
        params["width"], dists["width"] = width, WIDTH
    system_attrs = {} if violation is None else {"constraints": [violation]}
    t = create_trial(state=state, params=params, distributions=dists,
                     values=[0.5, 1.0] if state == TrialState.COMPLETE else None,
                     user_attrs={"duplicate_of": 0} if duplicate else {},
                     system_attrs=system_attrs)
    t.number = number
    return t


def _groups(table: TrialTable, skip: int) -> dict[int, list[int]]:
    return {k: list(table.numbers(k, skip)) for k in (RUNNING, INFEASIBLE, COMPLETE, PRUNED)}


def test_categories_follow_optunas_and_skip_duplicates_and_the_asked_trial():
    trials = [_trial(0, TrialState.COMPLETE, width=8, violation=-1.0),
              _trial(1, TrialState.COMPLETE, width=16, violation=2.0),   # infeasible
              _trial(2, TrialState.PRUNED, width=32),
              _trial(3, TrialState.RUNNING, width=8),
              _trial(4, TrialState.FAIL, width=8),                       # never modelled
              _trial(5, TrialState.COMPLETE, width=8, duplicate=True),   # a repeat
              _trial(6, TrialState.RUNNING)]                             # being asked
    table = TrialTable(2)
    table.refresh(trials)
    assert _groups(table, skip=6) == {RUNNING: [3], INFEASIBLE: [1], COMPLETE: [0],
                                      PRUNED: [2]}
    assert list(table.values[0]) == [0.5, 1.0] and table.score[1] == 2.0


def test_an_unfinished_trial_is_looked_at_again_a_finished_one_never():
    """The storages hand out a new trial object when a trial changes; only a trial that
    was waiting or running can change (Optuna refuses to update a finished one)."""
    table = TrialTable(2)
    running = _trial(0, TrialState.RUNNING, width=8)
    table.refresh([running])
    assert list(table.values_of("width", WIDTH, np.array([0]))) == [0]
    told = _trial(0, TrialState.COMPLETE, width=16, violation=0.5)  # the storage's new object
    table.refresh([told])
    assert _groups(table, skip=-1)[INFEASIBLE] == [0]
    assert list(table.values_of("width", WIDTH, np.array([0]))) == [1]
    table.refresh([_trial(0, TrialState.COMPLETE, width=8, duplicate=True)])
    assert _groups(table, skip=-1)[INFEASIBLE] == [0]  # finished: not read again


def test_trials_not_in_number_order_are_all_looked_at():
    trials = [_trial(i, TrialState.COMPLETE, width=8) for i in range(4)]
    table = TrialTable(2)
    table.refresh([trials[2], trials[0], trials[3], trials[1]])
    assert _groups(table, skip=-1)[COMPLETE] == [0, 1, 2, 3]


def test_the_arrays_grow_with_the_trials_not_faster():
    """Trials arrive one ask at a time: the arrays double when full, no more."""
    table = TrialTable(2)
    trials = []
    for i in range(3000):
        trials.append(_trial(i, TrialState.COMPLETE, width=8))
        table.refresh(trials)
    assert 3000 <= table.kind.size < 6000 and table.values.shape == (table.kind.size, 2)
    assert len(table.numbers(COMPLETE, skip=-1)) == 3000


def test_values_are_optunas_internal_representation_in_the_given_order():
    trials = [_trial(i, TrialState.COMPLETE, width=[8, None, 32, 16][i % 4], lr=10 ** -(i % 3))
              for i in range(12)]
    table = TrialTable(2)
    table.refresh(trials)
    order = [7, 2, 11, 0, 5]
    sampler = optuna.samplers.TPESampler()
    for name, dist in (("width", WIDTH), ("lr", LR)):
        expected = sampler._get_internal_repr([trials[i] for i in order], {name: dist}, None)
        got = table.values_of(name, dist, np.array(order))
        assert got.dtype == expected[name].dtype
        np.testing.assert_array_equal(got, expected[name])
