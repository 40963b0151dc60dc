"""The run directory: everything about one search, so that a resume reads only it.

Layout (paths relative to RUN_DIR)::

    run.json          what the run is: Optuna study name, storage URL (null = the
                      SQLite file below), seed, budget, sessions (one per start/resume)
    study.yaml        the resolved study (Study.to_dict(): defaults filled)
    optuna.db         the Optuna storage (plain RDBStorage SQLite; opens in
                      optuna-dashboard as is: ``optuna-dashboard sqlite:///RUN_DIR/optuna.db``)
    ledger.jsonl      device time, one line per trial attempt (nas.run.ledger)
    clock.json        wall-clock time per session (wall-clock budgets)
    logs/trial-NNNNN.jsonl   per-trial event log: start, each epoch, end (one JSON a line)
    rungs.json        ASHA rungs: per rung the recorded trials, and the trials it stopped
    driver.json       the live (or last) driver: pid, host, Ray session and Ray process
                      ids, so a resume can clean up after a driver killed with kill -9
    exports/ plots/   for `nas export` and plots
    ray/              Ray Tune's own results, one folder per session

Only one driver may use a run directory at a time: it holds an exclusive ``flock`` on
``.lock`` (released by the kernel even when the driver is killed).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError

RUN_JSON = "run.json"
STUDY_YAML = "study.yaml"
OPTUNA_DB = "optuna.db"
LEDGER = "ledger.jsonl"
CLOCK = "clock.json"
RUNGS = "rungs.json"
RUNG_LOG = "rungs.jsonl"
DRIVER = "driver.json"
LOCK = ".lock"


def default_run_dir(study_name: str, root: str | Path = "runs") -> Path:
    """``runs/<study>-<YYYYmmdd-HHMMSS>`` (with a numeric suffix if that exists)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{study_name}-{stamp}"
    path, k = base, 1
    while path.exists():
        path, k = Path(f"{base}-{k}"), k + 1
    return path


