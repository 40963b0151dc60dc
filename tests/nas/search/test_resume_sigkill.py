"""A REAL `kill -9` of a `nas search` driver mid-search, then `nas search --resume`:
completed trials are kept, interrupted ones are failed and re-run, the ledger continues
without counting anything twice, and the killed driver's Ray processes do not linger:
its watcher kills them before anyone resumes, and `nas status` says the driver is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from nas.cli import main
from nas.run.ledger import Ledger
from nas.run.rundir import process_alive

TINY = Path(__file__).parents[1] / "data" / "tiny_search.yaml"
#: below the tiny space's 8 architectures: the search ends on its budget, not exhausted
#: (a proposal of a known architecture is no trial, so it does not count)
BUDGET = 6


def _running_trial(run: Path) -> bool:
    """Some trial is mid-training: its log's last event is a start or an epoch."""
    for log in (run / "logs").glob("trial-*.jsonl"):
        lines = log.read_text().splitlines()
        if not lines:
            continue
        try:
            last = json.loads(lines[-1])
        except ValueError:
            continue
        if last.get("event") == "start" or (last.get("event") == "result"
                                             and not last.get("final")):
            return True
    return False


def _told(run: Path) -> int:
    path = run / "ledger.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _trials(run: Path):
    return optuna.load_study(study_name="tiny",
                             storage=f"sqlite:///{run / 'optuna.db'}").trials


def test_sigkill_mid_search_then_resume(tmp_path):
    study = yaml.safe_load(TINY.read_text())
    study["constraints"] = {}
    study["data"]["synthetic"].update(train=512, val=64)
    study["training"]["epochs"] = 5  # long enough trials to kill one mid-training
    study_path = tmp_path / "study.yaml"
    study_path.write_text(yaml.safe_dump(study))
    run = tmp_path / "run"
    log = open(tmp_path / "driver.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas.cli", "search", str(study_path), "--out", str(run),
         "--budget", f"{BUDGET}trials"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600  # a hang guard, not a speed requirement
        while not (_told(run) >= 2 and _running_trial(run)):
            assert proc.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the search never got going"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()

    ray_procs = json.loads((run / "driver.json").read_text())["ray_processes"]
    assert any(p["name"] == "raylet" for p in ray_procs)
    before = {t.number: t for t in _trials(run)}
    done_before = {n: t for n, t in before.items() if t.state.is_finished()}
    running_before = [n for n, t in before.items() if t.state.name == "RUNNING"]
    assert len(done_before) >= 1 and running_before  # killed mid-search, mid-trial
    ledger_before = Ledger(run / "ledger.jsonl").entries

    # Before any resume: `nas status` says the driver is gone, its trials interrupted,
    # and the watcher the driver started (nas.run.reaper) has killed its Ray processes.
    status = subprocess.run([sys.executable, "-m", "nas.cli", "status", str(run)],
                            capture_output=True, text=True, timeout=600)
    assert status.returncode == 0, status.stderr
    assert (f"driver    gone (pid {proc.pid} on " in status.stdout
            and f"its {len(running_before)} running trial(s) are interrupted; resume with: "
            f"nas search --resume {run}" in status.stdout), status.stdout
    assert ", 0 running," in status.stdout
    deadline = time.monotonic() + 60  # the watcher polls every 2 s; a hang guard
    while [p for p in ray_procs if process_alive(p["pid"], p["start"])]:
        assert time.monotonic() < deadline, "the dead driver's Ray processes outlived it"
        time.sleep(0.5)

    assert main(["search", "--resume", str(run)]) == 0

    # Nothing the killed driver's Ray started is still running.
    lingering = [p for p in ray_procs if process_alive(p["pid"], p["start"])]
    assert not lingering, lingering

    after = {t.number: t for t in _trials(run)}
    # Every trial told before the kill is kept as it was.
    for n, t in done_before.items():
        assert after[n].state == t.state and after[n].values == t.values
        assert after[n].user_attrs == t.user_attrs
    # Interrupted trials are failed and re-run with the same params.
    for n in running_before:
        t = after[n]
        assert t.state.name == "FAIL" and t.user_attrs["status"] == "interrupted"
        retries = [r for r in after.values() if r.user_attrs.get("retry_of") == n]
        if not before[n].params and "fixed_params" not in before[n].system_attrs:
            assert not retries  # asked, never handed out: nothing to re-run
            continue
        assert len(retries) == 1
        assert retries[0].params == t.params and retries[0].state.is_finished()
    told = [t for t in after.values() if t.state.is_finished()
            and t.user_attrs.get("status") != "interrupted"]
    assert len(told) == BUDGET
    trained = [t.user_attrs["hash"] for t in told if t.user_attrs.get("duplicate_of") is None]
    assert len(trained) == len(set(trained))  # no architecture trained twice
    assert not [t for t in after.values() if not t.state.is_finished()]

    # The ledger continued: the old lines untouched, each attempt once, the interrupted
    # attempts charged once from their logs, every told trial's cost included.
    ledger = Ledger(run / "ledger.jsonl")
    assert ledger.entries[:len(ledger_before)] == ledger_before
    keys = [(e.trial, e.attempt) for e in ledger.entries]
    assert len(keys) == len(set(keys))
    interrupted = [e for e in ledger.entries if e.status == "interrupted"]
    assert {e.trial for e in interrupted} <= set(running_before)
    for e in interrupted:
        assert e.session == 0 and e.wall_s >= 0.0
    by_trial = ledger.by_trial()
    for t in told:
        if t.user_attrs.get("duplicate_of") is None:
            assert by_trial[t.number] == pytest.approx(t.user_attrs["device_s"])
    for e in ledger.entries[len(ledger_before):]:
        assert e.session == (0 if e.status == "interrupted" else 1)
    meta = json.loads((run / "run.json").read_text())
    assert len(meta["sessions"]) == 2
