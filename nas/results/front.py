"""The Pareto front of a search: feasible non-dominated trials and their hypervolume.

Which trials, which baselines, what dominates, ties, and the best: the one rule of
:mod:`nas.run.dominance` (``nas status`` and the searcher's live front use it too). In
short: the search's own trials that completed at full fidelity with every constraint
met (duplicates counted once, at the trial that evaluated the architecture; trials
stopped early by ASHA never enter) and the feasible baselines, evaluated in the search
(``--with-baselines``) or, failing that, measured by ``nas rank`` (the mean over its
seeds; ``source`` says which), form one front. A found trial that a feasible baseline
dominates is NOT on it; it is listed in ``dominated_by_baseline`` with the baselines that
beat it, and the knee and the export picks never return it. A baseline that nothing
dominates is on the front as a baseline (shown, never exported). Equal values: all kept.

Hypervolume: of the found trials alone (what the search reached; the baselines do not
add to it), and ``hypervolume_with_baselines`` of found trials and baselines together.

Reference point (:func:`reference_point`), per objective, chosen so that it does not move
when more trials arrive wherever the study gives a natural bound:

- a minimised objective the study constrains (``constraints: {latency_ms: 10}``): the
  limit itself (no feasible trial can be worse);
- accuracy (maximised): 0, the worst accuracy there is;
- anything else: the worst feasible value plus 10% of the feasible range (10% of the
  value itself if all are equal, 1 if that is 0), so that the worst point still adds
  volume.

The hypervolume is computed in minimisation space (maximised objectives negated) and is
exact (:mod:`nas.results.hypervolume`); its unit is the product of the objectives' units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..run.dominance import RULE, rank_baselines, read_rank
from .hypervolume import hypervolume
from .knee import knee_index
from .rank import NOISY_SPREAD, latency_spread
from .records import ObjectiveRef, RunResults, TrialRecord

#: margin added beyond the worst feasible value, as a fraction of the feasible range.
REFERENCE_MARGIN = 0.1


@dataclass
class ParetoResult:
    """What ``nas pareto`` shows; ``to_dict()`` is its ``--json``."""

    objectives: list[ObjectiveRef]
    reference: list[float]
    reference_rules: list[str]
    hypervolume: float  # of the found trials alone
    front: list[TrialRecord]  # found trials no found trial and no baseline dominates
    knee: TrialRecord | None
    feasible: list[TrialRecord]  # every feasible found trial (front included)
    infeasible: list[TrialRecord]  # broke a constraint / ran out of memory (found ones)
    baselines: list[TrialRecord]  # evaluated in the search, else measured by nas rank
    baseline_dominated_by: dict[str, list[int]] = field(default_factory=dict)
    #: feasible found trial number -> names of the baselines that dominate it
    dominated_by_baseline: dict[int, list[str]] = field(default_factory=dict)
    baseline_front: list[str] = field(default_factory=list)  # baselines on the front
    hypervolume_with_baselines: float = 0.0
    #: found trials only a baseline keeps off the front (on the found trials' own front)
    displaced: list[int] = field(default_factory=list)

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def values(self, t: TrialRecord) -> dict[str, float | None]:
        return {m: t.value(m) for m in self.metrics}

    def to_dict(self) -> dict[str, Any]:
        front = [{"trial": t.number, "values": self.values(t), "hash": t.hash,
                  "blocks": t.block_mix(), **latency_quality(t)} for t in self.front]
        baselines = []
        for b in self.baselines:
            baselines.append({
                "name": b.name, "trial": b.number, "status": b.status,
                "source": baseline_source(b),
                "feasible": b.constraints_met, "values": self.values(b), "hash": b.hash,
                "blocks": b.block_mix(), "violations": b.violations,
                "dominated_by": self.baseline_dominated_by.get(b.name, []),
                "on_front": b.name in self.baseline_front})
        return {
            "objectives": [{"metric": o.metric, "direction": o.direction}
                           for o in self.objectives],
            "reference_point": dict(zip(self.metrics, self.reference, strict=True)),
            "reference_rule": dict(zip(self.metrics, self.reference_rules, strict=True)),
            "hypervolume": self.hypervolume,
            "hypervolume_with_baselines": self.hypervolume_with_baselines,
            "dominance_rule": RULE,
            "front": front,
            "knee": self.knee.number if self.knee is not None else None,
            "dominated_by_baseline": [
                {"trial": n, "values": self.values(t), "baselines": self.dominated_by_baseline[n],
                 "would_be_on_front": n in self.displaced}
                for t in self.feasible if (n := t.number) in self.dominated_by_baseline],
            "baselines": baselines,
            "infeasible": [{"trial": t.number, "status": t.status, "values": self.values(t),
                            "violations": t.violations} for t in self.infeasible],
            "counts": {"feasible": len(self.feasible), "infeasible": len(self.infeasible),
                       "front": len(self.front),
                       "dominated_by_baseline": len(self.dominated_by_baseline)},
        }


def latency_quality(t: TrialRecord) -> dict[str, Any]:
    """The spread of a trial's latency measurement, ``(p90 - p10) / median`` of its
    repeats, and whether it is too noisy to rank by (above NOISY_SPREAD); {} if no
    latency was measured."""
    spread = latency_spread(t.metrics)
    if spread is None:
        return {}
    return {"latency_spread": spread, "latency_noisy": spread > NOISY_SPREAD}


def baseline_source(b: TrialRecord) -> str:
    """Where a baseline's numbers come from: the search, or ``nas rank``'s seed means."""
    return str(b.user_attrs.get("source", "search"))


def baseline_verdict(b: dict) -> str:
    """One baseline's standing (``nas pareto`` and ``nas report`` say it alike)."""
    if not b["feasible"]:
        broke = ", ".join(f"{m} over by {v:.4g}" for m, v in b.get("violations", {}).items()
                          if isinstance(v, (int, float)) and v > 0)
        return f"{b['status']}: breaks a constraint{' (' + broke + ')' if broke else ''}"
    if b["dominated_by"]:
        return "dominated by trial " + ", ".join(map(str, b["dominated_by"]))
    if b["on_front"]:
        return "on the front"
    if any(v is None for v in b["values"].values()):
        return "not measured on every objective"
    return "dominated by another baseline"


