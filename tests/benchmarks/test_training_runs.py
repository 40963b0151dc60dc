"""The proxy-fidelity benchmark's run scheduler: which run starts before a deadline, and a
real time-limited run through the script's command line (it keeps what finished and says
how to resume)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import _training_runs as tr  # noqa: E402


def _job(key: str, epochs: int, predict_from: str | None) -> dict:
    return {"key": key, "training_epochs": epochs, "predict_from": predict_from}


def test_a_run_starts_only_if_its_proxy_predicts_it_ends_before_the_deadline():
    done = {"p0": {"train_s": 10.0, "epochs": 2}, "p1": {"train_s": 2.0, "epochs": 2}}
    long_ref = _job("r0", 20, "p0")  # 10 s x 20/2 = 100 s
    short_ref = _job("r1", 20, "p1")  # 20 s
    soon = time.monotonic() + 50
    assert tr._next_that_fits([long_ref, short_ref], done, soon) == (short_ref, False)
    assert tr._next_that_fits([long_ref, short_ref], done, time.monotonic() + 200) == (
        long_ref, False)
    assert tr._next_that_fits([long_ref, short_ref], done, None) == (long_ref, False)
    assert tr._next_that_fits([long_ref], done, soon) == (None, False)


def test_a_busy_machine_stretches_the_predictions():
    done = {"p0": {"train_s": 2.0, "epochs": 2}}
    ref = _job("r0", 20, "p0")  # 20 s predicted
    assert tr.predicted_s(ref, done) == 20.0
    soon = time.monotonic() + 30
    assert tr._next_that_fits([ref], done, soon) == (ref, False)
    # the runs so far took twice their prediction: 40 s no longer fits in 30
    assert tr._next_that_fits([ref], done, soon, stretch=2.0) == (None, False)


def test_a_run_whose_proxy_is_unfinished_waits_and_a_proxy_needs_no_prediction():
    proxy = _job("p0", 2, "p0")  # a proxy predicts from itself: no prediction
    ref = _job("r0", 20, "p0")
    later = time.monotonic() + 5
    assert tr._next_that_fits([ref, proxy], {}, later) == (proxy, True)
    assert tr._next_that_fits([ref], {}, later) == (None, True)
    assert tr._next_that_fits([proxy], {}, time.monotonic() - 1) == (None, False)


def test_time_limited_run_keeps_the_finished_proxy_and_exits_3(tmp_path):
    cache = tmp_path / "runs.json"
    cmd = [sys.executable, str(BENCH / "proxy_fidelity.py"), "--study", "digits",
           "--samples", "1", "--baselines", "--factor", "40", "--jobs", "1",
           "--cache", str(cache), "--out", str(tmp_path / "pf")]
    # the reference is 40x a proxy of a few seconds: it cannot fit in 6 s, the proxy
    # (no prediction) starts at once
    proc = subprocess.run(cmd + ["--time-limit", "0.1"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "1 run(s) left" in proc.stdout and "the same command resumes" in proc.stdout
    runs = json.loads(cache.read_text())
    assert [r["epochs"] for r in runs.values()] == [2]
    assert not (tmp_path / "pf.json").exists()

    bad = subprocess.run(cmd + ["--time-limit", "0"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "--time-limit must be a positive" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert json.loads(cache.read_text()) == runs  # nothing saved is lost


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids |= {int(k) for k in (task / "children").read_text().split()}
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _long_run_after_its_first_proxy(cache: Path, tmp_path: Path) -> subprocess.Popen:
    """A 2-worker run whose references take minutes, once a proxy has finished (so the
    cache holds one run and the workers are training)."""
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "proxy_fidelity.py"), "--study", "digits",
         "--samples", "2", "--baselines", "--factor", "40", "--jobs", "2",
         "--cache", str(cache), "--out", str(tmp_path / "pf")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if "study/s0" in line:
            break
    return proc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_run_ends_its_training_workers_and_keeps_what_finished(tmp_path, sig):
    """Killed (SIGTERM as Ctrl-C; SIGKILL with no say), the script's training processes
    end too instead of holding the cores for results that have nowhere to go."""
    cache = tmp_path / "runs.json"
    proc = _long_run_after_its_first_proxy(cache, tmp_path)
    workers = _children(proc.pid)
    assert workers, "no training processes found"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)
    assert len(json.loads(cache.read_text())) >= 1  # the finished proxy is kept
    if sig == signal.SIGTERM:
        assert proc.returncode == 130 and "the same command resumes" in err
        assert "Traceback" not in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_training_process_killed_from_outside_is_one_message_not_a_traceback(tmp_path):
    """The kernel's OOM killer takes a worker: the script says so, keeps what finished."""
    cache = tmp_path / "runs.json"
    proc = _long_run_after_its_first_proxy(cache, tmp_path)
    workers = [w for w in _children(proc.pid)
               if "spawn_main" in Path(f"/proc/{w}/cmdline").read_text()]
    assert workers
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "a training process died" in err and "Traceback" not in err
    assert len(json.loads(cache.read_text())) >= 1
