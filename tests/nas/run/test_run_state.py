"""A finished REAL search (local Ray, SQLite, the tiny synthetic study) read and resumed
as a user would, through the command line: the read-only verbs on a run directory
nobody may write to (a chmod'ed copy read by an unprivileged user, and a read-only
mount read by root, who ignores permission bits), `--resume --budget` as a total,
output errors, a closed pipe, the driver's state; and a study whose constraints nothing
meets, which stops early saying which limit failed how."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

TINY = Path(__file__).parents[1] / "data" / "tiny_search.yaml"
PY = [sys.executable, "-m", "nas.cli"]


def nas(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*PY, *argv], capture_output=True, text=True, timeout=900,
                          **kwargs)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` and a hash of its bytes: what 'nothing written' means."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    root = tmp_path_factory.mktemp("state")
    run = root / "run"
    proc = nas("search", str(TINY), "-o", str(run), "--budget", "3trials")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, proc


def test_search_says_where_it_writes_first_and_no_ray_token_notice(search):
    run, proc = search
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"run directory {run}"), proc.stderr[:500]
    assert "Token authentication" not in proc.stderr
    meta = json.loads((run / "run.json").read_text())
    assert meta["last_stop"]["reason"] == "budget"
    status = json.loads(nas("status", str(run), "--json").stdout)
    assert status["driver"]["state"] == "stopped" and status["counts"]["running"] == 0


def _unprivileged(argv: list[str]) -> list[str]:
    """``argv`` run as nobody when we are root (chmod means nothing to root)."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]


def _can_run_unprivileged() -> bool:
    """Can ``_unprivileged`` run this interpreter with its packages? Not where the
    environment itself is private to root (CI builds its venv in a 0700 temp dir); the
    read-only mount still proves the point there."""
    probe = subprocess.run(_unprivileged([sys.executable, "-c", "import torch, optuna, nas"]),
                           capture_output=True, cwd="/")
    return probe.returncode == 0


def _read_only_mount(path: Path, argv: list[str]) -> list[str]:
    """``argv`` run as root in a private mount namespace where ``path`` is bind-mounted
    read-only: writes fail with EROFS even for root."""
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", script, "sh", str(path), *argv]


def _ways_to_forbid_writes(tmp_path: Path, run: Path):
    """(name, copy of the run, wrap) for each way the run dir is made unwritable."""
    ways = []
    if _can_run_unprivileged():
        chmodded = tmp_path / "chmod" / "run"
        shutil.copytree(run, chmodded)
        subprocess.run(["chmod", "-R", "a-w", str(chmodded)], check=True)
        ways.append(("chmod", chmodded, _unprivileged))
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("root without unshare: cannot make a directory read-only for root")
        mounted = tmp_path / "mount" / "run"
        shutil.copytree(run, mounted)
        ways.append(("ro-mount", mounted, lambda argv, p=mounted: _read_only_mount(p, argv)))
    for parent in (tmp_path / "chmod", tmp_path / "mount"):
        if parent.exists():
            os.chmod(parent, 0o755)
    if not ways:
        pytest.skip("no way to make a directory unwritable here (not root, and this "
                    "user's own files stay writable to it)")
    return ways


@pytest.fixture
def shared_tmp():
    """A scratch directory another user can reach (pytest's own is private to us)."""
    path = Path(tempfile.mkdtemp(prefix="nas-readonly-"))
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
    shutil.rmtree(path, ignore_errors=True)


