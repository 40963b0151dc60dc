"""A handful of candidates drawn from a study's space, with their analytic cost.

The dry-run plan (:mod:`nas.search.plan`) and the GPU-fraction choice
(:mod:`nas.evaluate.cluster`) both
need to know what a typical and a large candidate of a space cost before any trial runs.
They draw a few specs with Optuna's RandomSampler (seeded, in memory: nothing is written
to the run's storage) and price each with the cost model
(:func:`search_space.cost.estimate`, on the meta device: no compute, no memory), at the
study's training batch size and optimizer, exactly as the pre-training checks do.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..study import Study

MIB = 2**20


@dataclass(frozen=True)
class Candidate:
    """One sampled spec and its analytic numbers (per image unless said otherwise)."""

    spec: Any  # search_space.ModelSpec
    params: int
    macs: int  # multiply-adds of one forward pass of one image
    train_memory_mb: float  # estimated peak training memory at the training batch size
    violations: dict[str, float]  # analytic constraints it breaks (amount over the limit)

    @property
    def feasible(self) -> bool:
        """Passes the analytic checks (params, macs, estimated memory)."""
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.spec.name, "params": self.params, "macs": self.macs,
                "train_memory_mb": round(self.train_memory_mb, 1),
                "violations": dict(self.violations)}


def draw_specs(study: Study, seed: int = 0, max_draws: int | None = None) -> Iterator[Any]:
    """Distinct specs drawn at random from ``study.space``, each network (hash) once, in
    the order drawn; stops after ``max_draws`` draws (duplicates count: a small space runs
    out of new networks) or never. THE way a random sample of a space is drawn (the plan,
    the GPU-fraction choice, the benchmarks).

    Uses a throw-away in-memory Optuna study with a seeded RandomSampler, so the names
    and choices are exactly those the search's sampler sees and nothing is written to a
    run's storage.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ostudy = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    space = study.space
    seen: set[str] = set()
    draws = 0
    while max_draws is None or draws < max_draws:
        draws += 1
        spec = space.sample(ostudy.ask())
        h = spec.hash()
        if h not in seen:
            seen.add(h)
            yield spec


def sample_specs(study: Study, n: int, seed: int = 0) -> list[Any]:
    """``n`` distinct specs of :func:`draw_specs` (fewer when 4n draws do not find them)."""
    return list(itertools.islice(draw_specs(study, seed, max_draws=4 * n), n))


def price(study: Study, spec: Any) -> Candidate:
    """The analytic numbers of one spec, as the pre-training checks compute them."""
    from .checks import analytic, violations

    numbers = analytic(spec, study)
    over = violations({"params": numbers["params"], "macs": numbers["macs"],
                       "memory_mb": numbers["memory_est_mb"]}, study.constraints)
    return Candidate(spec=spec, params=int(numbers["params"]), macs=int(numbers["macs"]),
                     train_memory_mb=float(numbers["memory_est_mb"]), violations=over)


def sample_candidates(study: Study, n: int = 12, seed: int = 0) -> list[Candidate]:
    """``n`` random candidates of the study's space, priced."""
    return [price(study, spec) for spec in sample_specs(study, n, seed)]


def median_candidate(candidates: list[Candidate]) -> Candidate:
    """The candidate with the median MACs (ties: the first), the space's typical one."""
    ranked = sorted(candidates, key=lambda c: c.macs)
    return ranked[(len(ranked) - 1) // 2]


def spread(values: list[float]) -> dict[str, float]:
    """min / median / max of a non-empty list."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = (ordered[mid] if len(ordered) % 2
              else (ordered[mid - 1] + ordered[mid]) / 2)
    return {"min": ordered[0], "median": median, "max": ordered[-1]}


def fmt_count(value: float) -> str:
    """12345678 -> '12.3M' (for plan text)."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}" if not math.isclose(value, round(value)) else str(int(value))
