"""Numbered schema migrations, keyed on SQLite's ``PRAGMA user_version``.

Each step runs once, in order, and all pending steps of one start run in ONE
transaction with the version bump, so an upgrade that fails halfway leaves the
old data and the old version untouched. A state directory written by a newer
jupyter-bai is refused: old code must never guess at a schema it does not know.

To change the schema, append a :class:`Migration` with the next number; never
edit a step that has shipped.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

from ..spec.errors import BaiError

Step = Union[Sequence[str], Callable[[sqlite3.Connection], None]]

# The schema of the first released store (commit d390500), unchanged: state directories made
# by it carry ``meta.schema_version = 1`` and ``user_version = 0``.
V1_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS vfolders (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        usage_mode TEXT NOT NULL,
        permission TEXT NOT NULL,
        quota INTEGER,
        created_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS sessions (
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
    )""",
    # Backend.AI: a name is unique among sessions that are not over yet.
    """CREATE UNIQUE INDEX IF NOT EXISTS sessions_live_name ON sessions(name)
        WHERE status NOT IN ('TERMINATED', 'ERROR', 'CANCELLED')""",
    "CREATE INDEX IF NOT EXISTS sessions_status ON sessions(status, seq)",
    """CREATE TABLE IF NOT EXISTS session_status_history (
        session_id TEXT NOT NULL,
        status TEXT NOT NULL,
        at REAL NOT NULL,
        info TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS history_session ON session_status_history(session_id, at)",
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        data TEXT NOT NULL
    )""",
    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '1')",
)


@dataclass(frozen=True)
class Migration:
    version: int
    why: str
    step: Step

    def apply(self, conn: sqlite3.Connection) -> None:
        if callable(self.step):
            self.step(conn)
            return
        for statement in self.step:
            # Never executescript(): it COMMITs first and would break the one transaction.
            conn.execute(statement)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the first released schema", V1_SCHEMA),
    Migration(
        2,
        "the schema version lives in PRAGMA user_version; the never-read meta table goes",
        ("DROP TABLE meta",),
    ),
    Migration(3, "pipelines: jobs, their task instances and status history", (
        """CREATE TABLE pipeline_jobs (
            id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            name TEXT NOT NULL,
            spec TEXT NOT NULL,
            status TEXT NOT NULL,
            status_info TEXT,
            folder TEXT NOT NULL,
            created_at REAL NOT NULL,
            finished_at REAL,
            notified_at REAL
        )""",
        """CREATE TABLE pipeline_tasks (
            job_id TEXT NOT NULL REFERENCES pipeline_jobs(id),
            name TEXT NOT NULL,
            position INTEGER NOT NULL,
            status TEXT NOT NULL,
            status_info TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            exit_code INTEGER,
            session_id TEXT,
            cached INTEGER NOT NULL DEFAULT 0,
            cache_key TEXT,
            timed_out INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL,
            attempt_started_at REAL,
            started_at REAL,
            finished_at REAL,
            PRIMARY KEY (job_id, name)
        )""",
        """CREATE TABLE pipeline_status_history (
            job_id TEXT NOT NULL,
            task TEXT,
            status TEXT NOT NULL,
            at REAL NOT NULL,
            info TEXT
        )""",
        "CREATE INDEX pipeline_history_job ON pipeline_status_history(job_id, at)",
        # Opt-in task cache: a key (image, command, env, input hashes) -> the outputs made.
        """CREATE TABLE pipeline_cache (
            key TEXT PRIMARY KEY,
            job_id TEXT NOT NULL,
            task TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
    )),
    Migration(4, "services: model services, their routes, tokens and autoscaling", (
        """CREATE TABLE services (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            spec TEXT NOT NULL,
            replicas INTEGER NOT NULL,
            public INTEGER NOT NULL,
            status TEXT NOT NULL,
            status_info TEXT,
            terminating INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE service_routes (
            id TEXT PRIMARY KEY,
            service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
            session_id TEXT,
            port INTEGER NOT NULL,
            status TEXT NOT NULL,
            status_info TEXT,
            failures INTEGER NOT NULL DEFAULT 0,
            health TEXT,
            created_at REAL NOT NULL,
            healthy_at REAL,
            drain_until REAL
        )""",
        "CREATE INDEX service_routes_service ON service_routes(service_id, status)",
        """CREATE TABLE service_tokens (
            id TEXT PRIMARY KEY,
            service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
            token_hash TEXT NOT NULL UNIQUE,
            expires_at REAL NOT NULL,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE service_autoscale_rules (
            id TEXT PRIMARY KEY,
            service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
            rule TEXT NOT NULL,
            last_fired_at REAL,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE service_scaling_decisions (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            service_id TEXT NOT NULL,
            rule_id TEXT NOT NULL,
            at REAL NOT NULL,
            decision TEXT NOT NULL
        )""",
        """CREATE TABLE service_proxy (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
    )),
    Migration(5, "pipeline notifications: an outbox, delivered at least once", (
        """CREATE TABLE pipeline_notifications (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL REFERENCES pipeline_jobs(id),
            url TEXT NOT NULL,
            body TEXT NOT NULL,
            dedupe_key TEXT NOT NULL UNIQUE,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            last_error TEXT,
            created_at REAL NOT NULL,
            delivered_at REAL,
            gave_up_at REAL
        )""",
        "CREATE INDEX pipeline_notifications_due ON pipeline_notifications(delivered_at, "
        "gave_up_at, next_at)",
    )),
    Migration(6, "notebook deploy: numbered service versions, and the version each route runs", (
        """CREATE TABLE service_versions (
            service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            hash TEXT NOT NULL,
            notebook TEXT NOT NULL,
            model_folder TEXT NOT NULL,
            spec TEXT NOT NULL,
            endpoints TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (service_id, version)
        )""",
        "ALTER TABLE services ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE service_routes ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
    )),
    Migration(7, "notebook deploy: the version folders of deploys in progress", (
        # A row lives from just before the folder is made until the version row is written;
        # one found at start names a folder an engine killed mid-deploy left behind.
        """CREATE TABLE deploy_pending (
            folder TEXT PRIMARY KEY,
            created_at REAL NOT NULL
        )""",
    )),
)


class StateTooNew(BaiError):
    """The state directory was written by a newer jupyter-bai; this one must not touch it."""

    status, code = 503, "state-too-new"


class MigrationFailed(BaiError):
    status, code = 503, "migration-failed"


def latest_version(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    return migrations[-1].version if migrations else 0


def stored_version(conn: sqlite3.Connection) -> int:
    """The store's schema version; a store from before ``user_version`` reads its meta row."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == 0:
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if has_meta:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None:
                return int(row[0])
    return version


def migrate(
    conn: sqlite3.Connection, path: Path | str, migrations: Sequence[Migration] = MIGRATIONS
) -> int:
    """Bring the store at ``path`` to the latest version in one transaction; return it."""
    numbers = [m.version for m in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"migrations must be numbered 1..n in order, got {numbers}")
    latest = latest_version(migrations)
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = stored_version(conn)
        if current > latest:
            raise StateTooNew(
                f"the state in {path} has schema version {current}, newer than this jupyter-bai "
                f"knows ({latest}): upgrade jupyter-bai, or use another BaiApp.state_dir"
            )
        for migration in migrations:
            if migration.version <= current:
                continue
            try:
                migration.apply(conn)
            except Exception as exc:
                raise MigrationFailed(
                    f"upgrading the state in {path} from schema version {current} failed at "
                    f"step {migration.version} ({migration.why}): {exc}; nothing was changed"
                ) from exc
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return latest
