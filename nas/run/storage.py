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
``SearchCore.recover`` fails and re-enqueues them; a heartbeat would only repeat that
(and Optuna records heartbeats only inside ``study.optimize``, which the search does not
use).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
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


class NoStorage(LookupError):
    """A run's SQLite file does not exist (yet): nothing to read."""


def open_read_only(url: str) -> Any:
    """An ``RDBStorage`` that never writes, for the verbs that only read a run (``nas
    status``, ``pareto``, ``report``, ``export``, ``rank``): they must work on an archived
    or shared run directory the user cannot write to.

    Optuna's own table creation is skipped (it issues DDL checks that need a writable
    database). An SQLite file is opened with SQLite's ``mode=ro``, which still reads
    consistently while a driver writes. A run's database is in WAL mode, and SQLite can
    read a WAL database only where it may create the ``-shm`` index next to it; in a
    directory nobody may write to (and so nobody is writing the database either) it is
    opened ``immutable=1`` instead, which reads the file as it is without any lock."""
    import optuna
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return optuna.storages.RDBStorage(url, skip_table_creation=True,
                                          engine_kwargs={"pool_pre_ping": True})
    path = parsed.database or ""
    if path in ("", ":memory:") or path.startswith("file:"):
        return optuna.storages.RDBStorage(url, skip_table_creation=True)
    from ..errors import UserError

    if not Path(path).is_file():
        raise NoStorage(f"no Optuna storage at {path} (the search has not started, or "
                        "the file was moved)")
    mode = "mode=ro" if _sqlite_readable(path, "mode=ro") else "mode=ro&immutable=1"
    if mode != "mode=ro" and not _sqlite_readable(path, mode):
        raise UserError(f"cannot read the Optuna storage {path}: not an SQLite database "
                        "or unreadable")
    try:
        return optuna.storages.RDBStorage(f"sqlite:///file:{path}?{mode}&uri=true",
                                          skip_table_creation=True)
    except optuna.exceptions.StorageInternalError:  # Optuna writes its version row if
        # missing: the file exists but the driver has not created its tables yet
        raise NoStorage(f"the Optuna storage at {path} is not set up yet (the search is "
                        "starting)") from None


def _sqlite_readable(path: str, mode: str) -> bool:
    import sqlite3
    from urllib.parse import quote

    try:
        conn = sqlite3.connect(f"file:{quote(path)}?{mode}", uri=True)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
        finally:
            conn.close()
        return True
    except sqlite3.Error:
        return False


def open_storage(url: str):
    """A plain Optuna RDBStorage for ``url``. An SQLite file is switched to WAL journaling
    with ``synchronous=NORMAL``: a commit no longer waits for an fsync (a trial's ~20
    writes took ~0.4 s on a loaded 2-core box, ~0.1 s now), a ``kill -9`` of the driver
    still loses nothing committed (only a power cut could lose the last commits; the
    ledger, fsync'ed, and its (trial, attempt) keys keep the accounting right), and
    readers (``nas status``, optuna-dashboard) no longer block the writer."""
    import optuna
    from sqlalchemy import event

    from ..run.storage import open_server_storage, open_with_retry

    if not url.startswith("sqlite:"):  # a shared server: safe concurrent table creation
        return open_server_storage(url)

    storage = open_with_retry(lambda: optuna.storages.RDBStorage(url))

    def pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()  # connections opened from now on get the pragmas
    return storage