def test_read_only_run_directory(search, shared_tmp):
    run, _ = search
    tmp_path = shared_tmp
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    env = {**os.environ, "MPLCONFIGDIR": str(out / "mpl"), "HOME": str(out)}
    for name, copy, wrap in _ways_to_forbid_writes(tmp_path, run):
        before = snapshot(copy)
        # the guard itself: this user really cannot write there
        touch = subprocess.run(wrap(["touch", str(copy / "probe")]), capture_output=True)
        assert touch.returncode != 0, f"{name}: the run directory is writable"

        status = subprocess.run(wrap([*PY, "status", str(copy), "--json"]),
                                capture_output=True, text=True, env=env)
        assert status.returncode == 0, (name, status.stderr[-2000:])
        assert json.loads(status.stdout)["counts"]["total"] >= 3
        pareto = subprocess.run(wrap([*PY, "pareto", str(copy), "--json"]),
                                capture_output=True, text=True, env=env)
        assert pareto.returncode == 0, (name, pareto.stderr[-2000:])
        assert json.loads(pareto.stdout)["front"]
        report = subprocess.run(wrap([*PY, "report", str(copy), "-o", str(out / f"{name}.html")]),
                                capture_output=True, text=True, env=env)
        assert report.returncode == 0, (name, report.stderr[-2000:])
        assert "<html" in (out / f"{name}.html").read_text()
        # an output inside the read-only run: one line, exit 2
        inside = subprocess.run(wrap([*PY, "export", str(copy), "--pick", "knee", "-o",
                                      str(copy / "exports" / "x.yaml")]),
                                capture_output=True, text=True, env=env)
        assert inside.returncode == 2 and "Traceback" not in inside.stderr, inside.stderr
        assert f"-o {copy / 'exports' / 'x.yaml'}: cannot write it" in inside.stderr
        assert snapshot(copy) == before, f"{name}: the read-only verbs wrote to the run"


def test_resume_budget_is_a_total_and_is_not_rewritten(search):
    run, _ = search
    before = (run / "run.json").read_bytes()
    proc = nas("search", "--resume", str(run), "--budget", "2trials")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert ("--budget 2trials: a budget is the run's total, and this run has already "
            "spent 3 trials (saved budget: 3trials)") in proc.stderr
    assert (run / "run.json").read_bytes() == before


def test_output_errors_and_closed_pipe(search, tmp_path):
    run, _ = search
    report = nas("report", str(run), "-o", str(tmp_path))
    assert report.returncode == 2 and "Traceback" not in report.stderr
    assert f"-o {tmp_path}: is a directory; give a file name" in report.stderr
    (tmp_path / "d.png").mkdir()
    plot = nas("pareto", str(run), "--plot", str(tmp_path / "d.png"))
    assert plot.returncode == 2 and "Traceback" not in plot.stderr
    assert f"--plot {tmp_path / 'd.png'}: is a directory" in plot.stderr
    proc = subprocess.Popen([*PY, "pareto", str(run), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # `| head` that has already gone
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141 and "Traceback" not in err, err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a CPU-only machine")
def test_rank_device_cuda_without_one(search):
    run, _ = search
    proc = nas("rank", str(run), "--device", "cuda")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--device cuda: this machine has no CUDA device" in proc.stderr


def test_hopeless_constraints_stop_early_and_say_why(tmp_path):
    study = yaml.safe_load(TINY.read_text())
    study["constraints"] = {"params": 100}
    path = tmp_path / "hopeless.yaml"
    path.write_text(yaml.safe_dump(study))
    run = tmp_path / "run"
    proc = nas("search", str(path), "-o", str(run), "--budget", "200trials",
               "--executor", "local")
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("nas search: error: stopped early: 0 of ")
    assert "candidates met the constraints:" in last and "over params (smallest " in last
    assert "> 100)" in last
    status = json.loads(nas("status", str(run), "--json").stdout)
    assert status["counts"]["complete"] == 0 and status["counts"]["infeasible"] >= 1
    assert status["counts"]["total"] < 200  # it did not spend the budget
    meta = json.loads((run / "run.json").read_text())
    assert meta["last_stop"]["reason"] == "constraints"
    assert meta["last_stop"]["why"] in last


def test_status_while_the_search_creates_its_storage(tmp_path):
    """`nas status` between the database file's creation and its tables' (a search just
    starting): an empty run, not a traceback (Optuna's reader tried to write its version
    row into the read-only file; seen as a race in the two-node test)."""
    import sqlite3

    from nas.run.rundir import RunDir

    run = RunDir.create(tmp_path / "run", yaml.safe_load(TINY.read_text()),
                        optuna_study="tiny", storage=None, seed=0, budget="3trials")
    sqlite3.connect(run.path / "optuna.db").execute("CREATE TABLE x (a INTEGER)").close()
    proc = nas("status", str(run.path), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = json.loads(proc.stdout)
    assert status["counts"]["total"] == 0 and "Traceback" not in proc.stderr
