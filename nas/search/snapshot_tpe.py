"""The study's TPE: Optuna's TPESampler, made to read and split the study's trials once
per ask (a driver feeding many workers asks thousands of times; see the class)."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.samplers._tpe.sampler import (
    _split_trials,
    default_gamma,
    default_gamma_multiobjective,
)
from optuna.trial import TrialState


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
    snapshot, so a stale split cannot be reused). Each trial's value of a parameter is
    also kept from one ask to the next (``_get_internal_repr``). Optuna computes the
    split inline in ``_sample``, with no hook to cache it, hence the copy of its ~15
    lines rather than a patch of Optuna's module; tests/nas/search/test_snapshot_tpe.py
    checks the proposals stay Optuna's, constrained multi-objective and the driver's
    storage included, and fails if a new Optuna diverges."""

    _split_memo: tuple | None = None  # (study id, asked trial number, trials, split)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return super().sample_independent(_Snapshot(study), trial, param_name,
                                          param_distribution)

    def _sample(self, study, trial, search_space):
        if not isinstance(study, _Snapshot):  # the multivariate path: Optuna's as it is
            return super()._sample(study, trial, search_space)
        below, above = self._split(study, trial)
        mpe_below = self._build_parzen_estimator(study, search_space, below, handle_below=True)
        mpe_above = self._build_parzen_estimator(study, search_space, above,
                                                 handle_below=False)
        samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acq_func_vals = self._compute_acquisition_func(samples_below, mpe_below, mpe_above)
        ret = optuna.samplers.TPESampler._compare(samples_below, acq_func_vals)
        for param_name, dist in search_space.items():
            ret[param_name] = dist.to_external_repr(ret[param_name])
        return ret

    def _split(self, study, trial) -> tuple[list, list]:
        """TPESampler._sample's split of the trials into below and above, memoized: the
        per-ask snapshot (one list object, replaced by the next ask or tell) and the
        asked trial identify it."""
        snapshot = study._get_trials(deepcopy=False, states=None)
        memo = self._split_memo
        if (memo is not None and memo[:2] == (study._study_id, trial.number)
                and memo[2] is snapshot):
            return memo[3]
        states = [TrialState.COMPLETE, TrialState.PRUNED]
        if self._constant_liar:
            states.append(TrialState.RUNNING)
        trials = [t for t in snapshot if t.state in states
                  and not (self._constant_liar and t.number == trial.number)]
        if self._gamma is None:
            self._gamma = (default_gamma if len(study.directions) <= 1
                           else default_gamma_multiobjective)
        n = sum(t.state != TrialState.RUNNING for t in trials)  # Ignore running trials.
        split = _split_trials(study, trials, self._gamma(n))
        self._split_memo = (study._study_id, trial.number, snapshot, split)
        return split

    def _get_internal_repr(self, trials, search_space, study):
        """Optuna's, with each trial's value of the parameter kept from one ask to the
        next (they are the same trial objects until the trial changes; a changed trial
        is a new object, so it is converted again). Optuna converts every trial's value
        again for every parameter of every ask: 57% of an ask at 4,400 trials."""
        if len(search_space) != 1 or self._is_multivariate(study):
            return super()._get_internal_repr(trials, search_space, study)
        ((name, dist),) = search_space.items()
        if "_reprs" not in self.__dict__:  # (study id, param) -> {number: (trial, value)}
            self._reprs: dict[tuple, dict] = {}
        known = self._reprs.setdefault((study._study_id, name), {})
        values = []
        for trial in trials:
            hit = known.get(trial.number)
            if hit is None or hit[0] is not trial:
                params = trial.params
                hit = known[trial.number] = (
                    trial, dist.to_internal_repr(params[name]) if name in params else _ABSENT)
            if hit[1] is not _ABSENT:
                values.append(hit[1])
        return {name: np.asarray(values)}


#: a trial without the parameter (a branch of the space it did not take)
_ABSENT = object()


class _Snapshot:
    """The study, its trials read through the per-ask cache (see SnapshotTPE)."""

    def __init__(self, study: optuna.Study):
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Any = None,
                    use_cache: bool = False) -> list:
        return self._study._get_trials(deepcopy, states, use_cache=True)
