"""SQLite (WAL) store: the engine's only source of truth.

Everything that must survive ``kill -9`` is written here before it is acted on,
so a restarted engine can rebuild its whole picture from this file alone.
"""
from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vfolders (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    usage_mode TEXT NOT NULL,
    permission TEXT NOT NULL,
    quota INTEGER,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    status_info TEXT,
    result TEXT NOT NULL DEFAULT 'undefined',
    exit_code INTEGER,
    runtime TEXT NOT NULL,
    allocation TEXT,
    runtime_state TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    terminated_at REAL
);
-- Backend.AI: a name is unique among sessions that are not over yet.
CREATE UNIQUE INDEX IF NOT EXISTS sessions_live_name ON sessions(name)
    WHERE status NOT IN ('TERMINATED', 'ERROR', 'CANCELLED');
CREATE INDEX IF NOT EXISTS sessions_status ON sessions(status, seq);
CREATE TABLE IF NOT EXISTS session_status_history (
    session_id TEXT NOT NULL,
    status TEXT NOT NULL,
    at REAL NOT NULL,
    info TEXT
);
CREATE INDEX IF NOT EXISTS history_session ON session_status_history(session_id, at);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL
);
"""


class Store:
    """A thread-safe wrapper over one SQLite connection in WAL mode."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(SCHEMA)
        self.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested calls join the outer one."""
        with self._lock:
            if self._conn.in_transaction:
                yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

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
