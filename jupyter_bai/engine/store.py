"""SQLite (WAL) store: the engine's only source of truth.

Everything that must survive ``kill -9`` is written here before it is acted on,
so a restarted engine can rebuild its whole picture from this file alone. The
schema is built and upgraded by numbered steps in :mod:`.migrations`.
"""
from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .migrations import MIGRATIONS, Migration, migrate

log = logging.getLogger(__name__)


class Store:
    """A thread-safe wrapper over one SQLite connection in WAL mode."""

    def __init__(self, path: Path | str, migrations: Sequence[Migration] = MIGRATIONS):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._after_commit: list[Callable[[], None]] = []
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self.schema_version = migrate(self._conn, self.path, migrations)
        except BaseException:
            self._conn.close()
            raise

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested calls join the outer one.

        Callbacks registered with :meth:`after_commit` inside it run once it has
        committed (in commit order), and are dropped if it rolls back.
        """
        with self._lock:
            if self._conn.in_transaction:
                yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._after_commit = []
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                self._after_commit = []
                raise
            self._conn.execute("COMMIT")
            callbacks, self._after_commit = self._after_commit, []
            for callback in callbacks:
                try:
                    callback()
                except Exception:  # the change is committed: a failed notification must not undo it
                    log.exception("after-commit callback failed")

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the open transaction commits (at once when none is open)."""
        with self._lock:
            if self._conn.in_transaction:
                self._after_commit.append(callback)
                return
        callback()

    @contextlib.contextmanager
    def consistent(self) -> Iterator[None]:
        """Hold off every writer, so several reads see one state (a snapshot)."""
        with self._lock:
            yield

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
