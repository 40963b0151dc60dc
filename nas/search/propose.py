"""Where candidates come from: the study's sampler, fixed specs (baselines, retries) and
the uniform random draw that breaks a sampler's streak of duplicates.

A proposal is an Optuna trial asked from the run's study; its candidate is
``space.sample(trial)`` (the sampler's choice), or the spec an enqueued trial carries
(a baseline, or a retry of an interrupted baseline). Ray-free.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import optuna
from optuna.samplers._tpe.sampler import (
    _split_trials,
    default_gamma,
    default_gamma_multiobjective,
)
from optuna.trial import TrialState

from ..study import Study


def make_sampler(name: str, seed: int, options: dict[str, Any] | None = None):
    """The Optuna sampler a study names (nsga2, tpe, random, gp)."""
    options = dict(options or {})
    samplers = optuna.samplers
    if name == "nsga2":
        return samplers.NSGAIISampler(seed=seed, **options)
    if name == "tpe":
        return _SnapshotTPE(seed=seed, **options)
    if name == "random":
        return samplers.RandomSampler(seed=seed, **options)
    if name == "gp":
        return samplers.GPSampler(seed=seed, **options)
    raise ValueError(f"unknown sampler {name!r}")


class _SnapshotTPE(optuna.samplers.TPESampler):
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
    ``_sample`` is therefore Optuna 5.0's own, with the split memoized while the asked
    trial and the very trial objects read are unchanged (a tell re-reads the trials, so a
    stale split cannot be reused). Optuna computes the split inline in ``_sample``, with
    no hook to cache it, hence the copy of its ~15 lines rather than a patch of Optuna's
    module; tests/nas/search/test_sampler_snapshot.py checks the proposals stay
    Optuna's, constrained multi-objective included, and fails if a new Optuna diverges."""

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
        """TPESampler._sample's split of the trials into below and above, memoized."""
        states = [TrialState.COMPLETE, TrialState.PRUNED]
        if self._constant_liar:
            states.append(TrialState.RUNNING)
        trials = [t for t in study._get_trials(deepcopy=False, states=states)
                  if not (self._constant_liar and t.number == trial.number)]
        memo = self._split_memo
        if (memo is not None and memo[:2] == (study._study_id, trial.number)
                and len(memo[2]) == len(trials) and all(map(operator.is_, memo[2], trials))):
            return memo[3]
        if self._gamma is None:
            self._gamma = (default_gamma if len(study.directions) <= 1
                           else default_gamma_multiobjective)
        n = sum(t.state != TrialState.RUNNING for t in trials)  # Ignore running trials.
        split = _split_trials(study, trials, self._gamma(n))
        self._split_memo = (study._study_id, trial.number, trials, split)
        return split


class _Snapshot:
    """The study, its trials read through the per-ask cache (see _SnapshotTPE)."""

    def __init__(self, study: optuna.Study):
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Any = None,
                    use_cache: bool = False) -> list:
        return self._study._get_trials(deepcopy, states, use_cache=True)


def random_draw_seed(seed: int, told: int, draws: int) -> int:
    """A 32-bit seed for the fallback's random draw, distinct per (search seed, trials
    told, draws so far). Hashed with NumPy's SeedSequence rather than mixed by
    arithmetic: every valid search seed (0 .. 2**32 - 1) gives a valid sampler seed."""
    return int(np.random.SeedSequence([seed, told, draws]).generate_state(1)[0])


def enqueue_random(ostudy: optuna.Study, study: Study, seed: int) -> None:
    """Queue one candidate drawn uniformly from the space (``seed`` from
    :func:`random_draw_seed`, so a resumed search draws the same); the next ask takes it."""
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    draw = scratch.ask()
    study.space.sample(draw)
    ostudy.enqueue_trial(draw.params, user_attrs={"proposed_by": "random"})


def candidate(trial: optuna.trial.Trial, study: Study):
    """(spec, kind, problem) of an asked trial: what it proposes, or why it cannot be
    built (one bad candidate must not end a search: it is told FAIL with the reason)."""
    from search_space import ModelSpec

    attrs = trial.user_attrs
    kind = attrs.get("kind", "search")
    try:
        if kind == "baseline":
            if attrs.get("baseline_error"):
                return None, kind, attrs["baseline_error"]
            return ModelSpec.from_dict(attrs["spec"]), kind, None
        return study.space.sample(trial), kind, None
    except Exception as err:  # noqa: BLE001 - recorded on the trial
        return None, kind, f"cannot build the candidate: {type(err).__name__}: {err}"


def enqueue_baselines(ostudy: optuna.Study, study: Study) -> list[str]:
    """Enqueue the study's baselines as fixed specs (user_attrs kind=baseline), adapted
    to the study's data (``ModelSpec.with_data``). A baseline that cannot run at that
    input is still enqueued and told FAIL with the reason, so the user sees it."""
    from search_space import load_spec

    names = []
    for ref in study.baselines:
        attrs: dict[str, Any] = {"kind": "baseline", "baseline": ref}
        try:
            spec = load_spec(ref).with_data(channels=study.input_channels,
                                            size=tuple(study.input_size),
                                            classes=study.classes)
            attrs["spec"] = spec.to_dict()
        except Exception as err:  # noqa: BLE001 - recorded on the trial, not fatal
            attrs["baseline_error"] = (f"baseline {ref} cannot run on the study's data "
                                       f"({study.input_channels}x{study.input_size[0]}x"
                                       f"{study.input_size[1]}, {study.classes} classes): "
                                       f"{err}")
        ostudy.enqueue_trial({}, user_attrs=attrs)
        names.append(ref)
    return names
