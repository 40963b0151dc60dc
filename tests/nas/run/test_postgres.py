"""Optuna storage on a REAL PostgreSQL server (``nas search --storage postgresql://...``):
two `nas search` drivers at once on one database, one of them with two concurrent
trials, no lock errors, then ``--resume`` continues the same study in the same database.

The server: the URL in ``$NAS_TEST_POSTGRES_URL`` or ``.ci/state/postgres.url`` (written
by ``.ci/services``), else one this module starts itself from the PostgreSQL binaries
(``/usr/lib/postgresql/*/bin``) in a temporary directory; skipped, with the reason, only
when neither works. Each run of the module uses a fresh database, dropped at the end.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import yaml

from nas.run.ledger import Ledger

REPO = Path(__file__).resolve().parents[3]
STATE = REPO / ".ci" / "state"
TIMEOUT_S = 900  # a safety net against a hung driver, not a speed requirement

STUDY = {
    "version": 1, "name": "pg",
    "description": "PostgreSQL storage test: synthetic data, tiny networks",
    "data": {"dataset": "synthetic",
             "synthetic": {"channels": 1, "size": [8, 8], "classes": 4, "train": 128,
                           "val": 64, "signal": 2.0}},
    "training": {"epochs": 2, "batch_size": 32, "optimizer": "sgd", "lr": 0.05},
    "objectives": [{"metric": "accuracy", "direction": "maximize"},
                   {"metric": "params", "direction": "minimize"}],
    "measure": {"batch_size": 1, "warmup": 1, "repeats": 3},
    "space": {"input": {"channels": 1, "size": [8, 8]}, "classes": 4,
              "stem": {"kind": "conv", "channels": [4, 8], "kernel": 3, "stride": 1},
              "stages": [{"channels": [8, 16], "depth": [1, 2], "stride": 2,
                          "blocks": ["basic"]}]},
    "sampler": {"name": "random", "seed": 0},
    "resources": {"concurrency": 2, "cpus_per_trial": 1, "gpus_per_trial": 0},
    "fidelity": {"scheduler": "none"},
    "budget": "4trials",
}


# ---------------------------------------------------------------------- the server
def _reachable(url: str) -> str | None:
    """None when a connection works, else why not."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as err:
        return str(err).strip().splitlines()[0]
    return None


def _pg_bin() -> Path | None:
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / "pg_ctl").exists() and (d / "initdb").exists():
            return d
    found = shutil.which("pg_ctl")
    if found and (Path(found).resolve().parent / "initdb").exists():
        return Path(found).resolve().parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_own_server():
    """(url, stop) of a throw-away server, or (None, reason)."""
    bindir = _pg_bin()
    if bindir is None:
        return None, "no PostgreSQL server binaries (pg_ctl, initdb) on this machine"
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: use the packaged unprivileged user
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return None, "running as root and no 'postgres' user to run initdb as"
        prefix = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="nas-pg-test-"))
    root.chmod(0o755)
    if prefix:
        shutil.chown(root, user="postgres")
    port = _free_port()
    data, log = root / "data", root / "server.log"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)

    steps = [
        [str(bindir / "initdb"), "-D", str(data), "-U", "nas", "--auth=trust", "-E", "UTF8"],
        [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
         f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off", "start"],
        [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "nas",
         "nas_test"],
    ]
    for step in steps:
        done = run(*step)
        if done.returncode != 0:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
            shutil.rmtree(root, ignore_errors=True)
            return None, f"{Path(step[0]).name} failed: {(done.stderr or done.stdout).strip()}"

    def stop() -> None:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)

    return f"postgresql://nas@127.0.0.1:{port}/nas_test", stop


@pytest.fixture(scope="module")
def pg_server():
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install "
                                          "'convattn-nas[postgres]')")
    reasons = []
    given = os.environ.get("NAS_TEST_POSTGRES_URL")
    if not given and (STATE / "postgres.url").is_file():
        given = (STATE / "postgres.url").read_text().strip()
    if given:
        problem = _reachable(given)
        if problem is None:
            yield given
            return
        reasons.append(f"{given} is not reachable ({problem})")
    url, stop = _start_own_server()
    if url is None:
        reasons.append(stop)
        if (STATE / "postgres.skip").is_file():
            reasons.append(".ci/services: " + (STATE / "postgres.skip").read_text().strip())
        pytest.skip("no PostgreSQL server could be used or started: " + "; ".join(reasons))
    try:
        yield url
    finally:
        stop()


