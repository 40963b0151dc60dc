"""Opening an Optuna storage on a database SERVER (``--storage postgresql://...``), shared
by several drivers; ``nas.search.open_storage`` calls this for every non-SQLite URL (the
run directory's SQLite file is its own business there).

``open_server_storage(url)`` returns a plain ``optuna.storages.RDBStorage`` (so the study
opens in optuna-dashboard as is) with two things a shared server needs:

- Creating Optuna's tables on an EMPTY database is not safe when two drivers do it at
  once (PostgreSQL: ``duplicate key value violates unique constraint
  "pg_type_typname_nsp_index"`` from two ``CREATE TYPE studydirection``). On PostgreSQL
  the creation runs under a session advisory lock, so the second driver waits and then
  finds the tables; on other servers a creation that lost such a race is retried.
- ``pool_pre_ping``: connections the server (or a firewall) dropped while a long trial
  ran are replaced instead of failing the next tell.

Why no Optuna heartbeat (``RDBStorage(heartbeat_interval=...)``): in this project the
DRIVER tells every trial (workers never write to the storage), and only one driver uses a
run at a time (the run directory's lock). Trials left RUNNING by a driver that died are
exactly those the next ``nas search --resume`` finds RUNNING, and
``NasSearcher.recover`` fails and re-enqueues them; a heartbeat would only repeat that
(and Optuna records heartbeats only inside ``study.optimize``, which the search does not
use).
"""

from __future__ import annotations

import random
import time
from typing import Any

#: advisory-lock key under which PostgreSQL schema creation is serialised ("nas-optuna").
_PG_LOCK_KEY = 0x6E61_732D_6F70
_RETRIES = 5


def open_server_storage(url: str) -> Any:
    """An ``RDBStorage`` for ``url``; its tables created safely (see the module doc)."""
    import optuna
    from sqlalchemy.engine import make_url

    kwargs: dict[str, Any] = {"engine_kwargs": {"pool_pre_ping": True}}
    if make_url(url).get_backend_name() == "postgresql":
        with _pg_advisory_lock(url):
            return optuna.storages.RDBStorage(url, **kwargs)
    return open_with_retry(lambda: optuna.storages.RDBStorage(url, **kwargs))


def open_with_retry(open_storage: Any) -> Any:
    """``open_storage()``, again after a short random pause when it lost a table-creation
    race: another process (a second driver, or on SQLite a reader such as ``nas status``
    or optuna-dashboard opening a run the driver is creating) made the same tables or
    stamped the same schema version first. The retry then finds them."""
    for attempt in range(_RETRIES):
        try:
            return open_storage()
        except Exception as err:  # noqa: BLE001 - only a lost creation race is retried
            if attempt == _RETRIES - 1 or not _creation_race(err):
                raise
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


class _pg_advisory_lock:
    """Hold a PostgreSQL session advisory lock on its own connection."""

    def __init__(self, url: str):
        self.url = url

    def __enter__(self) -> None:
        from sqlalchemy import create_engine, text

        self.engine = create_engine(self.url, poolclass=_null_pool())
        self.conn = self.engine.connect()
        self.conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})

    def __exit__(self, *exc: Any) -> None:
        from sqlalchemy import text

        try:
            self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
        finally:
            self.conn.close()
            self.engine.dispose()


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool


def _creation_race(err: BaseException) -> bool:
    """Did table creation fail because another process created the same thing?"""
    text = str(err).lower()
    return any(s in text for s in ("already exists", "duplicate key", "duplicate entry",
                                   "unique constraint failed"))  # the last: SQLite
