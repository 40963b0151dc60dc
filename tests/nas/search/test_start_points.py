"""A study's ``sampler.start_from``: the search starts from hand-designed networks of its
space (evaluated first, told to the sampler with their params), through ``nas search``
as a user types it; bad entries are one error line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
import yaml

from nas.cli import main

TINY = Path(__file__).parents[1] / "data" / "tiny_search.yaml"
#: a point of the tiny space (stem 8, one stage of 8 channels, one basic block)
SMALL = {"version": 1, "name": "small-cnn", "input": {"channels": 1, "size": [8, 8]},
         "classes": 4, "stem": {"kind": "conv", "channels": 8, "kernel": 3},
         "stages": [{"channels": 8, "stride": 2, "blocks": [{"type": "basic"}]}]}


def write_study(tmp_path: Path, start_from, baselines=("small.yaml", "zoo:resnet18-cifar"),
                sampler: str = "tpe") -> Path:
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(SMALL))
    study = yaml.safe_load(TINY.read_text())
    study["baselines"] = list(baselines)
    study["sampler"] = {"name": sampler, "seed": 0, "options": {"n_startup_trials": 2},
                        "start_from": start_from}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def trials_of(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    meta = json.loads((run_dir / "run.json").read_text())
    return optuna.load_study(study_name=meta["optuna_study"],
                             storage=f"sqlite:///{run_dir / 'optuna.db'}").trials


def test_search_starts_from_the_named_baselines_then_adds_the_rest_once(tmp_path):
    study = write_study(tmp_path, ["small.yaml"])
    run = tmp_path / "run"
    assert main(["search", str(study), "--budget", "3trials", "-o", str(run),
                 "--executor", "local", "-q"]) == 0
    trials = trials_of(run)
    first = trials[0]
    # trial 0 is the start point: a baseline (compared, never stopped by ASHA) whose
    # params the sampler sees; the other baseline is not evaluated without the flag
    assert first.user_attrs["kind"] == "baseline" and first.user_attrs["in_space"] is True
    assert first.user_attrs["baseline"] == str((tmp_path / "small.yaml").resolve())
    assert first.params == {"stem.channels": 8, "s0.channels": 8, "s0.depth": 1}
    assert first.user_attrs["status"] == "ok"
    assert [t.user_attrs.get("kind") for t in trials[1:]] == ["search", "search"]
    # --with-baselines on resume adds the baselines that were not start points, once
    assert main(["search", "--resume", str(run), "--budget", "5trials",
                 "--with-baselines", "--executor", "local", "-q"]) == 0
    trials = trials_of(run)
    base = [t.user_attrs["baseline"] for t in trials if t.user_attrs.get("kind") == "baseline"]
    assert base == [str((tmp_path / "small.yaml").resolve()), "zoo:resnet18-cifar"]


def test_without_start_points_the_first_trial_is_the_samplers(tmp_path):
    study = write_study(tmp_path, [])
    run = tmp_path / "run"
    assert main(["search", str(study), "--budget", "1trials", "-o", str(run),
                 "--executor", "local", "-q"]) == 0
    assert trials_of(run)[0].user_attrs["kind"] == "search"


@pytest.mark.parametrize("start_from, expected", [
    (["other.yaml"], "study.sampler.start_from[0]: no such spec file 'other.yaml'"),
    (["zoo:resnet18-cifar"], "study.sampler.start_from[0]: 'zoo:resnet18-cifar' is not a "
                             "point of the study's space"),
    (["small.yaml", "./small.yaml"], "study.sampler.start_from: names a baseline twice"),
    ("small.yaml", "study.sampler.start_from: 'small.yaml' is not a list of the study's "
                   "baselines"),
])
def test_bad_start_points_are_one_line(tmp_path, capsys, start_from, expected):
    study = write_study(tmp_path, start_from)
    assert main(["search", str(study), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nas search: error: {expected}") and "\n" not in err, err


def test_a_start_point_must_be_one_of_the_baselines(tmp_path, capsys):
    study = write_study(tmp_path, ["small.yaml"], baselines=["zoo:resnet18-cifar"])
    assert main(["search", str(study), "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == (
        "nas search: error: study.sampler.start_from[0]: 'small.yaml' is not one of "
        "study.baselines")


def test_start_points_round_trip_through_the_run_directory(tmp_path):
    """The run keeps the study with resolved paths; reading it back keeps them."""
    from nas.study import load_study, parse_study

    study = load_study(str(write_study(tmp_path, ["small.yaml"])))
    again = parse_study(yaml.safe_load(study.to_yaml()), base_dir=Path("/"))
    assert again.sampler.start_from == (str((tmp_path / "small.yaml").resolve()),)


def test_the_plan_says_which_baselines_every_search_starts_from(tmp_path, capsys):
    study = write_study(tmp_path, ["small.yaml"])
    assert main(["search", str(study), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = [x for x in lines if x.startswith("start ")]
    rest = [x for x in lines if x.startswith("baselines ")]
    assert len(start) == 1 and str((tmp_path / "small.yaml").resolve()) in start[0]
    assert len(rest) == 1 and "resnet18-cifar" in rest[0] and "small.yaml" not in rest[0]


def _plan(capsys, *args) -> dict:
    assert main(["search", *args, "--dry-run", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_plan_prices_what_the_search_evaluates_first(tmp_path, capsys):
    """Start points (and with --with-baselines the other baselines) are trained in full
    before the sampler proposes: the plan prices each and takes them off the budget."""
    study = write_study(tmp_path, ["small.yaml"])
    small = str((tmp_path / "small.yaml").resolve())
    for flags, expected in (([], [(small, "start point")]),
                            (["--with-baselines"], [(small, "start point"),
                                                    ("zoo:resnet18-cifar", "baseline")])):
        plan = _plan(capsys, str(study), "--budget", "2gpumin", *flags)
        first, t = plan["first_evaluated"], plan["trial"]
        assert [(f["ref"], f["as"]) for f in first] == expected
        assert all(f["trained_s"] > 0 and f["step_s"] > 0 for f in first)
        devices = plan["resources"]["per_trial"]["devices_charged"]
        left = 120 - sum(f["trained_s"] for f in first) * devices
        assert t["proposed_trials"] == math.floor(left / t["expected_device_s"])
        assert plan["expected_trials"] == len(first) + t["proposed_trials"]
    assert main(["search", str(study), "--budget", "2gpumin", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert f"first     {small} (start point): full training ~" in text
    assert "trials within the budget: the 1 evaluated first (~" in text


def test_a_resumed_plan_does_not_price_what_the_run_evaluated(tmp_path, capsys):
    study = write_study(tmp_path, ["small.yaml"])
    run = tmp_path / "run"
    assert main(["search", str(study), "--budget", "1trials", "-o", str(run),
                 "--executor", "local", "-q"]) == 0
    capsys.readouterr()
    assert _plan(capsys, "--resume", str(run), "--budget", "3trials")["first_evaluated"] == []
    plan = _plan(capsys, "--resume", str(run), "--budget", "3trials", "--with-baselines")
    assert [f["ref"] for f in plan["first_evaluated"]] == ["zoo:resnet18-cifar"]
    # a trials budget: the baseline is one of the trials the budget counts
    assert plan["trial"]["proposed_trials"] == 3 - 1 - 1
    assert plan["expected_trials"] == 2


def test_a_budget_smaller_than_the_start_points_runs_only_what_it_admits(tmp_path, capsys):
    """The plan plays the search's admission rule over the trials evaluated first: a
    1-trial budget runs one of the two, and the plan says which one is not run."""
    study = write_study(tmp_path, ["small.yaml"])
    plan = _plan(capsys, str(study), "--budget", "1trials", "--with-baselines")
    first, t = plan["first_evaluated"], plan["trial"]
    assert [f["within_budget"] for f in first] == [True, False]
    assert t["first_admitted"] == 1 and t["proposed_trials"] == 0
    assert plan["expected_trials"] == 1
    assert main(["search", str(study), "--budget", "1trials", "--with-baselines",
                 "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "resnet18-cifar (baseline): " in text and "beyond the budget: not run" in text
    assert "the budget is spent on the trials evaluated first (1 of 2 run)" in text
    # and the search itself runs exactly that one
    run = tmp_path / "run"
    assert main(["search", str(study), "--budget", "1trials", "--with-baselines", "-o",
                 str(run), "--executor", "local", "-q"]) == 0
    done = [t for t in trials_of(run) if t.state.is_finished()]
    assert len(done) == 1


def test_admission_of_the_first_trials_follows_the_search_rule():
    from nas.budget import parse_budget
    from nas.search.plan_cost import admitted_first

    secs = [10.0, 30.0, 20.0]
    trials = parse_budget("2trials")
    assert admitted_first(trials, secs, devices=1, parallel=2) == 2
    assert admitted_first(trials, secs, devices=1, parallel=2, spent=1) == 1  # resumed
    dev = parse_budget("40gpusec")
    # one at a time: 10 s, then 30 s (spent 10 + expected 10 fits), then spent 40: done
    assert admitted_first(dev, secs, devices=1, parallel=1) == 2
    # two at a time: the third starts when the first ends (10 + 10 running + 10 <= 40)
    assert admitted_first(dev, secs, devices=1, parallel=2) == 3
    # each trial holding 2 devices costs twice as much: 20, then 20 + 20 > 40 committed
    assert admitted_first(dev, secs, devices=2, parallel=2) == 2
    assert admitted_first(parse_budget("1h"), secs, devices=1, parallel=1) == 3
    assert admitted_first(parse_budget("15s"), secs, devices=1, parallel=1) == 1