def measured_baselines(results: RunResults) -> list[TrialRecord]:
    """The study's baselines as measured: in the search if it evaluated them (the same
    single run as every found trial), else by ``nas rank`` (RUN_DIR/rank.json: the mean
    over its seeds of the runs that finished)."""
    out = list(results.baselines())
    for b in rank_baselines(read_rank(results.run.path), skip={b.name for b in out}):
        out.append(TrialRecord(
            number=None, state="COMPLETE", category="complete" if b["ok"] else "infeasible",
            kind="baseline", name=b["name"], status=b["status"], hash=b["hash"],
            spec=None, metrics=b["metrics"], values={}, violations={},
            user_attrs={"source": f"nas rank (mean of {b['seeds_ok']} of "
                                  f"{b['runs']} seeds)"},
            constraints_met=b["ok"]))
    return out


def reference_point(objectives: list[ObjectiveRef], feasible: list[list[float]],
                    constraints: dict[str, float]) -> tuple[list[float], list[str]]:
    """The reference point in the objectives' own units, and the rule used for each."""
    ref, rules = [], []
    for k, o in enumerate(objectives):
        maximise = o.direction == "maximize"
        if not maximise and o.metric in constraints:
            ref.append(float(constraints[o.metric]))
            rules.append(f"the study's constraint {o.metric} <= {constraints[o.metric]:g}")
            continue
        if maximise and o.metric == "accuracy":
            ref.append(0.0)
            rules.append("0 (the worst accuracy)")
            continue
        vals = [p[k] for p in feasible]
        if not vals:
            ref.append(0.0)
            rules.append("0 (no feasible trial yet)")
            continue
        worst = min(vals) if maximise else max(vals)
        span = max(vals) - min(vals)
        if span == 0:
            span = abs(worst) if worst != 0 else 1.0 / REFERENCE_MARGIN
        margin = REFERENCE_MARGIN * span
        ref.append(worst - margin if maximise else worst + margin)
        rules.append(f"worst feasible value {'-' if maximise else '+'} "
                     f"{REFERENCE_MARGIN:.0%} of the feasible range")
    return ref, rules


def pareto(results: RunResults, objectives: list[str] | None = None) -> ParetoResult:
    """The feasible front of a run over ``objectives`` (default: the study's), found
    trials and baselines under one dominance rule (module docstring)."""
    objs = results.objective_refs(objectives)
    rf = results.front(objs)
    by_number = {t.number: t for t in results.trials}
    feasible = [by_number[n] for n in rf.found]
    infeasible = [t for t in results.trials
                  if t.kind != "baseline" and t.category == "infeasible"]
    ref, rules = reference_point(objs, [list(rf.values[n]) for n in rf.found],
                                 results.study.constraints)
    ref_min = rf.to_min(ref)
    front = [by_number[n] for n in rf.front]
    return ParetoResult(
        objectives=objs, reference=ref, reference_rules=rules,
        hypervolume=hypervolume([rf.mins(n) for n in rf.found], ref_min),
        front=front, knee=front[knee_index([rf.mins(n) for n in rf.front])] if front else None,
        feasible=feasible, infeasible=infeasible, baselines=measured_baselines(results),
        baseline_dominated_by=rf.baseline_beaten_by, dominated_by_baseline=rf.beaten,
        baseline_front=rf.baseline_front, displaced=rf.displaced,
        hypervolume_with_baselines=hypervolume(
            [rf.mins(k) for k in [*rf.front, *rf.baseline_front]], ref_min))
