"""The study's TPE: Optuna's TPESampler, made to read and split the study's trials once
per ask (a driver feeding many workers asks thousands of times; see the class)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.samplers._tpe.sampler import (
    _split_complete_trials,
    _split_infeasible_trials,
    _split_pruned_trials,
    default_gamma,
    default_gamma_multiobjective,
)

from .tpe_table import COMPLETE, INFEASIBLE, PRUNED, RUNNING, TrialTable


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
    snapshot, so a stale split cannot be reused). What the split and the estimators need
    of each trial (its category, its value of each parameter) is kept from one ask to
    the next in a :class:`~nas.search.tpe_table.TrialTable`, updated for the trials that
    changed: an ask at 10,000 surrogate trials went from 0.92 s to 0.08 s
    (benchmarks/tpe_ask.py). Optuna computes the split inline in ``_sample`` and
    ``_split_trials``, with no hook to cache it, hence the copy of their ~30 lines
    rather than a patch of Optuna's module; tests/nas/search/test_snapshot_tpe.py
    checks the proposals stay Optuna's, constrained multi-objective and the driver's
    storage included, and fails if a new Optuna diverges.

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
        """TPESampler._sample's split of the trials into below and above (Optuna's
        ``_split_trials``, with each trial's category from the table), memoized: the
        per-ask snapshot (one list object, replaced by the next ask or tell) and the
        asked trial identify it."""
        snapshot = study._get_trials(deepcopy=False, states=None)
        memo = self._split_memo
        if (memo is not None and (memo.study_id, memo.number) == (study._study_id, trial.number)
                and memo.snapshot is snapshot):
            return memo.below, memo.above
        table = self._tables.setdefault(study._study_id, TrialTable())
        groups = table.groups(snapshot, skip=trial.number if self._constant_liar else -1,
                              running=self._constant_liar)
        if self._gamma is None:
            self._gamma = (default_gamma if len(study.directions) <= 1
                           else default_gamma_multiobjective)
        n_below = self._gamma(len(groups[COMPLETE]) + len(groups[PRUNED])
                              + len(groups[INFEASIBLE]))  # running trials do not count
        below_complete, above_complete = _split_complete_trials(groups[COMPLETE], study,
                                                                n_below)
        n_below = max(0, n_below - len(below_complete))
        below_pruned, above_pruned = _split_pruned_trials(groups[PRUNED], study, n_below)
        n_below = max(0, n_below - len(below_pruned))
        below_infeasible, above_infeasible = _split_infeasible_trials(groups[INFEASIBLE],
                                                                      n_below)
        below = sorted(below_complete + below_pruned + below_infeasible,
                       key=lambda t: t.number)
        above = sorted(above_complete + above_pruned + above_infeasible + groups[RUNNING],
                       key=lambda t: t.number)
        self._split_memo = _Split(study._study_id, trial.number, snapshot, table,
                                  below, above, _numbers(below), _numbers(above))
        return below, above

    def _get_internal_repr(self, trials, search_space, study):
        """Optuna's, read from the table's columns for the below and above groups of the
        current split (Optuna converts every trial's value again for every parameter of
        every ask: 57% of an ask at 4,400 trials)."""
        memo = self._split_memo
        if (len(search_space) != 1 or self._is_multivariate(study) or memo is None
                or not (trials is memo.below or trials is memo.above)):
            return super()._get_internal_repr(trials, search_space, study)
        ((name, dist),) = search_space.items()
        numbers = memo.below_numbers if trials is memo.below else memo.above_numbers
        return {name: memo.table.values(name, dist, numbers)}


@dataclass
class _Split:
    """One ask's split, and what identifies the ask (see SnapshotTPE._split)."""

    study_id: int
    number: int  # the asked trial
    snapshot: list  # the per-ask trial list it was computed from
    table: TrialTable
    below: list
    above: list
    below_numbers: np.ndarray
    above_numbers: np.ndarray


def _numbers(trials: list) -> np.ndarray:
    return np.fromiter((t.number for t in trials), dtype=np.int64, count=len(trials))


class _Snapshot:
    """The study, its trials read through the per-ask cache (see SnapshotTPE). The trials
    of some states (TPE asks for its finished ones once per parameter, to count them) are
    filtered once per snapshot: ``by_states`` maps the states to (snapshot, filtered)."""

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
        hit = self._by_states.get(key)
        if hit is None or hit[0] is not snapshot:
            hit = self._by_states[key] = (snapshot, [t for t in snapshot if t.state in states])
        return hit[1]
