"""Where a search stands, read back from its run directory alone (no Ray, no driver):
trial counts, budget spent and left, best trial, front size, the driver's state.
``nas status`` prints it; ``run_search`` returns it at the end of a session."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..budget import Budget
from ..study import Study, load_study
from .dominance import RunFront, read_rank, run_front, run_points
from .ledger import Ledger
from .rundir import RunDir
from .states import counts
from .storage import NoStorage


@dataclass
class SearchSummary:
    """Where a search stands (after run_search, or read back by ``nas status``)."""

    run_dir: str
    study: str
    optuna_study: str
    storage: str
    counts: dict[str, int]
    budget: dict[str, Any]
    best: dict[str, Any] | None
    front_size: int
    sessions: int
    ledger_entries: int
    stop_reason: str | None = None
    interrupted_recovered: int = 0
    driver: dict[str, Any] = field(default_factory=dict)
    front: list[int] = field(default_factory=list)  # found trials on it, the best first
    #: found trial number -> the baselines that dominate it (kept off the front)
    dominated_by_baseline: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



def summarize(run: RunDir | str | Path) -> SearchSummary:
    """Read a run directory back (no Ray): trial counts, budget, best, front."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not isinstance(run, RunDir):
        run = RunDir.open(run)
    meta = run.meta()
    study = run_study(run)
    try:
        ostudy = optuna.load_study(study_name=meta["optuna_study"],
                                   storage=run.reader_storage())
        trials = ostudy.get_trials(deepcopy=False)
    except (KeyError, NoStorage):  # nothing told yet / the driver has not created it
        trials = []
    ledger = Ledger(run.ledger_path)
    budget = study.budget
    spent = run_spent(run, budget, ledger, trials)
    front, best = front_and_best(run, study, trials)
    c = counts(trials)
    c["interrupted"] = sum(1 for t in trials if t.user_attrs.get("status") == "interrupted")
    c["baseline"] = sum(1 for t in trials if t.user_attrs.get("kind") == "baseline")
    driver = run.driver_state(meta, running=c["running"])
    if driver["state"] != "running" and c["running"]:
        # Nobody runs them any more: the next resume fails and re-runs them.
        driver["interrupted"] = c["running"]
        c["failed"] += c["running"]
        c["interrupted"] += c["running"]
        c["running"] = 0
    return SearchSummary(
        run_dir=str(run.path), study=study.name, optuna_study=meta["optuna_study"],
        storage=_hide_password(run.storage_url()), counts=c,
        budget={**budget.to_dict(spent), "device_s": ledger.spent_device_s()},
        best=best, front_size=len(front.front), sessions=len(meta.get("sessions", [])),
        ledger_entries=len(ledger), driver=driver, front=front.front,
        dominated_by_baseline={str(n): b for n, b in front.beaten.items()})


def front_and_best(run: RunDir, study: Study,
                   trials: list[Any]) -> tuple[RunFront, dict[str, Any] | None]:
    """The run's front over the study's objectives (:mod:`nas.run.dominance`: found trials
    and baselines, those ``nas rank`` measured included) and its best trial."""
    metrics = [o.metric for o in study.objectives]
    front = run_front(run_points(trials, metrics, metrics, read_rank(run.path)), metrics,
                      [o.direction for o in study.objectives])
    if front.best is None:
        return front, None
    values = dict(zip(metrics, front.values[front.best], strict=True))
    return front, {"number": front.best, "metric": metrics[0],
                   "value": values[metrics[0]], "values": values}


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - display only
        return url


def run_study(run: RunDir) -> Study:
    """The run's saved study with the budget in effect (run.json's: a resume with
    ``--budget`` changed it); the one way a run's study and budget are read back."""
    study = load_study(run.study_dict())
    saved = run.meta().get("budget")
    return study if saved is None else study.with_budget(saved)


def run_spent(run: RunDir, budget: Budget, ledger: Ledger | None = None,
              trials: list[Any] | None = None) -> float:
    """What the run has spent of ``budget`` in its base units (:meth:`Budget.spent`);
    reads the run's storage (without writing) when ``trials`` are not given."""
    import optuna

    if trials is None:
        try:
            trials = optuna.load_study(
                study_name=run.meta()["optuna_study"],
                storage=run.reader_storage()).get_trials(deepcopy=False)
        except (KeyError, NoStorage):  # no trial told yet
            trials = []
    ledger = ledger if ledger is not None else Ledger(run.ledger_path)
    told = sum(1 for t in trials if t.state.is_finished()
               and t.user_attrs.get("status") != "interrupted")
    return budget.spent(device_s=ledger.spent_device_s(), wall_s=run.wall_spent(), told=told)
