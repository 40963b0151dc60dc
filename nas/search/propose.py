"""Where candidates come from: the study's sampler, fixed specs (baselines, retries), the
neighbour of an architecture the sampler proposed again, and the uniform random draw
that breaks a sampler's streak of duplicates.

A proposal is an Optuna trial asked from the run's study; its candidate is
``space.sample(trial)`` (the sampler's choice, or the fixed params the core gives the
same trial in place of a duplicate), or the spec an enqueued trial carries (a baseline,
or a retry of an interrupted baseline). Ray-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna

from ..study import Study
from .snapshot_tpe import SnapshotTPE


def make_sampler(name: str, seed: int, options: dict[str, Any] | None = None):
    """The Optuna sampler a study names (nsga2, tpe, random, gp)."""
    options = dict(options or {})
    samplers = optuna.samplers
    if name == "nsga2":
        return samplers.NSGAIISampler(seed=seed, **options)
    if name == "tpe":
        return SnapshotTPE(seed=seed, **options)
    if name == "random":
        return samplers.RandomSampler(seed=seed, **options)
    if name == "gp":
        return samplers.GPSampler(seed=seed, **options)
    raise ValueError(f"unknown sampler {name!r}")


def random_draw_seed(seed: int, told: int, draws: int) -> int:
    """A 32-bit seed for the fallback's random draw, distinct per (search seed, trials
    told, draws so far). Hashed with NumPy's SeedSequence rather than mixed by
    arithmetic: every valid search seed (0 .. 2**32 - 1) gives a valid sampler seed."""
    return int(np.random.SeedSequence([seed, told, draws]).generate_state(1)[0])


#: A model-based sampler (TPE above all) can collapse onto the architectures it already
#: likes and propose them again and again; those proposals cost no training, but each
#: is a full ask, and without a way out the search would stop as "space exhausted" in a
#: space of millions. So a duplicate is replaced by its neighbour, and every
#: RANDOM_AFTER_DUPLICATES-th duplicate in a row by a candidate drawn uniformly at random.
RANDOM_AFTER_DUPLICATES = 10


def after_duplicate(study: Study, params: dict[str, Any], streak: int, seed: int,
                    twin: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, user attrs) of what replaces the ``streak``-th proposal in a row of an
    architecture already evaluated (by trial ``twin``; ``params``: the proposal's): a
    uniform draw every RANDOM_AFTER_DUPLICATES-th time, else the proposal's neighbour.
    ``seed`` from :func:`random_draw_seed`, so a resumed search draws the same."""
    if streak % RANDOM_AFTER_DUPLICATES == 0:
        return uniform_params(study, seed), {"proposed_by": "random"}
    return neighbour(study, params, seed, twin)


