"""A finished (or running) search read back from its run directory, without Ray.

:func:`open_run` gives a :class:`RunResults`: the resolved study, the Optuna study and
one :class:`TrialRecord` per trial with what the searcher stored in its user attributes
(see :mod:`nas.run.states`: kind, spec, hash, status, metrics, violations, provenance,
protocol). The results commands (pareto, rank, export, report) all start here.

Objective values: a study objective's value is the one Optuna was told (``trial.values``);
any other metric (``--objectives params,...``) comes from ``user_attrs["metrics"]``.
A value that was never measured (a placeholder, non-finite, absent) is ``None``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..run.dominance import (
    RunFront,
    is_feasible,
    measured,
    read_rank,
    run_front,
    run_points,
    told_values,
)
from ..run.rundir import RunDir
from ..run.states import category
from ..study import METRICS, Study, load_study

#: direction of a metric that is not one of the study's objectives.
DEFAULT_DIRECTIONS = {"accuracy": "maximize", "latency_ms": "minimize",
                      "memory_mb": "minimize", "params": "minimize", "macs": "minimize"}


@dataclass(frozen=True)
class ObjectiveRef:
    metric: str
    direction: str


@dataclass
class TrialRecord:
    """One Optuna trial as the results commands see it."""

    number: int
    state: str  # Optuna state name
    category: str  # nas.run.states.category: complete, infeasible, stopped, failed, ...
    kind: str  # search | baseline
    name: str  # "trial N" or the baseline's reference
    status: str
    hash: str | None
    spec: dict[str, Any] | None
    metrics: dict[str, Any]
    values: dict[str, float]  # the study objectives Optuna was told (placeholders dropped)
    violations: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    #: COMPLETE with every constraint met (a duplicate of a feasible trial counts too).
    constraints_met: bool = False
    #: the Optuna FrozenTrial it was read from (None for a baseline measured by nas rank);
    #: the front is computed from these (nas.run.dominance), as ``nas status`` does
    frozen: Any = None

    @property
    def feasible(self) -> bool:
        """Complete at full fidelity with every constraint met, not a duplicate (the
        duplicate's architecture is counted once, at the trial that evaluated it)."""
        return self.category == "complete"

    def value(self, metric: str) -> float | None:
        """The measured value of ``metric`` (None if it never was)."""
        return measured(self.values, self.metrics, metric)

    def block_mix(self) -> str:
        """"basic x2, aa x1": the block types of the spec and how many of each."""
        if not self.spec:
            return ""
        mix = Counter(b.get("type", "?") for s in self.spec.get("stages", [])
                      for b in s.get("blocks", []))
        return ", ".join(f"{t} x{n}" for t, n in mix.items())


@dataclass
class RunResults:
    run: RunDir
    study: Study
    optuna_name: str
    trials: list[TrialRecord]

    def objective_refs(self, names: list[str] | None = None) -> list[ObjectiveRef]:
        """The study's objectives, or the named metrics (direction: the study's where
        it optimises that metric, else the metric's natural one). UserError for an
        unknown metric."""
        study_dirs = {o.metric: o.direction for o in self.study.objectives}
        if not names:
            return [ObjectiveRef(o.metric, o.direction) for o in self.study.objectives]
        out = []
        for name in names:
            if name not in METRICS:
                raise UserError(f"--objectives: unknown objective {name!r}; allowed: "
                                f"{', '.join(METRICS)}")
            if name in (o.metric for o in out):
                raise UserError(f"--objectives: {name!r} is given twice")
            out.append(ObjectiveRef(name, study_dirs.get(name, DEFAULT_DIRECTIONS[name])))
        return out

    def trial(self, number: int) -> TrialRecord:
        for t in self.trials:
            if t.number == number:
                return t
        raise UserError(f"trial {number} is not in {self.run.path} (trials 0.."
                        f"{len(self.trials) - 1})")

    def found(self) -> list[TrialRecord]:
        """Feasible full-fidelity trials of the search itself (not baselines)."""
        return [t for t in self.trials if t.feasible and t.kind != "baseline"]

    def baselines(self) -> list[TrialRecord]:
        """The baseline trials that were evaluated (latest attempt per baseline)."""
        latest: dict[str, TrialRecord] = {}
        for t in self.trials:
            if t.kind == "baseline" and t.status != "interrupted":
                latest[t.name] = t
        return list(latest.values())

    def front(self, objectives: list[ObjectiveRef] | None = None) -> RunFront:
        """The run's front over ``objectives`` (default: the study's) by
        :mod:`nas.run.dominance`: the rule and the points ``nas status`` uses, read from
        the Optuna trials and RUN_DIR/rank.json."""
        objs = objectives or self.objective_refs()
        metrics = [o.metric for o in objs]
        points = run_points([t.frozen for t in self.trials if t.frozen is not None],
                            [o.metric for o in self.study.objectives], metrics,
                            read_rank(self.run.path))
        return run_front(points, metrics, [o.direction for o in objs])

    def summary(self) -> dict[str, Any]:
        from ..run.summary import summarize

        return summarize(self.run).to_dict()


def open_run(path: str | Path) -> RunResults:
    """Read a run directory (UserError if it is not one)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = RunDir.open(path)
    study = load_study(run.study_dict())
    name = run.meta()["optuna_study"]
    try:
        ostudy = optuna.load_study(study_name=name, storage=run.reader_storage())
    except (KeyError, LookupError):  # no study yet / no storage file yet
        raise UserError(f"{run.path}: the Optuna study {name!r} has no trials yet; run "
                        "`nas search` first") from None
    metrics = [o.metric for o in study.objectives]
    records = [_record(t, metrics) for t in ostudy.get_trials(deepcopy=False)]
    return RunResults(run=run, study=study, optuna_name=name, trials=records)


def _record(t: Any, objective_metrics: list[str]) -> TrialRecord:
    attrs = dict(t.user_attrs)
    kind = attrs.get("kind", "search")
    return TrialRecord(
        number=t.number, state=t.state.name, category=category(t), kind=kind,
        name=str(attrs.get("baseline")) if kind == "baseline" else f"trial {t.number}",
        status=str(attrs.get("status", t.state.name.lower())), hash=attrs.get("hash"),
        spec=attrs.get("spec"), metrics=dict(attrs.get("metrics") or {}),
        values=told_values(t, objective_metrics),
        violations=dict(attrs.get("violations") or {}),
        provenance=dict(attrs.get("provenance") or {}),
        protocol=dict(attrs.get("protocol") or {}), user_attrs=attrs,
        constraints_met=is_feasible(t), frozen=t)
