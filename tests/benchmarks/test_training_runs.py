"""The proxy-fidelity benchmark's run scheduler: which run starts before a deadline, and a
real time-limited run through the script's command line (it keeps what finished and says
how to resume)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

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
