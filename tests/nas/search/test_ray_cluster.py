"""One search on a REAL two-node Ray cluster (`ray start --head` + `ray start --address`,
two raylets on this machine standing in for two machines), driven by
``nas search --address``: trials land on both nodes (their provenance records the node
id), and SIGKILL of the worker node's raylet mid-search loses no completed trial (the
trial it was running is retried on the head node).

The cluster uses token authentication (Ray 2.5x+), with a token of its own in a
temporary directory passed to every node and the driver through RAY_AUTH_TOKEN_PATH.
At the end it is stopped by killing exactly the processes this test started (found by
their temp dirs, then their descendants), not with ``ray stop``, which would stop every
Ray on the machine, other test runs' included.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
import yaml

from nas.run.ledger import Ledger
from nas.run.storage import NoStorage, open_read_only

REPO = Path(__file__).resolve().parents[3]
TIMEOUT_S = 900  # a safety net against a hung cluster, not a speed requirement
BUDGET = 8

STUDY = {
    "version": 1, "name": "cluster",
    "description": "Ray cluster test: synthetic data, a few seconds per trial",
    "data": {"dataset": "synthetic",
             "synthetic": {"channels": 1, "size": [16, 16], "classes": 4, "train": 1536,
                           "val": 128, "signal": 2.0}},
    "training": {"epochs": 4, "batch_size": 32, "optimizer": "sgd", "lr": 0.05},
    "objectives": [{"metric": "accuracy", "direction": "maximize"}],
    "measure": {"batch_size": 1, "warmup": 1, "repeats": 3},
    "space": {"input": {"channels": 1, "size": [16, 16]}, "classes": 4,
              "stem": {"kind": "conv", "channels": [8, 12, 16], "kernel": 3, "stride": 1},
              "stages": [{"channels": [16, 24, 32], "depth": [1, 2], "stride": 2,
                          "blocks": ["basic"]}]},
    "sampler": {"name": "random", "seed": 0},
    "resources": {"concurrency": 2, "cpus_per_trial": 1, "gpus_per_trial": 0},
    "fidelity": {"scheduler": "none"},
    "budget": f"{BUDGET}trials",
}


# ---------------------------------------------------------------------- processes
def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        table[int(entry)] = (ppid, raw.replace(b"\0", b" ").decode(errors="replace"))
    return table


def _opens_under(pid: int, root: str) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(root):
                return True
        except OSError:
            continue
    return False


def cluster_pids(root: str) -> set[int]:
    """The processes of the Ray nodes started with --temp-dir under ``root``: those whose
    command line or open files name it (Ray's agents rename themselves, but keep their
    logs open there), and all their descendants."""
    table = _proc_table()
    me = os.getpid()
    hit = {pid for pid, (_, cmd) in table.items()
           if pid != me and (root in cmd or _opens_under(pid, root))}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), list(hit)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(children.get(pid, []))
    return out


class Cluster:
    """A head node and one worker node on this machine, each with its own temp dir."""

    def __init__(self, logs: Path):
        # short: Ray's unix socket paths must fit in 107 bytes
        self.root = tempfile.mkdtemp(prefix="nasray-", dir="/tmp")
        self.logs = logs
        token = Path(self.root) / "token"
        token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0",
                    "PYTHONUNBUFFERED": "1"}
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"

    def _ray_start(self, name: str, *args: str) -> None:
        ray = Path(sys.executable).with_name("ray")
        cmd = [str(ray), "start", "--num-cpus", "1", "--num-gpus", "0",
               "--temp-dir", f"{self.root}/{name}", "--disable-usage-stats",
               "--object-store-memory", str(100 * 2**20), *args]
        with open(self.logs / f"ray-{name}.log", "w") as log:
            done = subprocess.run(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=TIMEOUT_S)
        assert done.returncode == 0, (self.logs / f"ray-{name}.log").read_text()[-3000:]

    def start(self) -> None:
        self._ray_start("head", "--head", "--port", str(self.port),
                        "--include-dashboard=false")
        self._ray_start("worker", "--address", self.address)

    def raylet(self, name: str) -> tuple[int, str]:
        """(pid, node id) of a node's raylet."""
        for pid, (_, cmd) in _proc_table().items():
            if "/raylet/raylet " in cmd + " " and f"--temp_dir={self.root}/{name} " in cmd:
                node = next(a.split("=", 1)[1] for a in cmd.split()
                            if a.startswith("--node_id="))
                return pid, node
        raise AssertionError(f"no raylet for the {name} node")

    def running_trial_on(self, raylet_pid: int) -> bool:
        """Is a Tune trial executing in a worker process of that raylet?"""
        return any(ppid == raylet_pid and cmd.startswith("ray::ImplicitFunc.train")
                   for ppid, cmd in _proc_table().values())

    def stop(self) -> set[int]:
        """SIGKILL every process of this cluster; returns those still there after."""
        for _ in range(3):
            pids = cluster_pids(self.root)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(1.0)
        left = {p for p in cluster_pids(self.root) if _alive(p)}
        if not left:
            shutil.rmtree(self.root, ignore_errors=True)
        return left


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


