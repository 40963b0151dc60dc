"""benchmarks/search_efficiency.py --cache: a comparison resumed from the cache file alone
(its run directories gone, as on another machine) runs nothing again and gives the same
analysis; a run of another study version is not taken from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "search_efficiency.py"


def _run(tmp: Path, workdir: str, out: str, *extra: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--fast", "--budget", "6gpusec", "--seeds", "0",
         "--strategies", "random", "--workdir", str(tmp / workdir),
         "--cache", str(tmp / "runs.json"), "--out", str(tmp / out), *extra],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_a_cached_comparison_resumes_without_its_run_directories(tmp_path):
    first = _run(tmp_path, "w1", "first")
    assert "running" in first
    cached = json.loads((tmp_path / "runs.json").read_text())
    assert len(cached) == 1
    (record,) = cached.values()
    assert record["events"] and record["counts"]["total"] >= 1

    again = _run(tmp_path, "w2", "again")
    assert "running" not in again and not (tmp_path / "w2").exists()
    a = json.loads((tmp_path / "first.json").read_text())
    b = json.loads((tmp_path / "again.json").read_text())
    assert a["analysis"] == b["analysis"]
    assert [r["trial_costs"] for r in a["runs"]] == [r["trial_costs"] for r in b["runs"]]

    # --no-run analyses what the cache holds and lists what it lacks, running nothing
    partial = _run(tmp_path, "w4", "partial", "--no-run", "--seeds", "0", "1")
    assert "random seed 1: not in" in partial and "running" not in partial
    assert not (tmp_path / "w4").exists()
    p = json.loads((tmp_path / "partial.json").read_text())
    assert [(r["strategy"], r["seed"]) for r in p["runs"]] == [("random", 0)]
    assert p["analysis"] == a["analysis"]

    # another version of the study (a changed sampler seed) is a different run
    other = _run(tmp_path, "w3", "other", "--strategy",
                 'random={"sampler": {"name": "random", "seed": 7}}')
    assert "running" in other
    assert len(json.loads((tmp_path / "runs.json").read_text())) == 2


def test_two_invocations_sharing_one_cache_lose_nothing(tmp_path):
    """Each put merges into the file as it is then (two processes, other seeds)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _search_runs import RunCache

    path = tmp_path / "runs.json"
    first, second = RunCache(path), RunCache(path)  # both opened before either wrote
    first.put("a", {"events": [[1.0, None, 0]]})
    second.put("b", {"events": [[2.0, [0.5, 3.0], 0]]})
    assert set(json.loads(path.read_text())) == {"a", "b"}
    assert RunCache(path).get("a") == {"events": [[1.0, None, 0]]}


def test_a_strategy_can_start_from_the_baselines(tmp_path):
    """``"with_baselines": true`` starts the search as ``nas search --with-baselines``:
    the study's baselines are its first trials, paid from the same budget."""
    import optuna

    out = _run(tmp_path, "w", "warm", "--strategies", "warm", "--strategy",
               'warm={"with_baselines": true}')
    assert "running" in out
    result = json.loads((tmp_path / "warm.json").read_text())
    assert result["started_with_baselines"] == ["warm"]
    (run_dir,) = (tmp_path / "w").glob("*/warm-seed0")
    url = f"sqlite:///{run_dir}/optuna.db"
    name = optuna.get_all_study_summaries(url)[0].study_name
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert trials[0].user_attrs.get("kind") == "baseline"
    # the ledger (the benchmark's events) charges the baseline like any trial
    assert result["runs"][0]["trial_costs"][0][0] == trials[0].number


def test_ctrl_c_keeps_the_finished_runs_and_says_how_to_go_on(tmp_path):
    """A real SIGINT during the second run: exit 130, one message naming where the
    finished run is kept, no traceback; the interrupted run is not marked finished."""
    import signal

    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--fast", "--budget", "12gpusec", "--seeds", "0",
         "1", "--strategies", "random", "--workdir", str(tmp_path / "w"),
         "--cache", str(tmp_path / "runs.json"), "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    for line in proc.stdout:
        if "random seed 0:" in line:  # the first run is done and cached
            break
    for line in proc.stdout:
        if "running" in line:  # the second has started
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert "interrupted: the finished runs are kept" in err and "runs.json" in err
    assert len(json.loads((tmp_path / "runs.json").read_text())) == 1
    assert not any((p / "bench_done.json").exists() for p in (tmp_path / "w").glob("*/*seed1"))
