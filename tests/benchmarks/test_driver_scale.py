"""benchmarks/driver_scale.py, tiny and simulated: the real core, SQLite storage, ledger,
budget and the study's ASHA on surrogate trials; what it reports must add up. No timing
thresholds (the benchmark measures; a shared CI machine would make them flaky). Also the
ledger's running totals, which the driver now reads instead of re-summing every entry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nas.run.ledger import Ledger, LedgerEntry

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import driver_scale  # noqa: E402


def test_sim_reports_what_the_run_did(tmp_path):
    out = driver_scale.main(["--workers", "8", "--trials", "100", "--trial-seconds", "60",
                             "--sampler", "random", "--out", str(tmp_path), "--tag", "t"])
    assert out["workers"] == 8 and out["trials"] == 100
    assert out["stop_reason"] == "budget"
    counts = out["counts"]
    assert sum(counts.get(k, 0) for k in ("complete", "infeasible", "stopped", "failed",
                                         "duplicate")) == 100
    assert counts["stopped"] > 0 and counts["complete"] > 0  # ASHA ran on the epochs
    assert counts["infeasible"] > 0  # the surrogate's checks reject some candidates
    # every trained or checked trial has one ledger entry, and the ledger adds up to the
    # time the trials reported, not merely close to it
    assert out["ledger_exact"] is True
    assert out["ledger_entries"] == out["trained_or_checked"] == 100 - counts.get("duplicate", 0)
    assert out["ledger_device_s"] == pytest.approx(out["reported_device_s"], rel=1e-9)
    # a median trial of about a minute: the sum is of that order per trial
    assert 20 < out["ledger_device_s"] / out["ledger_entries"] < 120
    assert 0 < out["utilisation"] <= 1
    assert out["trials_per_s"] > 0 and out["driver_cpu_s_per_trial"] > 0
    for key in ("ask_ms_p50", "ask_ms_p99", "ask_ms_p99_first1000", "ask_ms_p99_last1000",
                "tell_ms_p50"):
        assert out[key] is not None and out[key] > 0, key
    assert out["ask_ms_p50"] <= out["ask_ms_p99"] <= out["ask_ms_max"]
    assert out["ask_window"] == 50  # half of the asks when there are fewer than 2,000
    saved = json.loads((tmp_path / "driver_scale_sim_sqlite_t.json").read_text())
    assert saved["trials"] == 100 and saved["ledger_exact"] is True
    assert (tmp_path / "driver_scale_sim_sqlite_t.png").stat().st_size > 0


def test_bad_arguments_name_the_field():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "driver_scale.py"),
                           "--workers", "0"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "--workers: must be a positive integer" in proc.stderr


def test_ledger_running_totals_match_a_reread(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    for trial, attempt, wall in ((0, 1, 2.0), (1, 1, 3.5), (0, 2, 1.25), (2, 1, 0.0)):
        assert ledger.append(LedgerEntry.make(trial, attempt, "ok", wall, 0.5))
    assert not ledger.append(LedgerEntry.make(1, 1, "ok", 99.0, 1.0))  # counted once
    again = Ledger(path)
    for reader in (ledger, again):
        assert reader.spent_device_s() == pytest.approx(3.375)
        assert reader.by_trial() == pytest.approx({0: 1.625, 1: 1.75, 2: 0.0})
        assert reader.device_s(0) == pytest.approx(1.625) and reader.device_s(9) == 0.0
        assert [reader.attempts(t) for t in (0, 1, 2, 9)] == [2, 1, 1, 0]
    reader.by_trial()[0] = 0.0  # a copy: the totals are not the caller's to change
    assert again.device_s(0) == pytest.approx(1.625)
