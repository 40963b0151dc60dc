"""The device-time ledger of a search: what each trial attempt cost, persisted.

One JSON line per trial attempt, appended and fsync'ed before the search goes on, so a
driver killed with ``kill -9`` loses at most the attempts it had not finished yet, and a
resumed search continues the same ledger. The file is append-only: nothing is rewritten.

Accounting rules (what a user needs to know to read the numbers):

- ``device_s = wall_s x devices``. ``wall_s`` is the attempt's own wall time (from the
  moment its worker started the trial, pre-training checks included, to its last report
  or its end); ``devices`` is what the attempt held: its GPUs (fractions allowed, e.g.
  ``gpus_per_trial: 0.5`` counts half a device), or ONE device for a CPU-only worker
  whatever its CPU count. Time Ray spends between trials (scheduling, actor start) is the
  framework's overhead, not a trial's, and is not charged.
- One entry per attempt, keyed by ``(trial, attempt)`` where ``trial`` is the Optuna trial
  number: a worker that died and was retried gives two entries for one trial; a key
  already in the ledger is refused, so no attempt is ever counted twice.
- An attempt cut short by the death of the driver itself (Ctrl-C twice, ``kill -9``,
  a cluster time limit) is charged when the search resumes, as status ``interrupted``,
  with the wall time from its start to its last event in the trial log (a lower bound:
  what ran after the last event is not known).
- Duplicates (an architecture already evaluated) are never trained and cost nothing: they
  have no entry.

A line that does not parse (the last line of a ledger whose writer was killed mid-write)
is skipped when reading.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LedgerEntry:
    trial: int  # Optuna trial number
    attempt: int  # 1, 2, ... within that trial
    status: str  # the attempt's outcome: ok, stopped, infeasible, oom, error, ...
    wall_s: float
    devices: float
    device_s: float
    session: int = 0  # which driver session (0 = first run, 1 = first resume, ...)
    time: float = field(default_factory=time.time)  # when it was written (unix seconds)
    executor_id: str | None = None  # the executor's trial id (Ray's, or local-N)
    hash: str | None = None

    @classmethod
    def make(cls, trial: int, attempt: int, status: str, wall_s: float, devices: float,
             **extra: Any) -> LedgerEntry:
        wall_s = max(0.0, float(wall_s))
        return cls(trial=trial, attempt=attempt, status=status, wall_s=wall_s,
                   devices=float(devices), device_s=wall_s * float(devices), **extra)


class Ledger:
    """Read the ledger file at ``path`` and append to it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._entries: list[LedgerEntry] = []
        self._keys: set[tuple[int, int]] = set()
        # running totals: the core reads them at every proposal and tell, and a long
        # search has tens of thousands of entries (benchmarks/driver_scale.py)
        self._by_trial: dict[int, float] = {}
        self._attempts: dict[int, int] = {}
        self._spent = 0.0
        for entry in _read(self.path):
            self._add(entry)

    def _add(self, entry: LedgerEntry) -> None:
        self._entries.append(entry)
        self._keys.add((entry.trial, entry.attempt))
        self._by_trial[entry.trial] = self._by_trial.get(entry.trial, 0.0) + entry.device_s
        self._attempts[entry.trial] = self._attempts.get(entry.trial, 0) + 1
        self._spent += entry.device_s

    @property
    def entries(self) -> list[LedgerEntry]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, entry: LedgerEntry) -> bool:
        """Write one attempt durably. Returns False (and writes nothing) when that
        ``(trial, attempt)`` is already in the ledger."""
        key = (entry.trial, entry.attempt)
        if key in self._keys:
            return False
        line = json.dumps(asdict(entry), sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self._add(entry)
        return True

    def attempts(self, trial: int) -> int:
        """How many attempts of ``trial`` are recorded."""
        return self._attempts.get(trial, 0)

    def spent_device_s(self) -> float:
        return self._spent

    def device_s(self, trial: int) -> float:
        """Device seconds of one Optuna trial number (all its attempts)."""
        return self._by_trial.get(trial, 0.0)

    def by_trial(self) -> dict[int, float]:
        """Device seconds per Optuna trial number (all its attempts)."""
        return dict(self._by_trial)


def _read(path: Path) -> Iterable[LedgerEntry]:
    if not path.exists():
        return
    names = set(LedgerEntry.__dataclass_fields__)
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                raw = json.loads(line)
                if "ray_trial_id" in raw:  # the name before executors other than Ray
                    raw.setdefault("executor_id", raw.pop("ray_trial_id"))
                yield LedgerEntry(**{k: v for k, v in raw.items() if k in names})
            except (ValueError, TypeError):
                continue  # a torn last line from a killed writer
