"""End-to-end searches with a real local Ray (started once for this module), a real
SQLite Optuna storage and real (tiny, synthetic) training."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from nas.cli import main
from nas.run.ledger import Ledger
from nas.run.states import category
from nas.search.driver import run_search

TINY = Path(__file__).parents[1] / "data" / "tiny_search.yaml"


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    yield
    ray.shutdown()


def tiny(**changes) -> dict:
    study = yaml.safe_load(TINY.read_text())
    for key, value in changes.items():
        study[key] = value
    return study


def trials_of(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    meta = json.loads((run_dir / "run.json").read_text())
    storage = f"sqlite:///{run_dir / 'optuna.db'}"
    return optuna.load_study(study_name=meta["optuna_study"], storage=storage).trials


def check_ledger_matches_trials(run_dir: Path, trials) -> Ledger:
    """Ledger total == the trials' device time; one entry per attempt, none twice."""
    ledger = Ledger(run_dir / "ledger.jsonl")
    keys = [(e.trial, e.attempt) for e in ledger.entries]
    assert len(keys) == len(set(keys))
    per_trial = ledger.by_trial()
    for t in trials:
        if category(t) == "duplicate":
            assert t.number not in per_trial  # never trained, never charged
        elif t.state.is_finished() and t.user_attrs.get("status") != "interrupted":
            assert t.user_attrs["device_s"] == pytest.approx(per_trial[t.number])
            assert ledger.attempts(t.number) == t.user_attrs["attempts"]
    told_device = sum(t.user_attrs.get("device_s", 0.0) for t in trials
                      if t.user_attrs.get("status") != "interrupted")
    interrupted = sum(e.device_s for e in ledger.entries if e.status == "interrupted")
    assert ledger.spent_device_s() == pytest.approx(told_device + interrupted)
    for e in ledger.entries:
        assert e.device_s == pytest.approx(e.wall_s * e.devices)
    return ledger


