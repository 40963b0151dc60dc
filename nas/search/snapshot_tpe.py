"""The study's TPE: Optuna's TPESampler, made to read and split the study's trials once
per ask (a driver feeding many workers asks thousands of times; see the class)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
from optuna.samplers._tpe.probability_distributions import (
    _BatchedCategoricalDistributions,
    _MixtureOfProductDistribution,
)
from optuna.samplers._tpe.sampler import default_gamma, default_gamma_multiobjective

from .tpe_split import split
from .tpe_table import TrialTable


class SnapshotTPE(optuna.samplers.TPESampler):
    """Optuna's TPE reading the study's trials, and splitting them into good and bad ones,
    once per ask instead of once per parameter.

    With its constant liar (Optuna's default since 5.0: running trials count as bad ones,
    so parallel workers are not all sent to one spot) TPE skips the study's per-ask trial
    cache and reads every trial again for each parameter; on an RDB storage that re-reads
    every RUNNING trial from the database, ~25 times per candidate: 0.5 s per ask with 8
    workers on SQLite, growing with the workers (benchmarks/driver_scale.py). Within one
    ask nothing else changes the study (the driver is its only writer and tells between
    asks), so the per-ask snapshot holds the same trials; the trial being asked, which
    the liar must not count, is filtered out by number as before.

    For the same reason the below/above split of those trials is the same for every
    parameter of one ask, yet Optuna recomputes it per parameter: with constraints that
    re-parses every trial's system attrs (``FrozenTrial.constraints``) and re-ranks the
    objectives, 2/3 of an ask's time at 1,500 trials (README, "Driver at cluster scale").
    ``_sample`` is therefore Optuna 5.0's own, with the split memoized for the asked trial
    and the per-ask snapshot it was computed from (the next ask or tell replaces the
    snapshot, so a stale split cannot be reused). Optuna computes the split inline in
    ``_sample`` and ``_split_trials``, with no hook to cache it, hence a copy of their
    ~40 lines rather than a patch of Optuna's module.

    What stays linear in the trials is done in NumPy, not per trial in Python, and only
    for what changed: each trial's category, objective values and parameter values are
    kept from one ask to the next in a :class:`~nas.search.tpe_table.TrialTable`
    (looked at again only while the trial is unfinished); the split runs on its arrays
    (:mod:`nas.search.tpe_split`); the densities of a categorical parameter (every
    parameter of the packaged studies) are pooled per category
    (:func:`pooled_categorical`), one kernel per choice instead of one per trial; the
    finished trials TPE counts before each ask are filtered once, not at every ask
    (:class:`_Filtered`). An ask went from 0.92 s (Optuna's) to 0.077 s with the table
    (4,004 distinct trials), then to 0.016 s at 10,000 distinct trials against Optuna's
    1.82 s (benchmarks/tpe_ask.py, tpe_ask_10k_pooled.json; README, "Driver at cluster
    scale"). tests/nas/search/test_snapshot_tpe.py checks the proposals stay Optuna's
    (one and several objectives, constraints, pruned and running trials, the driver's
    storage) and fails if a new Optuna diverges.

    One departure from Optuna, on purpose: a trial the driver told as a DUPLICATE (an
    architecture already evaluated, told at once with its twin's values, marked
    ``user_attrs["duplicate_of"]``) is not an observation here. It repeats a deterministic
    cached result, so it carries no evidence; counted, every repeat adds weight to what
    TPE already likes, which makes it propose that again (multi-objective TPE told 75%
    duplicates over 10,000 surrogate trials), and it makes every ask linear in the
    repeats as well as in the architectures. A study without duplicates gets exactly
    Optuna's proposals; with them, the proposals of the same study without them. All
    of this is the independent sampling every packaged study uses; with ``multivariate``
    in the study's sampler options, Optuna's own path runs, duplicates counted."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._tables: dict[int, TrialTable] = {}  # study id -> its trials as TPE sees them
        self._by_states: dict = {}  # per-ask filtered trial lists (see _Snapshot)
        self._split_memo: _Split | None = None

    def sample_independent(self, study, trial, param_name, param_distribution):
        return super().sample_independent(_Snapshot(study, self._by_states), trial,
                                          param_name, param_distribution)

    def _sample(self, study, trial, search_space):
        if not isinstance(study, _Snapshot):  # the multivariate path: Optuna's as it is
            return super()._sample(study, trial, search_space)
        memo = self._split(study, trial)
        ((name, dist),) = search_space.items()  # independent sampling: one parameter
        below = memo.table.values_of(name, dist, memo.below)
        above = memo.table.values_of(name, dist, memo.above)
        params = self._parzen_estimator_parameters
        below_weights = np.ones(len(below)) if study._is_multi_objective() else None
        mpe_below = self._parzen_estimator_cls({name: below}, search_space, params,
                                               below_weights)
        samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        if (isinstance(dist, CategoricalDistribution)
                and self._parzen_estimator_cls is _ParzenEstimator):
            # the densities of both groups, pooled per category (the samples were drawn
            # from Optuna's own "below" kernels above, so the random draws stay Optuna's)
            density_below = pooled_categorical(name, dist, below, params, below_weights)
            mpe_above = pooled_categorical(name, dist, above, params)
        else:
            density_below = mpe_below
            mpe_above = self._parzen_estimator_cls({name: above}, search_space, params)
        acq_func_vals = self._compute_acquisition_func(samples_below, density_below,
                                                       mpe_above)
        ret = optuna.samplers.TPESampler._compare(samples_below, acq_func_vals)
        for param_name, d in search_space.items():
            ret[param_name] = d.to_external_repr(ret[param_name])
        return ret

    def _split(self, study, trial) -> _Split:
        """TPESampler._sample's split of the trials into below and above
        (:mod:`nas.search.tpe_split`), memoized: the per-ask snapshot (one list object,
        replaced by the next ask or tell) and the asked trial identify it."""
        snapshot = study._get_trials(deepcopy=False, states=None)
        memo = self._split_memo
        if (memo is not None and (memo.study_id, memo.number) == (study._study_id, trial.number)
                and memo.snapshot is snapshot):
            return memo
        table = self._tables.get(study._study_id)
        if table is None:
            table = self._tables[study._study_id] = TrialTable(len(study.directions))
        table.refresh(snapshot)
        if self._gamma is None:
            self._gamma = (default_gamma if len(study.directions) <= 1
                           else default_gamma_multiobjective)
        below, above = split(table, study, self._gamma,
                             skip=trial.number if self._constant_liar else -1,
                             running=self._constant_liar)
        self._split_memo = _Split(study._study_id, trial.number, snapshot, table, below, above)
        return self._split_memo


def pooled_categorical(name: str, dist: CategoricalDistribution, observations: np.ndarray,
                       params: Any, weights: np.ndarray | None = None) -> _ParzenEstimator:
    """Optuna's Parzen estimator of one categorical parameter over ``observations``
    (``weights``: its predetermined weights, else its weights function's), with the
    kernels of equal observations pooled into one: the same density (a kernel's shape
    depends only on the category observed and the number of kernels, so the mixture is
    a sum over categories), evaluated over at most one kernel per choice instead of one
    per trial. For evaluating densities only: sampling from it would draw other random
    numbers than Optuna's. Unpooled, evaluating the densities was 50 ms of a 105 ms ask
    at 5,400 trials (cProfile), growing with the trials (multi-objective TPE keeps a tenth
    of them as good ones, so "below" grows too)."""
    n = len(observations)
    if n == 0:
        return _ParzenEstimator({name: observations}, {name: dist}, params)
    if weights is None:
        weights = _ParzenEstimator._call_weights_func(params.weights, n)
    weights = np.append(weights, [params.prior_weight])
    weights /= weights.sum()
    n_choices = len(dist.choices)
    pooled = np.bincount(observations.astype(int), weights=weights[:-1], minlength=n_choices)
    kernels = np.full((n_choices + 1, n_choices), params.prior_weight / (n + 1))
    kernels[np.arange(n_choices), np.arange(n_choices)] += 1  # the last row: the prior
    row_sums = kernels.sum(axis=1, keepdims=True)
    kernels /= np.where(row_sums == 0, 1, row_sums)
    seen = np.append(pooled > 0, True)
    estimator = _ParzenEstimator.__new__(_ParzenEstimator)
    estimator._search_space = {name: dist}
    estimator._mixture_distribution = _MixtureOfProductDistribution(
        weights=np.append(pooled, weights[-1])[seen],
        distributions=[_BatchedCategoricalDistributions(kernels[seen])])
    return estimator


@dataclass
class _Split:
    """One ask's split (trial numbers, ascending), and what identifies the ask."""

    study_id: int
    number: int  # the asked trial
    snapshot: list  # the per-ask trial list it was computed from
    table: TrialTable
    below: np.ndarray
    above: np.ndarray


class _Snapshot:
    """The study, its trials read through the per-ask cache (see SnapshotTPE). The trials
    of some states (TPE asks for its finished ones once per parameter, to count them) are
    filtered once per snapshot, and only past the trials that were already finished at
    the last ask (a finished trial never changes): ``by_states`` maps the states to
    their :class:`_Filtered`."""

    def __init__(self, study: optuna.Study, by_states: dict):
        self._study = study
        self._by_states = by_states

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Any = None,
                    use_cache: bool = False) -> list:
        if deepcopy or states is None:
            return self._study._get_trials(deepcopy, states, use_cache=True)
        snapshot = self._study._get_trials(False, None, use_cache=True)
        key = (self._study._study_id, tuple(states))
        filtered = self._by_states.get(key)
        if filtered is None:
            filtered = self._by_states[key] = _Filtered(frozenset(states))
        return filtered.of(snapshot)


class _Filtered:
    """One set of states' trials of the latest snapshot. ``settled`` trials (numbers
    0..settled-1) were all finished, and ``kept`` holds those of them in the states."""

    def __init__(self, states: frozenset):
        self.states = states
        self.snapshot: list | None = None
        self.trials: list = []
        self.settled = 0
        self.kept: list = []

    def of(self, snapshot: list) -> list:
        if snapshot is self.snapshot:
            return self.trials
        k = self.settled
        if k > len(snapshot) or (k and snapshot[k - 1].number != k - 1):
            k, self.kept = 0, []  # not the trials seen before, in number order: start over
        while k < len(snapshot) and snapshot[k].state.is_finished():
            if snapshot[k].number != k:
                k, self.kept = 0, []
                break
            if snapshot[k].state in self.states:
                self.kept.append(snapshot[k])
            k += 1
        self.settled = k
        self.snapshot = snapshot
        self.trials = self.kept + [t for t in snapshot[k:] if t.state in self.states]
        return self.trials