@pytest.fixture
def cluster(tmp_path):
    pytest.importorskip("ray")
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        left = c.stop()
        assert not left, f"cluster processes left behind: {sorted(left)}"


# ---------------------------------------------------------------------- the test
def _trials(run: Path):
    if not (run / "run.json").exists() or not (run / "optuna.db").exists():
        return []
    meta = json.loads((run / "run.json").read_text())
    # Read as `nas status` does (never creating tables): a plain load_study here raced the
    # driver's table creation ("table study_directions already exists", seen in CI).
    try:
        storage = open_read_only(f"sqlite:///{run / 'optuna.db'}")
        return optuna.load_study(study_name=meta["optuna_study"], storage=storage).get_trials()
    except (KeyError, NoStorage, sqlalchemy.exc.OperationalError):  # not created yet
        return []


def _node(t) -> str | None:
    return (t.user_attrs.get("provenance") or {}).get("node_id")


def test_search_on_two_nodes_survives_a_killed_worker(cluster, tmp_path):
    head_pid, head_id = cluster.raylet("head")
    worker_pid, worker_id = cluster.raylet("worker")
    assert head_id != worker_id
    study_path = tmp_path / "cluster.yaml"
    study_path.write_text(yaml.safe_dump(STUDY))
    run = tmp_path / "run"
    err_log = tmp_path / "driver.err"
    with open(err_log, "w") as err:
        driver = subprocess.Popen(
            [sys.executable, "-m", "nas.cli", "search", str(study_path), "--address",
             cluster.address, "--out", str(run)],
            cwd=REPO, env=cluster.env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            # Kill the worker node once it has completed a trial AND is running another.
            deadline = time.monotonic() + TIMEOUT_S
            while True:
                assert driver.poll() is None, err_log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the worker node never ran a trial"
                done = [t for t in _trials(run)
                        if t.state == optuna.trial.TrialState.COMPLETE]
                if (any(_node(t) == worker_id for t in done)
                        and cluster.running_trial_on(worker_pid)):
                    break
                time.sleep(0.3)
            before = {t.number: (t.values, t.params) for t in done}
            os.kill(worker_pid, signal.SIGKILL)
            assert driver.wait(timeout=TIMEOUT_S) == 0, err_log.read_text()[-3000:]
        finally:
            if driver.poll() is None:
                driver.kill()

    trials = _trials(run)
    told = [t for t in trials if t.state.is_finished()
            and t.user_attrs.get("status") != "interrupted"]
    assert len(told) == BUDGET
    complete = {t.number: t for t in told if t.state == optuna.trial.TrialState.COMPLETE}
    for number, (values, params) in before.items():  # no completed trial was lost
        assert number in complete
        assert (complete[number].values, complete[number].params) == (values, params)
    nodes = {_node(t) for t in complete.values()}
    assert {head_id, worker_id} <= nodes  # trials ran on both nodes
    assert nodes <= {head_id, worker_id}
    for t in complete.values():
        assert t.user_attrs["provenance"]["hostname"] == socket.gethostname()
    # The trial the dead node was running was retried once, on the surviving head node.
    retried = [t for t in told if t.user_attrs.get("attempts") == 2]
    assert retried, [t.user_attrs.get("attempts") for t in told]
    assert all(_node(t) == head_id for t in retried if t.number in complete)
    statuses = [e.status for e in Ledger(run / "ledger.jsonl").entries]
    assert "worker_died" in statuses or "worker_error" in statuses
