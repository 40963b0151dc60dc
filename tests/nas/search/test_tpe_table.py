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


def test_groups_follow_optunas_categories_and_skip_duplicates_and_the_asked_trial():
    trials = [_trial(0, TrialState.COMPLETE, width=8, violation=-1.0),
              _trial(1, TrialState.COMPLETE, width=16, violation=2.0),   # infeasible
              _trial(2, TrialState.PRUNED, width=32),
              _trial(3, TrialState.RUNNING, width=8),
              _trial(4, TrialState.FAIL, width=8),                       # never modelled
              _trial(5, TrialState.COMPLETE, width=8, duplicate=True),   # a repeat
              _trial(6, TrialState.RUNNING)]                             # being asked
    groups = TrialTable().groups(trials, skip=6, running=True)
    assert {k: [t.number for t in v] for k, v in groups.items()} == {
        RUNNING: [3], INFEASIBLE: [1], COMPLETE: [0], PRUNED: [2]}
    assert TrialTable().groups(trials, skip=-1, running=False)[RUNNING] == []


def test_a_changed_trial_is_categorised_and_valued_again():
    table = TrialTable()
    running = _trial(0, TrialState.RUNNING, width=8)
    table.groups([running], skip=-1, running=True)
    assert list(table.values("width", WIDTH, np.array([0]))) == [0]
    told = _trial(0, TrialState.COMPLETE, width=8, violation=0.5)  # the storage's new object
    assert [t.number for t in table.groups([told], skip=-1, running=True)[INFEASIBLE]] == [0]
    duplicate = _trial(0, TrialState.COMPLETE, width=8, duplicate=True)
    table.groups([duplicate], skip=-1, running=True)
    assert table.values("width", WIDTH, np.array([0])).size == 0


def test_values_are_optunas_internal_representation_in_the_groups_order():
    trials = [_trial(i, TrialState.COMPLETE, width=[8, None, 32, 16][i % 4], lr=10 ** -(i % 3))
              for i in range(12)]
    table = TrialTable()
    table.groups(trials, skip=-1, running=True)
    order = [7, 2, 11, 0, 5]
    sampler = optuna.samplers.TPESampler()
    for name, dist in (("width", WIDTH), ("lr", LR)):
        expected = sampler._get_internal_repr([trials[i] for i in order], {name: dist}, None)
        got = table.values(name, dist, np.array(order))
        assert got.dtype == expected[name].dtype
        np.testing.assert_array_equal(got, expected[name])