def test_trials_budget_constraints_dedup_ledger_and_status(tmp_path, capsys):
    run_dir = tmp_path / "run"
    study = tiny(sampler={"name": "nsga2", "seed": 1, "options": {"population_size": 4}})
    # 7 of the tiny space's 8 architectures: the budget ends it (a proposal of a known
    # architecture is replaced, not told, so it does not count)
    summary = run_search(study, run_dir=run_dir, budget="7trials", progress=False)
    trials = trials_of(run_dir)
    told = [t for t in trials if t.state.is_finished()]
    assert len(told) == 7 and summary.stop_reason == "budget"
    assert not [t for t in trials if not t.state.is_finished()]

    states = {category(t) for t in trials}
    assert "complete" in states
    for t in trials:
        attrs = t.user_attrs
        assert set(attrs) >= {"status", "hash", "kind", "spec"}
        json.dumps(attrs)  # plain values only: optuna-dashboard opens the study as is
        if category(t) == "duplicate":
            original = trials[attrs["duplicate_of"]]
            assert original.user_attrs["hash"] == attrs["hash"]
            assert original.values == t.values and original.state == t.state
            continue
        # Constraints are the relative amount over the limit (<= 0 feasible), one per
        # study constraint plus oom.
        assert set(t.constraints) >= {"params", "oom"}
        params = attrs["metrics"]["params"]
        assert t.constraints["params"] == pytest.approx((params - 6000) / 6000)
        if params > 6000:
            assert category(t) == "infeasible" and attrs["status"] == "infeasible"
            assert attrs["epochs_done"] == 0 and attrs["curve"] == []
            assert "accuracy" in attrs["placeholders"] and t.values[0] == 0.0
            assert attrs["violations"]["params"] == pytest.approx(params - 6000)
        else:
            assert category(t) == "complete" and attrs["status"] == "ok"
            assert attrs["epochs_done"] == 3 and len(attrs["curve"]) == 3
            assert t.values == [pytest.approx(attrs["metrics"]["accuracy"]), params]
            assert 0.0 <= t.values[0] <= 1.0
            prov = attrs["provenance"]
            assert {"device", "torch", "precision", "batch_size", "seed"} <= set(prov)
            assert prov["batch_size"] == 32 and prov["seed"] == 1  # the run seed
    # No architecture trained twice.
    trained = [t.user_attrs["hash"] for t in trials if category(t) != "duplicate"]
    assert len(trained) == len(set(trained))
    check_ledger_matches_trials(run_dir, trials)
    # Every trained trial has a log with its start and one result per epoch.
    for t in trials:
        if t.user_attrs.get("status") == "ok":
            lines = (run_dir / "logs" / f"trial-{t.number:05d}.jsonl").read_text()
            events = [json.loads(x) for x in lines.splitlines()]
            assert events[0]["event"] == "start"
            assert sorted(e["epoch"] for e in events if "epoch" in e
                          and not e.get("final")) == [1, 2, 3]
    assert (run_dir / "ray" / "session-0").is_dir()
    assert (run_dir / "study.yaml").is_file()

    # NSGA-II saw the constraints: Optuna 5's best_trials is the FEASIBLE Pareto front.
    ostudy = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run_dir / 'optuna.db'}")
    assert ostudy.metric_names == ["accuracy", "params"]
    front = {t.number for t in ostudy.best_trials}
    assert front
    for t in trials:
        if t.number in front:
            assert all(v <= 0 for v in t.constraints.values())
        if category(t) == "infeasible":
            assert t.number not in front and max(t.constraints.values()) > 0

    assert main(["status", str(run_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    n_dup = sum(category(t) == "duplicate" for t in trials)
    assert status["counts"]["total"] == 7 and status["counts"]["duplicate"] == n_dup
    assert status["counts"]["duplicates_skipped"] == sum(
        t.user_attrs.get("duplicates_skipped", 0) for t in trials)
    assert status["budget"]["spent"] == 7 and status["budget"]["limit"] == 7
    assert status["budget"]["unit"] == "trials"
    assert main(["status", str(run_dir)]) == 0
    text = capsys.readouterr().out
    assert "budget" in text and "spent 7 of 7 trials" in text


def test_device_budget_is_never_overcommitted(tmp_path):
    run_dir = tmp_path / "run"
    summary = run_search(tiny(constraints={}), run_dir=run_dir, budget="25gpusec",
                         progress=False)
    assert summary.stop_reason in ("budget", "space exhausted")
    trials = trials_of(run_dir)
    ledger = check_ledger_matches_trials(run_dir, trials)
    limit = 25.0
    started = [t for t in trials if "admission" in t.user_attrs]
    assert started
    for t in started:
        a = t.user_attrs["admission"]
        assert a["decision"] == "start" and a["spent"] < limit
        if a["expected"] is not None:  # once a cost is known, nothing overcommits
            assert a["spent"] + (a["running"] + 1) * a["expected"] <= limit + 1e-9
    # Only trials started before any cost was known can overshoot the limit, each by
    # at most its own cost.
    blind = [t for t in started if t.user_attrs["admission"]["expected"] is None]
    assert ledger.spent_device_s() <= limit + sum(t.user_attrs["device_s"] for t in blind)
    assert summary.budget["unit"] == "gpusec"
    assert summary.budget["spent"] == pytest.approx(ledger.spent_device_s())


def test_asha_stops_trials_on_the_primary_objective(tmp_path):
    run_dir = tmp_path / "run"
    study = tiny(constraints={}, training={"epochs": 4, "batch_size": 32, "lr": 0.05},
                 fidelity={"scheduler": "asha", "grace_epochs": 1, "reduction_factor": 2},
                 resources={"concurrency": 1, "cpus_per_trial": 1, "gpus_per_trial": 0},
                 objectives=[{"metric": "accuracy", "direction": "maximize"}])
    run_search(study, run_dir=run_dir, budget="8trials", progress=False)
    trials = trials_of(run_dir)
    rungs = json.loads((run_dir / "rungs.json").read_text())
    assert rungs["metric"] == "accuracy" and rungs["grace_epochs"] == 1
    stopped = {s["trial"]: s for s in rungs["stopped"]}
    pruned = {t.number: t for t in trials if t.state.name == "PRUNED"
              and category(t) != "duplicate"}
    assert set(stopped) == set(pruned)
    assert stopped, "with 4 epochs and a median cutoff some trial must fall behind"
    for number, s in stopped.items():
        t = pruned[number]
        assert t.user_attrs["status"] == "stopped"
        assert t.user_attrs["epochs_done"] == s["epoch"] < 4
        assert len(t.user_attrs["curve"]) == s["epoch"]
        assert s["value"] == pytest.approx(t.user_attrs["curve"][-1])
        assert s["cutoff"] is None or s["value"] < s["cutoff"]
        # single objective: the curve is also Optuna's intermediate values
        assert t.intermediate_values[s["epoch"]] == pytest.approx(s["value"])
    for t in trials:
        if t.user_attrs.get("status") == "ok":
            assert t.user_attrs["epochs_done"] == 4  # survivors train to the end
            # ... and their learning curve is Optuna's intermediate values (dashboard)
            assert [t.intermediate_values[e] for e in range(1, 5)] == pytest.approx(
                t.user_attrs["curve"])
    # Every trial recorded at a rung reported that value at that epoch.
    for rung in rungs["rungs"]:
        for number, value in rung["trials"].items():
            curve = trials[int(number)].user_attrs["curve"]
            assert curve[int(rung["epoch"]) - 1] == pytest.approx(value)
    check_ledger_matches_trials(run_dir, trials)


def test_baselines_are_evaluated_once_under_the_same_protocol(tmp_path):
    spec = {"version": 1, "name": "small-cnn", "input": {"channels": 3, "size": [32, 32]},
            "classes": 10, "stem": {"kind": "conv", "channels": 8, "kernel": 3},
            "stages": [{"channels": 8, "stride": 2, "blocks": [{"type": "basic"}]}]}
    spec_path = tmp_path / "small.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    study = tiny(baselines=[str(spec_path), "zoo:resnet18-cifar"])
    run_dir = tmp_path / "run"
    run_search(study, run_dir=run_dir, budget="3trials", with_baselines=True,
               progress=False)
    trials = trials_of(run_dir)
    base = [t for t in trials if t.user_attrs.get("kind") == "baseline"]
    assert [t.user_attrs["baseline"] for t in base] == [str(spec_path), "zoo:resnet18-cifar"]
    for t in base:
        s = t.user_attrs["spec"]
        assert s["input"] == {"channels": 1, "size": [8, 8]} and s["classes"] == 4
    small, resnet = base
    # the small CNN at 1x8x8 is a point of the tiny space: told with its params, so the
    # sampler learns from it (warm start); ResNet-18 is not (another depth and blocks)
    assert small.params == {"stem.channels": 8, "s0.channels": 8, "s0.depth": 1}
    assert small.user_attrs["in_space"] is True
    assert resnet.params == {} and "in_space" not in resnet.user_attrs
    assert small.user_attrs["status"] == "ok"  # trained like any candidate
    assert small.user_attrs["provenance"]["batch_size"] == 32
    # 11M params > 6000: a comparison is trained all the same, and marked infeasible
    assert resnet.user_attrs["status"] == "ok" and resnet.user_attrs["epochs_done"] == 3
    assert resnet.user_attrs["violations"]["params"] > 0 and resnet.constraints
    assert category(resnet) == "infeasible" and resnet.user_attrs["placeholders"] == []
    assert resnet.values[0] == pytest.approx(resnet.user_attrs["metrics"]["accuracy"])
    # A resume with --with-baselines again does not enqueue them twice.
    run_search(resume=run_dir, budget="4trials", with_baselines=True, progress=False)
    trials = trials_of(run_dir)
    assert sum(t.user_attrs.get("kind") == "baseline" for t in trials) == 2
    assert len([t for t in trials if t.state.is_finished()]) == 4
    check_ledger_matches_trials(run_dir, trials)