class RunDir:
    """Paths and small persisted files of one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ paths
    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def ledger_path(self) -> Path:
        return self.path / LEDGER

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def ray_dir(self) -> Path:
        return self.path / "ray"

    @property
    def exports_dir(self) -> Path:
        return self.path / "exports"

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    def trial_log(self, number: int) -> Path:
        return self.logs_dir / f"trial-{number:05d}.jsonl"

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(cls, path: str | Path, study_dict: dict[str, Any], *, optuna_study: str,
               storage: str | None, seed: int, budget: str) -> RunDir:
        """Make a new run directory; refuses one that already holds a run."""
        run = cls(path)
        if (run / RUN_JSON).exists():
            raise UserError(f"--out: {run.path} already holds a search; resume it with "
                            f"`nas search --resume {run.path}` or choose another --out")
        if run.path.exists() and not run.path.is_dir():
            raise UserError(f"--out: {run.path} exists and is not a directory")
        for sub in (run.path, run.logs_dir, run.exports_dir, run.plots_dir, run.ray_dir):
            sub.mkdir(parents=True, exist_ok=True)
        _atomic_write(run / STUDY_YAML, yaml.safe_dump(study_dict, sort_keys=False))
        meta = {"version": 1, "optuna_study": optuna_study, "storage": storage,
                "seed": seed, "budget": budget, "created": time.time(), "sessions": []}
        _atomic_write(run / RUN_JSON, json.dumps(meta, indent=2))
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run directory; a UserError says what is missing."""
        run = cls(path)
        if run.path.is_file():
            raise UserError(f"{path} is not a nas run directory (it is a file)")
        if not run.path.is_dir():
            raise UserError(f"run directory {str(path)!r} does not exist")
        for name in (RUN_JSON, STUDY_YAML):
            if not (run / name).is_file():
                raise UserError(f"{run.path} is not a nas run directory (no {name})")
        try:
            run.meta()
        except ValueError:
            raise UserError(f"{run / RUN_JSON} is not valid JSON") from None
        return run

    def meta(self) -> dict[str, Any]:
        return json.loads((self / RUN_JSON).read_text())

    def update_meta(self, **changes: Any) -> dict[str, Any]:
        meta = self.meta()
        meta.update(changes)
        _atomic_write(self / RUN_JSON, json.dumps(meta, indent=2))
        return meta

    def study_dict(self) -> dict[str, Any]:
        return yaml.safe_load((self / STUDY_YAML).read_text())

    def storage_url(self) -> str:
        """The Optuna storage URL: run.json's, or the run's own SQLite file."""
        return self.meta().get("storage") or f"sqlite:///{self / OPTUNA_DB}"

    def reader_storage(self) -> Any:
        """The Optuna storage opened for reading only (works without write access)."""
        from .storage import open_read_only

        return open_read_only(self.storage_url())

    def start_session(self) -> int:
        """Record a new driver session (0 = the first run); returns its index."""
        meta = self.meta()
        index = len(meta["sessions"])
        meta["sessions"].append({"index": index, "started": time.time(), "pid": os.getpid(),
                                 "host": socket.gethostname()})
        self.update_meta(sessions=meta["sessions"])
        return index

    # ------------------------------------------------------------------ wall clock
    def clock(self) -> dict[str, dict[str, float]]:
        try:
            return json.loads((self / CLOCK).read_text())
        except (OSError, ValueError):
            return {}

    def tick(self, session: int, started: float) -> None:
        """Record that ``session`` (started at ``started``) is alive now."""
        clock = self.clock()
        clock[str(session)] = {"start": started, "last": time.time()}
        _atomic_write(self / CLOCK, json.dumps(clock))

    def wall_spent(self) -> float:
        """Elapsed wall time summed over all sessions (each to its last tick)."""
        return sum(max(0.0, s["last"] - s["start"]) for s in self.clock().values())

    # ------------------------------------------------------------------ logs
    def log_event(self, number: int, event: dict[str, Any]) -> None:
        """Append one event to a trial's log (flushed: it survives a kill -9)."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"t": time.time(), **event}, sort_keys=True, default=str)
        with open(self.trial_log(number), "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def read_log(self, number: int) -> list[dict[str, Any]]:
        return read_jsonl(self.trial_log(number))

    def write_rungs(self, rungs: dict[str, Any]) -> None:
        _atomic_write(self / RUNGS, json.dumps(rungs, indent=2))

    def log_rung(self, decision: dict[str, Any]) -> None:
        """Append one ASHA decision to the rung log (one line: O(1) however long the
        search; rungs.json, the snapshot, is rewritten at most once a second)."""
        with open(self / RUNG_LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(decision, sort_keys=True) + "\n")

    def read_rung_log(self) -> list[dict[str, Any]]:
        return read_jsonl(self / RUNG_LOG)

    # ------------------------------------------------------------------ driver lock
    def acquire(self) -> None:
        """Hold the run's lock for this process; UserError if another driver has it."""
        fd = os.open(self / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = self.driver().get("pid", "?")
            raise UserError(f"{self.path} is in use by another `nas search` "
                            f"(pid {other}); wait for it or stop it first") from None
        self._lock_fd = fd

    def lock_held(self) -> bool:
        """Does a driver hold the run's lock now? Read-only: opens ``.lock`` for reading
        only (so it works in a run directory nobody may write to) and tries a shared
        lock, which conflicts with a driver's exclusive one."""
        try:
            fd = os.open(self / LOCK, os.O_RDONLY)
        except OSError:  # no lock file: no driver ever ran here
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def driver(self) -> dict[str, Any]:
        try:
            return json.loads((self / DRIVER).read_text())
        except (OSError, ValueError):
            return {}

    def write_driver(self, info: dict[str, Any]) -> None:
        _atomic_write(self / DRIVER, json.dumps(info, indent=2))

    def driver_state(self, meta: dict[str, Any], running: int = 0) -> dict[str, Any]:
        """Whether a driver runs the search now ("running"), ended ("stopped": its last
        session ended in ``last_stop``) or died without ending it ("gone": ``kill -9``, a
        crash, a reboot). The run's lock says it (the kernel drops it when the driver dies);
        ``driver.json`` says who. Runs from before ``last_stop`` was kept count as gone
        only when Optuna still has trials running."""
        info = self.driver()
        out: dict[str, Any] = {k: info[k] for k in ("pid", "host", "session") if k in info}
        if self.lock_held():
            out["state"] = "running"
            return out
        sessions = meta.get("sessions", [])
        last = meta.get("last_stop") or {}
        if "last_stop" in meta:
            ended = not sessions or last.get("time", 0) >= sessions[-1].get("started", 0)
        else:
            ended = not running
        out["state"] = "stopped" if ended else "gone"
        if out["state"] == "gone":
            out["resume"] = f"nas search --resume {self.path}"
        return out

    def reap_stale_ray(self) -> list[int]:
        """Kill the Ray processes a dead driver of this run left behind.

        ``driver.json`` lists the processes the driver's local Ray cluster started
        (pid + kernel start time, so a recycled pid is never touched). Most die with the
        driver; Ray's dashboard and runtime-env agents outlive a ``kill -9``d driver.
        Nothing is touched while the recorded driver still runs (e.g. this very
        process, resuming in-process with its Ray still up). Returns the pids it killed.
        """
        info = self.driver()
        if info.get("host") not in (None, socket.gethostname()):
            return []
        if "pid" in info and process_alive(int(info["pid"]), info.get("pid_start")):
            return []
        procs = [(int(p["pid"]), p.get("start")) for p in info.get("ray_processes", [])]
        return kill_processes([(pid, start) for pid, start in procs if pid != os.getpid()])


# ---------------------------------------------------------------------- processes
def process_start(pid: int) -> int | None:
    """The kernel start time of ``pid`` (clock ticks since boot), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[19])


def process_alive(pid: int, start: int | None = None) -> bool:
    """Is ``pid`` running (not a zombie) and, when ``start`` is given, the same process?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return False
    return start is None or int(fields[19]) == int(start)


def kill_processes(procs: Any) -> list[int]:
    """SIGKILL each (pid, start time) that is still that same process (a pid the kernel
    reused for another process is left alone); returns the pids killed."""
    killed = []
    for pid, start in procs:
        if not process_alive(pid, start):
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed


def descendants(pid: int) -> list[dict[str, Any]]:
    """Processes below ``pid`` (from /proc): pid, start time and name of each."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1:stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2:].split()
        child = int(entry)
        children.setdefault(int(fields[1]), []).append(child)
        names[child], starts[child] = name, int(fields[19])
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append({"pid": p, "start": starts[p], "name": names[p]})
        todo.extend(children.get(p, []))
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file ([] when missing); a torn line (a writer killed
    mid-write) is skipped rather than failing the reader."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
