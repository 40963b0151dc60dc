"""The Pareto front of a search: feasible non-dominated trials and their hypervolume.

Which trials: the search's own trials (not baselines) that completed at full fidelity
with every constraint met; duplicates are counted once, at the trial that evaluated the
architecture; trials stopped early by ASHA (low fidelity) never enter. The baselines are
reported beside the front: their values and which front points dominate them.

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

from .hypervolume import dominates, hypervolume, non_dominated, to_minimization
from .knee import knee_index
from .records import ObjectiveRef, RunResults, TrialRecord

#: margin added beyond the worst feasible value, as a fraction of the feasible range.
REFERENCE_MARGIN = 0.1


@dataclass
class ParetoResult:
    """What ``nas pareto`` shows; ``to_dict()`` is its ``--json``."""

    objectives: list[ObjectiveRef]
    reference: list[float]
    reference_rules: list[str]
    hypervolume: float
    front: list[TrialRecord]
    knee: TrialRecord | None
    feasible: list[TrialRecord]  # every feasible found trial (front included)
    infeasible: list[TrialRecord]  # broke a constraint / ran out of memory (found ones)
    baselines: list[TrialRecord]
    baseline_dominated_by: dict[int, list[int]] = field(default_factory=dict)

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
                  "blocks": t.block_mix()} for t in self.front]
        baselines = []
        for b in self.baselines:
            dom = self.baseline_dominated_by.get(b.number, [])
            baselines.append({
                "name": b.name, "trial": b.number, "status": b.status,
                "feasible": b.constraints_met, "values": self.values(b), "hash": b.hash,
                "blocks": b.block_mix(), "dominated_by": dom,
                "on_front": b.constraints_met and _has_all(b, self.metrics) and not dom})
        return {
            "objectives": [{"metric": o.metric, "direction": o.direction}
                           for o in self.objectives],
            "reference_point": dict(zip(self.metrics, self.reference, strict=True)),
            "reference_rule": dict(zip(self.metrics, self.reference_rules, strict=True)),
            "hypervolume": self.hypervolume,
            "front": front,
            "knee": self.knee.number if self.knee is not None else None,
            "baselines": baselines,
            "counts": {"feasible": len(self.feasible), "infeasible": len(self.infeasible),
                       "front": len(self.front)},
        }


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
    """The feasible front of a run over ``objectives`` (default: the study's)."""
    objs = results.objective_refs(objectives)
    metrics = [o.metric for o in objs]
    directions = [o.direction for o in objs]
    feasible = [t for t in results.found() if _has_all(t, metrics)]
    infeasible = [t for t in results.trials
                  if t.kind != "baseline" and t.category == "infeasible"]
    raw = [[t.value(m) for m in metrics] for t in feasible]
    ref, rules = reference_point(objs, raw, results.study.constraints)
    mins = [to_minimization(v, directions) for v in raw]
    front_idx = non_dominated(mins)
    ref_min = to_minimization(ref, directions)
    hv = hypervolume([mins[i] for i in front_idx], ref_min)
    primary = 0
    front_idx.sort(key=lambda i: (mins[i][primary], feasible[i].number))
    front = [feasible[i] for i in front_idx]
    knee = front[knee_index([mins[i] for i in front_idx])] if front else None
    baselines = results.baselines()
    dominated_by = {}
    for b in baselines:
        if not _has_all(b, metrics):
            continue
        bm = to_minimization([b.value(m) for m in metrics], directions)
        dominated_by[b.number] = [t.number for t, i in zip(front, front_idx, strict=True)
                                  if dominates(mins[i], bm)]
    return ParetoResult(objectives=objs, reference=ref, reference_rules=rules,
                        hypervolume=hv, front=front, knee=knee, feasible=feasible,
                        infeasible=infeasible, baselines=baselines,
                        baseline_dominated_by=dominated_by)


def _has_all(t: TrialRecord, metrics: list[str]) -> bool:
    return all(t.value(m) is not None for m in metrics)
