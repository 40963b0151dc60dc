"""Running and reading the searches that benchmarks/search_efficiency.py compares: one
search per (strategy, seed), through the real framework or in-process, its ledger read
back as events, and the finished runs' events kept in a JSON file (``--cache``)."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DONE = "bench_done.json"
REPO = Path(__file__).resolve().parents[1]
#: a strategy key beside the study fields: start the search as ``--with-baselines`` does.
WITH_BASELINES = "with_baselines"


@dataclass(frozen=True)
class Event:
    """One ledger entry of a run: its device-time cost, and the objective values of the
    trial it finished when that trial is complete, feasible and not a duplicate."""

    cost_s: float
    point: tuple[float, ...] | None = None
    trial: int | None = None


# --------------------------------------------------------------------------- reading a run
def run_events(path: Path, metrics: Sequence[str]) -> tuple[list[Event], dict[str, Any]]:
    """The events of a finished run directory (ledger order) and its trial counts."""
    import optuna

    from nas.run.ledger import Ledger
    from nas.run.rundir import RunDir
    from nas.run.states import counts, is_feasible

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = RunDir.open(path)
    ostudy = optuna.load_study(study_name=run.meta()["optuna_study"],
                               storage=run.storage_url())
    trials = {t.number: t for t in ostudy.get_trials(deepcopy=False)}
    entries = Ledger(run.ledger_path).entries
    last_entry = {e.trial: i for i, e in enumerate(entries)}
    events = []
    for i, e in enumerate(entries):
        t = trials.get(e.trial)
        point = None
        if (last_entry[e.trial] == i and t is not None and is_feasible(t)
                and t.user_attrs.get("duplicate_of") is None):
            m = t.user_attrs.get("metrics", {})
            values = [m.get(name) for name in metrics]
            if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                point = tuple(float(v) for v in values)
        events.append(Event(cost_s=e.device_s, point=point, trial=e.trial))
    info = counts(trials.values())
    info["ledger_entries"] = len(entries)
    info["statuses"] = _tally(t.user_attrs.get("status", "?") for t in trials.values())
    return events, info


def _tally(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


# --------------------------------------------------------------------------- running
def run_real(study_dict: dict[str, Any], path: Path, budget: str, seed: int,
             with_baselines: bool = False) -> None:
    """One search through the real framework (Ray Tune + the search core + the ledger)."""
    from nas.search.driver import run_search

    run_search(study_dict, run_dir=path, budget=budget, seed=seed, progress=False,
               with_baselines=with_baselines)


def run_fast(study_dict: dict[str, Any], path: Path, budget: str, seed: int,
             clock: str = "cpu", with_baselines: bool = False) -> None:
    """One search in-process: the search core and ASHA's rule driven by the in-process
    executor (nas.search.local), no Ray; each trial charged its process CPU time
    (``clock="cpu"``) or its wall time. ``with_baselines``: as ``nas search
    --with-baselines`` (the study's baselines first, on the budget; those that are points
    of the space told to the sampler with their parameters)."""
    import optuna

    from nas.budget import parse_budget
    from nas.evaluate.data import cached_data
    from nas.run.ledger import Ledger
    from nas.run.rundir import RunDir
    from nas.search.asha import AshaRule
    from nas.search.core import SearchCore
    from nas.search.driver import open_run_study
    from nas.search.local import run_in_process, training_trial
    from nas.study import load_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(study_dict)
    bud = parse_budget(budget)
    run = RunDir.create(path, study.to_dict(), optuna_study=study.name, storage=None,
                        seed=seed, budget=bud.text)
    run.acquire()
    core = None
    try:
        session = run.start_session()
        ostudy = open_run_study(run, study, seed + session, with_baselines)
        core = SearchCore(study, ostudy, run=run, ledger=Ledger(run.ledger_path),
                          budget=bud, seed=seed, session=session, devices=1.0)
        timer = time.process_time if clock == "cpu" else time.perf_counter
        run_in_process(core, training_trial(study, cached_data(study.data), clock=timer),
                       asha=AshaRule.for_study(study, run))
    finally:
        if core is not None:
            core.close_session()
            run.tick(0, core.session_start)
        run.release()


class RunCache:
    """What each finished run contributes to the analysis (its ledger's events and trial
    counts), kept in a JSON file (``--cache``) so that a comparison longer than one
    sitting resumes anywhere: the run directories themselves stay under --workdir."""

    def __init__(self, path: Path | None):
        self.path = path
        self.runs: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        return (json.loads(self.path.read_text())
                if self.path is not None and self.path.exists() else {})

    @staticmethod
    def key(tag: str, name: str, seed: int, study_dict: dict[str, Any]) -> str:
        text = json.dumps([tag, name, seed, study_dict], sort_keys=True)
        # The study's baseline paths are absolute: keyed relative to the checkout, so that
        # a clone elsewhere finds the runs banked in the repository.
        text = text.replace(str(REPO), "<repo>")
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def get(self, key: str) -> dict[str, Any] | None:
        return self.runs.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Add ``record``: merged into the file as it is NOW, under a lock, so that two
        invocations sharing one cache (other seeds, on the other core) lose nothing."""
        if self.path is None:
            return
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.runs = {**self._read(), key: record}
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.runs))
            tmp.replace(self.path)


def finished_run(path: Path, sd: dict[str, Any], mode: str, budget: str, seed: int,
                 args: argparse.Namespace, study: Any) -> dict[str, Any]:
    """The record of the run at ``path``: run now unless a finished one of the same study
    is there (``--fresh`` redoes it)."""
    done = path / DONE
    if done.exists() and not args.fresh:
        recorded = json.loads(done.read_text())
        if recorded.get("study") != sd:
            raise SystemExit(f"{path} holds a run of another study version; pass --fresh")
    else:
        if path.exists():
            import shutil

            shutil.rmtree(path)
        t0 = time.perf_counter()
        print(f"{sd['name']} {path.name}: running ({mode})...", flush=True)
        # Not a study field: how the search is started (the strategy's, see --strategy).
        study_dict = {k: v for k, v in sd.items() if k != WITH_BASELINES}
        warm = bool(sd.get(WITH_BASELINES, False))
        if args.fast:
            run_fast(study_dict, path, budget, seed, clock=args.clock, with_baselines=warm)
        else:
            run_real(study_dict, path, budget, seed, with_baselines=warm)
        done.write_text(json.dumps({"study": sd, "wall_s": time.perf_counter() - t0,
                                    "load_average_end": list(os.getloadavg())}))
    events, info = run_events(path, [o.metric for o in study.objectives])
    recorded = json.loads(done.read_text())
    return {"events": [[e.cost_s, None if e.point is None else list(e.point), e.trial]
                       for e in events],
            "counts": info, "wall_s": recorded.get("wall_s"),
            "load_average_end": recorded.get("load_average_end")}
