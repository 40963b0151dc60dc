"""The in-process executor drives the same search core as Ray: the same candidates in the
same order, the same ledger; a crashing trial never ends a search; the CLI runs and
resumes a search with ``--executor local`` (no Ray started)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from nas.budget import parse_budget
from nas.run.ledger import Ledger
from nas.run.rundir import RunDir
from nas.run.sole_writer import driver_storage
from nas.search.core import SearchCore
from nas.search.local import VirtualClock, run_in_process
from nas.search.propose import make_sampler
from nas.study import load_study

TINY = Path(__file__).parents[1] / "data" / "tiny_search.yaml"


def nas(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.cli", *argv], capture_output=True,
                          text=True, timeout=900)


def told(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    meta = json.loads((run_dir / "run.json").read_text())
    return optuna.load_study(study_name=meta["optuna_study"],
                             storage=f"sqlite:///{run_dir / 'optuna.db'}").trials


def check_ledger(run_dir: Path, trials) -> None:
    ledger = Ledger(run_dir / "ledger.jsonl")
    device = sum(t.user_attrs.get("device_s", 0.0) for t in trials
                 if t.user_attrs.get("status") != "interrupted")
    cut_off = sum(e.device_s for e in ledger.entries if e.status == "interrupted")
    assert ledger.spent_device_s() == pytest.approx(device + cut_off)
    assert len({(e.trial, e.attempt) for e in ledger.entries}) == len(ledger)


def test_same_candidates_and_verdicts_whichever_executor_and_resume_across(tmp_path):
    """One trial at a time, the same seed: Ray and the in-process executor ask the same
    sampler the same questions, so they evaluate the same architectures in the same order
    and reach the same verdicts; and a search started in-process resumes on Ray, one
    ledger across both."""
    pytest.importorskip("ray")
    runs = {}
    for executor in ("local", "ray"):
        out = tmp_path / executor
        proc = nas("search", str(TINY), "--executor", executor, "--concurrency", "1",
                   "--budget", "6trials", "-o", str(out), "--json")
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[executor] = told(out)
        check_ledger(out, runs[executor])
        ids = {e.executor_id for e in Ledger(out / "ledger.jsonl").entries}
        assert all(i.startswith("local-") == (executor == "local") for i in ids)
    local, ray = runs["local"], runs["ray"]
    assert [t.user_attrs.get("hash") for t in local] == [t.user_attrs.get("hash") for t in ray]
    assert [t.user_attrs["status"] for t in local] == [t.user_attrs["status"] for t in ray]
    assert len({t.user_attrs["status"] for t in local}) > 1  # ok and infeasible, at least
    for a, b in zip(local, ray, strict=True):
        if a.values is not None:
            assert a.values == pytest.approx(b.values, abs=1e-6)

    out = tmp_path / "local"
    assert not (out / "ray").exists() or not any((out / "ray").iterdir())  # no Ray ran
    again = nas("search", "--resume", str(out), "--budget", "9trials")
    assert again.returncode == 0, again.stderr[-3000:]
    trials = told(out)
    assert sum(1 for t in trials if t.state.is_finished()) == 9
    assert len(json.loads((out / "run.json").read_text())["sessions"]) == 2
    assert (out / "ray" / "session-1").is_dir()  # the resume ran on Ray
    for entry in Ledger(out / "ledger.jsonl").entries:  # whoever ran each attempt says so
        assert entry.executor_id.startswith("local-") == (entry.session == 0)
    check_ledger(out, trials)


def test_local_executor_with_a_ray_address_is_one_line(tmp_path):
    proc = nas("search", str(TINY), "--executor", "local", "--address", "auto",
               "-o", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--executor local" in proc.stderr
    assert not (tmp_path / "r").exists()


def _core(tmp_path, budget: str, clock=None) -> SearchCore:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(yaml.safe_load(TINY.read_text()))
    run = RunDir.create(tmp_path / "run", study.to_dict(), optuna_study=study.name,
                        storage=None, seed=0, budget=budget)
    ostudy = optuna.create_study(study_name=study.name,
                                 storage=driver_storage(run.storage_url()),
                                 sampler=make_sampler("random", 0),
                                 directions=[o.direction for o in study.objectives])
    kwargs = {"clock": clock} if clock is not None else {}
    return SearchCore(study, ostudy, run=run, ledger=Ledger(run.ledger_path),
                      budget=parse_budget(budget), seed=0, session=0, devices=1.0, **kwargs)


def _outcome(accuracy: float) -> str:
    return json.dumps({"status": "ok", "metrics": {"accuracy": accuracy, "params": 100},
                       "violations": {}, "epochs_done": 3, "history": []})


def test_a_crashing_trial_never_ends_the_search(tmp_path):
    core = _core(tmp_path, "5trials")
    seen = []

    def trial(config):
        seen.append(config["number"])
        if len(seen) == 2:
            raise RuntimeError("boom in the trial")
        yield {"epoch": 1, "accuracy": 0.5, "trial_wall_s": 1.0}
        yield {"final": True, "outcome": _outcome(0.5), "trial_wall_s": 2.0}

    run_in_process(core, trial)
    trials = core.optuna.get_trials(deepcopy=False)
    crashed = [t for t in trials if t.user_attrs.get("status") == "worker_error"]
    assert len(crashed) == 1 and "boom in the trial" in crashed[0].user_attrs["message"]
    assert core.history.told == 5 and core.stop_reason in ("budget", "space exhausted")


def test_virtual_clock_keeps_many_workers_busy_and_charges_exactly(tmp_path):
    """Simulated trials: N workers at once, each report at its trial's start plus its
    trial_wall_s; the ledger charges exactly the simulated durations."""
    clock = VirtualClock()
    core = _core(tmp_path, "12trials", clock=clock)
    durations = {}

    def trial(config):
        d = 10.0 + config["number"]
        durations[config["number"]] = d
        yield {"epoch": 1, "accuracy": 0.5, "trial_wall_s": d / 2}
        yield {"final": True, "outcome": _outcome(0.5), "trial_wall_s": d}

    peak = []
    run_in_process(core, trial, workers=4, clock=clock,
                   on_step=lambda: peak.append(len(core._live)))
    ledger = Ledger(core.run.ledger_path)
    charged = {e.trial: e.wall_s for e in ledger.entries}
    assert charged == pytest.approx({n: durations[n] for n in charged})
    assert max(peak) == 4  # four trials ran at once
    # the clock ended near the makespan of four parallel workers, not the serial sum
    assert clock.now < sum(charged.values()) / 2


def test_ctrl_c_stops_a_local_search_cleanly_and_it_resumes(tmp_path):
    """SIGINT mid-trial: exit 130 with the resume command, nothing told lost, the trial
    that was cut off re-run by the resume."""
    import os
    import signal
    import time

    out = tmp_path / "run"
    study = yaml.safe_load(TINY.read_text())
    study["training"]["epochs"] = 40  # a trial long enough to be cut off
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(study))
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "search", str(path),
                             "--executor", "local", "--budget", "4trials", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not any((out / "logs").glob("*")):
        time.sleep(0.2)
    time.sleep(1.0)  # inside the first trial's training
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert f"nas search --resume {out}" in err
    trials = told(out)
    cut = [t for t in trials if t.user_attrs.get("status") == "interrupted"]
    assert len(cut) == 1 and cut[0].state.name == "FAIL"

    again = nas("search", "--resume", str(out), "--executor", "local")
    assert again.returncode == 0, again.stderr[-3000:]
    trials = told(out)
    retried = [t for t in trials if t.user_attrs.get("retry_of") == cut[0].number]
    assert len(retried) == 1 and retried[0].user_attrs.get("status") != "interrupted"
    check_ledger(out, trials)
