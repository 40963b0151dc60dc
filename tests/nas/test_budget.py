"""Budget strings, the admission policy, the ledger and the run directory (no Ray), and
the one-line errors `nas search` gives for bad budgets and bad study files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas.budget import admit, expected_cost, parse_budget
from nas.cli import main
from nas.errors import UserError
from nas.run.ledger import Ledger, LedgerEntry
from nas.run.rundir import RunDir, descendants, process_alive, process_start

TINY = Path(__file__).parent / "data" / "tiny_search.yaml"


@pytest.mark.parametrize("text, kind, limit, unit, amount", [
    ("100gpuh", "device", 360000.0, "gpuh", 100.0),
    ("30gpumin", "device", 1800.0, "gpumin", 30.0),
    ("0.5 GPUh", "device", 1800.0, "gpuh", 0.5),
    ("90gpusec", "device", 90.0, "gpusec", 90.0),
    ("2h", "wall", 7200.0, "h", 2.0),
    ("45min", "wall", 2700.0, "min", 45.0),
    ("10s", "wall", 10.0, "s", 10.0),
    ("200trials", "trials", 200.0, "trials", 200.0),
    ("1trial", "trials", 1.0, "trials", 1.0),
])
def test_parse_budget(text, kind, limit, unit, amount):
    b = parse_budget(text)
    assert (b.kind, b.limit, b.unit) == (kind, pytest.approx(limit), unit)
    assert b.in_unit(b.limit) == pytest.approx(amount)


@pytest.mark.parametrize("text, needle", [
    ("", "is not a budget"),
    ("gpuh", "is not a budget"),
    ("100", "is not a budget"),
    ("12parsecs", "unknown budget unit 'parsecs'"),
    ("0gpuh", "positive"),
    ("2.5trials", "whole number"),
    ("-3h", "a budget must be a positive amount"),
])
def test_bad_budget_names_the_problem_and_the_units(text, needle):
    with pytest.raises(UserError) as err:
        parse_budget(text)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg
    if "unit" in needle or "is not a budget" in needle:
        assert "gpuh" in msg and "trials" in msg  # says what is allowed


def test_budget_to_dict_reports_spent_and_left_in_its_unit():
    b = parse_budget("2gpumin")
    d = b.to_dict(spent=90.0)
    assert d["unit"] == "gpumin" and d["limit"] == 2.0
    assert d["spent"] == pytest.approx(1.5) and d["left"] == pytest.approx(0.5)
    assert b.to_dict(spent=500.0)["left"] == 0.0


def test_expected_cost_prefers_trained_then_extrapolated_then_any():
    assert expected_cost([], [], []) is None
    assert expected_cost([10.0, 30.0, 20.0], [1.0], [99.0]) == 20.0
    assert expected_cost([], [1.0, 2.0], [40.0, 60.0]) == 50.0
    assert expected_cost([], [1.0, 3.0], []) == 2.0


def test_admit_device_budget():
    b = parse_budget("100gpusec")
    # Unknown cost: a trial may start.
    assert admit(b, spent=0.0, running=0, expected=None, told=0) == "start"
    # 60 spent + 2 running x 15 + 15 > 100: wait for the running ones.
    assert admit(b, spent=60.0, running=2, expected=15.0, told=3) == "wait"
    assert admit(b, spent=60.0, running=1, expected=15.0, told=3) == "start"
    # Even with nothing running the next trial does not fit: the search is over.
    assert admit(b, spent=90.0, running=0, expected=15.0, told=3) == "finished"
    assert admit(b, spent=100.0, running=0, expected=None, told=3) == "finished"


def test_admit_wall_and_trials_budgets():
    wall = parse_budget("1min")
    assert admit(wall, spent=40.0, running=2, expected=15.0, told=0) == "start"
    assert admit(wall, spent=50.0, running=0, expected=15.0, told=0) == "finished"
    trials = parse_budget("5trials")
    assert admit(trials, spent=3, running=1, expected=1.0, told=3) == "start"
    assert admit(trials, spent=3, running=2, expected=1.0, told=3) == "finished"


def test_ledger_appends_durably_and_refuses_a_second_count(tmp_path):
    path = tmp_path / "ledger.jsonl"
    led = Ledger(path)
    assert led.append(LedgerEntry.make(0, 1, "ok", 2.0, 1.0))
    assert led.append(LedgerEntry.make(1, 1, "worker_died", 1.5, 0.5))
    assert led.append(LedgerEntry.make(1, 2, "ok", 4.0, 0.5))
    assert not led.append(LedgerEntry.make(1, 2, "ok", 9.0, 0.5))  # same attempt again
    again = Ledger(path)  # what a resumed driver reads
    assert len(again) == 3
    assert again.spent_device_s() == pytest.approx(2.0 + 0.75 + 2.0)
    assert again.by_trial() == {0: pytest.approx(2.0), 1: pytest.approx(2.75)}
    assert again.attempts(1) == 2
    assert not again.append(LedgerEntry.make(0, 1, "ok", 5.0, 1.0))


def test_ledger_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "ledger.jsonl"
    Ledger(path).append(LedgerEntry.make(0, 1, "ok", 2.0, 1.0))
    with open(path, "a") as fh:
        fh.write('{"trial": 1, "attempt": 1, "status": "o')  # killed mid-write
    led = Ledger(path)
    assert len(led) == 1 and led.spent_device_s() == pytest.approx(2.0)


def test_rundir_layout_lock_and_clock(tmp_path):
    run = RunDir.create(tmp_path / "run", {"name": "x"}, optuna_study="x", storage=None,
                        seed=3, budget="2trials")
    for name in ("run.json", "study.yaml", "logs", "exports", "plots", "ray"):
        assert (run.path / name).exists()
    assert run.storage_url() == f"sqlite:///{run.path / 'optuna.db'}"
    with pytest.raises(UserError, match="already holds a search"):
        RunDir.create(run.path, {"name": "x"}, optuna_study="x", storage=None, seed=3,
                      budget="2trials")
    run.acquire()
    other = RunDir.open(run.path)
    with pytest.raises(UserError, match="in use by another"):
        other.acquire()
    run.release()
    other.acquire()
    other.release()
    # The wall clock sums the sessions' spans.
    run.tick(0, time.time() - 10.0)
    run.tick(1, time.time() - 5.0)
    assert run.wall_spent() == pytest.approx(15.0, abs=1.0)
    with pytest.raises(UserError, match="not a nas run directory"):
        RunDir.open(tmp_path)


def test_reap_stale_ray_kills_only_the_recorded_processes(tmp_path):
    run = RunDir.create(tmp_path / "run", {"name": "x"}, optuna_study="x", storage=None,
                        seed=0, budget="1trials")
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = {p["pid"] for p in descendants(os.getpid())}
        assert {victim.pid, bystander.pid} <= mine
        run.write_driver({"pid": 999999999, "host": os.uname().nodename,
                          "ray_processes": [
                              {"pid": victim.pid, "start": process_start(victim.pid)},
                              # same pid, another start time: a recycled pid, not ours
                              {"pid": bystander.pid, "start": 1}]})
        assert run.reap_stale_ray() == [victim.pid]
        victim.wait(timeout=30)
        assert not process_alive(victim.pid)
        assert process_alive(bystander.pid)
    finally:
        for p in (victim, bystander):
            if p.poll() is None:
                p.kill()
                p.wait()


def _one_line_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def test_cli_bad_budget_is_one_line_exit_2(capsys, tmp_path):
    code, err = _one_line_error(capsys, ["search", str(TINY), "--budget", "12parsecs",
                                         "--out", str(tmp_path / "run")])
    assert code == 2
    assert len(err.splitlines()) == 1 and "--budget" in err and "parsecs" in err
    assert not (tmp_path / "run").exists()  # nothing created for a bad command


@pytest.mark.parametrize("patch, field", [
    ("training: {epochs: -1}", "study.training.epochs"),
    ("budget: lots", "study.budget"),
    ("fidelity: {scheduler: hyperband}", "study.fidelity.scheduler"),
    ("sampler: {name: cmaes}", "study.sampler.name"),
    ("colour: blue", "study.colour"),
])
def test_cli_bad_study_file_is_one_line_exit_2(capsys, tmp_path, patch, field):
    text = TINY.read_text()
    key = patch.split(":")[0]
    lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key}:")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("\n".join(lines) + "\n" + patch + "\n")
    code, err = _one_line_error(capsys, ["search", str(bad), "--out", str(tmp_path / "r")])
    assert code == 2
    assert len(err.splitlines()) == 1 and field in err, err
    assert not (tmp_path / "r").exists()


def test_cli_resume_and_status_of_a_missing_run(capsys, tmp_path):
    code, err = _one_line_error(capsys, ["search", "--resume", str(tmp_path / "nope")])
    assert code == 2 and "does not exist" in err and len(err.splitlines()) == 1
    code, err = _one_line_error(capsys, ["status", str(tmp_path)])
    assert code == 2 and "not a nas run directory" in err


def test_status_of_a_run_without_trials(capsys, tmp_path):
    from nas.study import load_study

    study = load_study(TINY)
    RunDir.create(tmp_path / "run", study.to_dict(), optuna_study="tiny", storage=None,
                  seed=0, budget="3gpumin")
    assert main(["status", str(tmp_path / "run"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["total"] == 0
    assert out["budget"]["spent"] == 0.0 and out["budget"]["limit"] == 3.0
    assert out["budget"]["unit"] == "gpumin"


def test_reap_leaves_everything_while_the_recorded_driver_lives(tmp_path):
    run = RunDir.create(tmp_path / "run", {"name": "x"}, optuna_study="x", storage=None,
                        seed=0, budget="1trials")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.write_driver({"pid": os.getpid(), "pid_start": process_start(os.getpid()),
                          "host": os.uname().nodename,
                          "ray_processes": [{"pid": child.pid,
                                             "start": process_start(child.pid)}]})
        assert run.reap_stale_ray() == []  # e.g. an in-process resume: its Ray is live
        assert process_alive(child.pid)
    finally:
        child.kill()
        child.wait()


def _snap(**kw):
    base = {"told": 0, "running": 0, "complete": 0, "infeasible": 0, "failed": 0,
            "stopped": 0, "duplicate": 0, "spent": 0.0, "left": 0.0, "best": None,
            "front": 0}
    return {**base, **kw}


def test_progress_line_and_modes():
    import io

    from nas.search.progress import Progress

    b = parse_budget("2gpumin")
    out = io.StringIO()
    p = Progress(b, "accuracy", stream=out, tty=False)
    snap = _snap(told=3, running=2, complete=2, infeasible=1, spent=45.0, left=75.0,
                 best=(1, 0.93), front=2)
    line = p.line(snap)
    for part in ("trials 3 done", "2 ok", "1 infeasible", "2 running", "0.75gpumin",
                 "of 2gpumin", "1.25gpumin left", "best accuracy 0.93 (#1)", "front 2"):
        assert part in line, part
    p.update(snap)
    p.update(snap)  # nothing finished since: no new line in a log
    p.update({**snap, "told": 4})
    assert out.getvalue().count("\n") == 2 and "\r" not in out.getvalue()
    tty = io.StringIO()
    p = Progress(parse_budget("5trials"), "accuracy", stream=tty, tty=True, min_interval=0)
    p.update(_snap(told=1))
    p.update(_snap(told=2))
    p.close()
    text = tty.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and "budget 2/5 trials" in text


def test_one_spent_rule_per_budget_kind():
    """Budget.spent is the one rule: the ledger's device seconds, the search's wall
    seconds, or the trials told, whichever the budget counts."""
    kwargs = {"device_s": 90.0, "wall_s": 40.0, "told": 3}
    assert parse_budget("2gpumin").spent(**kwargs) == 90.0
    assert parse_budget("1min").spent(**kwargs) == 40.0
    assert parse_budget("5trials").spent(**kwargs) == 3.0
    assert parse_budget("2gpumin").left(90.0) == 30.0 and parse_budget("1min").left(90) == 0


def test_a_run_reads_back_its_budget_and_spent(tmp_path):
    """run_study gives the saved study with run.json's budget (a resume's --budget
    changed it); run_spent counts what the run spent of it by the one rule."""
    from nas.run.summary import run_spent, run_study
    from nas.study import load_study

    study = load_study(TINY)
    run = RunDir.create(tmp_path / "run", study.to_dict(), optuna_study="tiny",
                        storage=None, seed=0, budget=study.budget.text)
    assert run_study(run).budget == study.budget
    run.update_meta(budget="7gpumin")
    again = run_study(run)
    assert again.budget == parse_budget("7gpumin") and again.name == study.name
    Ledger(run.ledger_path).append(LedgerEntry(trial=0, attempt=1, status="ok", wall_s=30.0,
                                               devices=2.0, device_s=60.0))
    assert run_spent(run, again.budget) == pytest.approx(60.0)
    assert run_spent(run, parse_budget("3trials")) == 0.0  # nothing told yet
