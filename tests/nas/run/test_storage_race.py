"""Several processes opening one NEW SQLite run storage at the same moment (a driver
creating its run while `nas status` or optuna-dashboard already opens it): every one gets
the storage. Optuna creates its tables without a lock, so the losers of that race fail
with "table ... already exists" / "UNIQUE constraint failed: alembic_version" unless they
retry (6 openers lost it 16 times in 5 rounds before `nas.run.storage.open_with_retry`)."""

from __future__ import annotations

import multiprocessing as mp
import time

from nas.run.storage import open_storage

OPENERS = 6
ROUNDS = 3


def _open_at(url: str, start: float, results) -> None:
    while time.time() < start:  # all openers start together
        pass
    try:
        open_storage(url)
        results.put("ok")
    except Exception as err:  # noqa: BLE001 - reported to the test
        results.put(f"{type(err).__name__}: {err}"[:200])


def test_concurrent_openers_of_a_new_sqlite_storage_all_succeed(tmp_path):
    ctx = mp.get_context("fork")
    for round_ in range(ROUNDS):
        url = f"sqlite:///{tmp_path / f'round{round_}.db'}"
        results = ctx.Queue()
        start = time.time() + 0.5
        procs = [ctx.Process(target=_open_at, args=(url, start, results))
                 for _ in range(OPENERS)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        outcomes = [results.get(timeout=5) for _ in procs]
        assert outcomes == ["ok"] * OPENERS, outcomes