def neighbour(study: Study, params: dict[str, Any], seed: int,
              of: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, user attrs) of a neighbour of the architecture trial ``of`` evaluated,
    proposed again: ``params`` with ONE of them redrawn uniformly (the one chosen by
    ``seed``, among those a uniform draw sets to another value). The draw also brings
    whatever parameters the new value makes active (a deeper stage's blocks, a block
    type's knobs). Where the sampler wanted this architecture, its neighbour is the next
    best guess, and it costs no sampler call: a model-based sampler that collapses
    (multi-objective TPE proposed 70% duplicates over 1,000 trials on the digits space)
    pays a full ask per duplicate otherwise."""
    draw = uniform_params(study, seed)
    differing = sorted(k for k in params if k in draw and draw[k] != params[k])
    if not differing:  # the draw is this architecture: take it whole
        return draw, {"proposed_by": "random"}
    redrawn = differing[np.random.default_rng(seed).integers(len(differing))]
    return ({**draw, **{k: v for k, v in params.items() if k != redrawn}},
            {"proposed_by": "neighbour", "neighbour_of": of, "redrawn": redrawn})


def uniform_params(study: Study, seed: int) -> dict[str, Any]:
    """The params of one candidate drawn uniformly from the space: the draw of Optuna's
    RandomSampler(seed) (tests/nas/search/test_propose_seeds.py), without a scratch
    Optuna study per draw."""
    draw = _Draw(np.random.RandomState(seed))
    study.space.sample(draw)
    return draw.params


def spec_of_params(study: Study, params: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    """(spec, the params it used) of the architecture ``params`` choose, built without an
    Optuna trial (None when they miss a choice the architecture needs: only a trial's
    sampler can fill that in). The core checks a duplicate's replacement this way before
    giving it to the trial: a repeat then costs a spec build and a hash, not a storage
    round trip and a re-sampled trial (several per ask late in a long search)."""
    draw = _Draw(params=params)
    try:
        return study.space.sample(draw), draw.params
    except _MissingChoice:
        return None


class _MissingChoice(LookupError):
    """A choice the given params do not make (absent, or not offered there)."""


class _Draw:
    """What ``space.sample`` asks of a trial: each choice taken from ``params``, or, with
    ``rng``, drawn uniformly among those offered as Optuna's RandomSampler draws it (one
    uniform number per choice, the largest wins; a single choice draws nothing)."""

    def __init__(self, rng: np.random.RandomState | None = None,
                 params: dict[str, Any] | None = None):
        self._rng, self._given = rng, params
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, offered: list[Any]) -> Any:
        if self._given is not None:
            if name not in self._given or self._given[name] not in offered:
                raise _MissingChoice(name)
            value = self._given[name]
        elif len(offered) == 1:
            value = offered[0]
        else:
            value = offered[int(np.argmax(self._rng.uniform(0.0, 1.0, len(offered))))]
        self.params[name] = value
        return value


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
            if attrs.get("in_space"):  # its params recorded: the sampler learns from it
                study.space.sample(trial)
            return ModelSpec.from_dict(attrs["spec"]), kind, None
        return study.space.sample(trial), kind, None
    except Exception as err:  # noqa: BLE001 - recorded on the trial
        return None, kind, f"cannot build the candidate: {type(err).__name__}: {err}"


def first_evaluated(study: Study, with_baselines: bool,
                    meta: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """What a run enqueues before its sampler proposes: (the study's start points, the
    other baselines with ``with_baselines``), each group only if the run (``meta``: its
    run.json) has not enqueued it already."""
    meta = meta or {}
    start = list(study.sampler.start_from)
    first = [] if meta.get("start_points_enqueued") else start
    others = ([b for b in study.baselines if b not in start]
              if with_baselines and not meta.get("baselines_enqueued") else [])
    return first, others


def enqueue_baselines(ostudy: optuna.Study, study: Study,
                      refs: Sequence[str] | None = None) -> list[str]:
    """Enqueue the study's baselines (``refs``: these of them) as fixed specs (user_attrs
    kind=baseline), adapted to the study's data (:func:`nas.study.study.adapt_spec`). A
    baseline that cannot run at that input is still enqueued and told FAIL with the
    reason, so the user sees it. One that is a point of the study's space is enqueued with
    its params too (``in_space``), so its result is an observation the sampler learns
    from, as Optuna warm-starts a study with known configurations (:mod:`search_space.inverse`)."""
    from search_space.inverse import params_of

    from ..study.study import adapt_spec

    names = []
    for ref in study.baselines if refs is None else refs:
        attrs: dict[str, Any] = {"kind": "baseline", "baseline": ref}
        params: dict[str, Any] = {}
        try:
            spec = adapt_spec(ref, study)
            attrs["spec"] = spec.to_dict()
            params = params_of(study.space, spec) or {}
            if params:
                attrs["in_space"] = True
        except Exception as err:  # noqa: BLE001 - recorded on the trial, not fatal
            attrs["baseline_error"] = f"baseline {ref}: {err}"
        ostudy.enqueue_trial(params, user_attrs=attrs)
        names.append(ref)
    return names