@contextlib.contextmanager
def _fresh_database(server_url: str):
    """A new, empty database on the server (its URL), dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"nas_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def pg_url(pg_server):
    with _fresh_database(pg_server) as url:
        yield url


# ---------------------------------------------------------------------- helpers
def _nas(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "nas.cli", "search", *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"nas search failed ({proc.returncode}):\n{err[-3000:]}"
    for word in ("deadlock", "could not obtain lock", "database is locked",
                 "OperationalError", "Traceback"):
        assert word not in err, err[-3000:]
    return out + err


def _trials(run: Path, url: str):
    meta = json.loads((run / "run.json").read_text())
    assert meta["storage"] == url
    return optuna.load_study(study_name=meta["optuna_study"], storage=url).get_trials()


def _told(trials):
    return [t for t in trials if t.state.is_finished()
            and t.user_attrs.get("status") != "interrupted"]


def _attempts(run: Path) -> list[tuple[float, float]]:
    """(start, end) time of every trial attempt, from the per-trial logs."""
    spans = []
    for log in sorted((run / "logs").glob("trial-*.jsonl")):
        events = [json.loads(line) for line in log.read_text().splitlines() if line]
        starts = [e["t"] for e in events if e.get("event") == "start"]
        if starts:
            spans.append((min(starts), max(e["t"] for e in events)))
    return spans


# ---------------------------------------------------------------------- the test
def test_two_drivers_concurrent_trials_and_resume_on_postgres(pg_url, tmp_path):
    study_path = tmp_path / "pg.yaml"
    study_path.write_text(yaml.safe_dump(STUDY))
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    driver_a = _nas(str(study_path), "--storage", pg_url, "--out", str(run_a),
                    "--concurrency", "2", "--budget", "4trials")
    driver_b = _nas(str(study_path), "--storage", pg_url, "--out", str(run_b),
                    "--concurrency", "1", "--budget", "3trials")
    _finish(driver_a)
    _finish(driver_b)

    for run, budget in ((run_a, 4), (run_b, 3)):
        assert not (run / "optuna.db").exists()  # the storage is the server, not SQLite
        told = _told(_trials(run, pg_url))
        assert len(told) == budget
        for t in told:  # each told with its values (feasible or not), none failed
            assert t.state == optuna.trial.TrialState.COMPLETE, t.user_attrs
            assert t.user_attrs["status"] in ("ok", "infeasible", "duplicate")
            assert len(t.values) == 2
    names = {json.loads((r / "run.json").read_text())["optuna_study"] for r in (run_a, run_b)}
    assert len(names) == 2  # two studies side by side in one database
    assert {s.study_name for s in optuna.get_all_study_summaries(pg_url)} >= names

    spans = sorted(_attempts(run_a))
    overlapped = any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))
    assert overlapped, spans  # two trials of driver A ran at the same time

    before = {t.number: (t.params, t.values) for t in _told(_trials(run_a, pg_url))}
    _finish(_nas("--resume", str(run_a), "--budget", "5trials"))
    trials = _trials(run_a, pg_url)
    told = _told(trials)
    assert len(told) == 5
    assert len({t.number for t in trials}) == len(trials)
    after = {t.number: (t.params, t.values) for t in told}
    assert all(after[n] == before[n] for n in before)  # every earlier trial kept as it was
    ledger = Ledger(run_a / "ledger.jsonl")
    keys = [(e.trial, e.attempt) for e in ledger.entries]
    trained = [t for t in told if t.user_attrs["status"] != "duplicate"]
    assert len(keys) == len(set(keys)) >= len(trained)  # one entry per attempt, none twice
    assert len(json.loads((run_a / "run.json").read_text())["sessions"]) == 2


def _open_and_create(url: str, name: str) -> int:
    from nas.run.storage import open_storage

    study = optuna.create_study(study_name=name, storage=open_storage(url),
                                load_if_exists=True)
    return study._study_id


def test_concurrent_first_opens_of_an_empty_database(pg_server):
    """Four processes opening the same EMPTY database at once: Optuna's table creation
    races (two CREATE TYPE studydirection) unless serialised (nas.run.storage)."""
    with _fresh_database(pg_server) as url:
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            ids = pool.starmap(_open_and_create, [(url, f"s{i}") for i in range(4)])
        assert len(set(ids)) == 4
        names = {s.study_name for s in optuna.get_all_study_summaries(url)}
        assert names == {"s0", "s1", "s2", "s3"}


def test_the_drivers_storage_equals_the_database_on_postgres(pg_server):
    """SoleWriterStorage's batched writes (PostgreSQL's upsert) read back as written."""
    from nas.run.sole_writer import SoleWriterStorage
    from nas.run.storage import open_storage
    from tests.nas.run.test_sole_writer import _comparable, _drive

    with _fresh_database(pg_server) as url:
        study = optuna.create_study(storage=SoleWriterStorage(open_storage(url)),
                                    study_name="sole")
        _drive(study)
        trial = study.get_trials(deepcopy=False)[-1]
        study._storage.set_trial_user_attr(trial._trial_id, "hash", "a")
        study._storage.flush()
        study._storage.set_trial_user_attr(trial._trial_id, "hash", "b")  # an update
        study._storage.flush()
        mine = [_comparable(t) for t in study.get_trials()]
        theirs = optuna.load_study(study_name="sole", storage=open_storage(url)).get_trials()
        assert mine == [_comparable(t) for t in theirs]
        assert theirs[-1].user_attrs["hash"] == "b" and len(theirs) == 7
        study._storage._backend.engine.dispose()
