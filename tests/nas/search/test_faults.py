"""Faults inside trials never end a search: a worker process that dies (a real
os._exit) is retried once, an out-of-memory trial is infeasible on memory, an exception
is recorded with its message, a NaN loss is recorded as diverged.

Faults are injected with the trainable's test-only hook (nas.search.trainable: NAS_TEST_FAULTS,
honoured only under pytest): each trial takes the next fault from a JSON list."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
import yaml

from nas.run.ledger import Ledger
from nas.run.states import category
from nas.search.driver import run_search

TINY = Path(__file__).parents[1] / "data" / "tiny_search.yaml"


@pytest.fixture(scope="module")
def faults_file(tmp_path_factory):
    ray = pytest.importorskip("ray")
    path = tmp_path_factory.mktemp("faults") / "faults.json"
    path.write_text("[]")
    old = os.environ.get("NAS_TEST_FAULTS")
    os.environ["NAS_TEST_FAULTS"] = str(path)  # Ray workers inherit it from ray.init
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    yield path
    ray.shutdown()
    if old is None:
        os.environ.pop("NAS_TEST_FAULTS", None)
    else:
        os.environ["NAS_TEST_FAULTS"] = old


def study() -> dict:
    s = yaml.safe_load(TINY.read_text())
    s["constraints"] = {}  # every candidate trains, so every fault is met in training
    s["resources"]["concurrency"] = 1  # faults go to trials in order
    # 24 architectures: few duplicates, so enough trials train to meet every fault
    s["space"]["stem"]["channels"] = [4, 6, 8, 10]
    s["space"]["stages"][0]["channels"] = [8, 12, 16]
    return s


def trials_of(run_dir: Path):
    return optuna.load_study(study_name="tiny",
                             storage=f"sqlite:///{run_dir / 'optuna.db'}").trials


def test_kill_oom_error_nan_each_recorded_and_the_search_goes_on(tmp_path, faults_file):
    faults_file.write_text(json.dumps(["kill", "none", "memory", "error", "nan"]))
    run_dir = tmp_path / "run"
    summary = run_search(study(), run_dir=run_dir, budget="6trials", progress=False)
    assert summary.stop_reason == "budget"
    assert json.loads(faults_file.read_text()) == []  # every fault was met
    trials = [t for t in trials_of(run_dir) if category(t) != "duplicate"]
    assert len([t for t in trials_of(run_dir) if t.state.is_finished()]) == 6
    by_status: dict[str, list] = {}
    for t in trials:
        by_status.setdefault(t.user_attrs["status"], []).append(t)
    ledger = Ledger(run_dir / "ledger.jsonl")

    # The killed worker: retried once on a new worker, then fine.
    retried = [t for t in trials if t.user_attrs.get("attempts") == 2]
    assert len(retried) == 1
    (killed,) = retried
    assert killed.user_attrs["status"] == "ok" and killed.state.name == "COMPLETE"
    entries = [e for e in ledger.entries if e.trial == killed.number]
    assert [e.attempt for e in entries] == [1, 2]
    assert entries[0].status == "worker_died" and entries[1].status == "ok"
    assert killed.user_attrs["device_s"] == pytest.approx(sum(e.device_s for e in entries))

    (oom,) = by_status["oom"]
    assert oom.state.name == "COMPLETE" and category(oom) == "infeasible"
    assert oom.constraints["oom"] == 1.0 and oom.user_attrs["violations"]["memory_mb"] > 0
    assert "out of memory" in oom.user_attrs["message"]
    assert "accuracy" in oom.user_attrs["placeholders"]

    (err,) = by_status["error"]
    assert err.state.name == "FAIL" and "injected by NAS_TEST_FAULTS" in err.user_attrs["message"]
    (nan,) = by_status["diverged"]
    assert nan.state.name == "FAIL" and nan.user_attrs["message"]

    for t in trials:
        assert ledger.attempts(t.number) == t.user_attrs["attempts"]
    assert ledger.spent_device_s() == pytest.approx(
        sum(t.user_attrs["device_s"] for t in trials))


def test_a_worker_that_dies_twice_fails_its_trial_only(tmp_path, faults_file):
    faults_file.write_text(json.dumps(["kill", "kill"]))
    run_dir = tmp_path / "run"
    summary = run_search(study(), run_dir=run_dir, budget="3trials", progress=False)
    assert summary.stop_reason == "budget"
    trials = trials_of(run_dir)
    dead = [t for t in trials if t.user_attrs.get("status") == "worker_died"]
    assert len(dead) == 1
    (t,) = dead
    assert t.state.name == "FAIL" and t.user_attrs["attempts"] == 2
    assert "2 attempts" in t.user_attrs["message"]
    entries = [e for e in Ledger(run_dir / "ledger.jsonl").entries if e.trial == t.number]
    assert [(e.attempt, e.status) for e in entries] == [(1, "worker_died"),
                                                          (2, "worker_died")]
    others = [x for x in trials if x.number != t.number and category(x) != "duplicate"]
    assert others and all(x.user_attrs["status"] == "ok" for x in others)


def test_a_missing_dataset_ends_the_search_with_one_line(tmp_path, faults_file, capsys):
    from nas.cli import main

    faults_file.write_text("[]")
    s = study()
    s["data"] = {"dataset": "cifar10", "root": str(tmp_path / "no-cifar-here")}
    s["space"]["input"] = {"channels": 3, "size": [32, 32]}
    s["space"]["classes"] = 10
    path = tmp_path / "cifar.yaml"
    path.write_text(yaml.safe_dump(s))
    run_dir = tmp_path / "run"
    code = main(["search", str(path), "--out", str(run_dir), "--budget", "4trials"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("nas search: error:") and "no-cifar-here" in err[-1]
    # Not the candidate's fault: it is failed as interrupted and waits to be re-run.
    trials = trials_of(run_dir)
    assert trials and all(t.user_attrs.get("status") == "interrupted"
                          for t in trials if t.state.is_finished())
    assert [t for t in trials if t.state.name == "WAITING"]
