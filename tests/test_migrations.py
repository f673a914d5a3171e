"""Schema migrations: a landed state directory upgrades intact; a failed upgrade and a newer
store are refused and change nothing."""
from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine_proc import EngineProcess, free_port
from jupyter_bai.engine.config import EngineConfig
from jupyter_bai.engine.engine import Engine
from jupyter_bai.engine.migrations import (
    MIGRATIONS,
    Migration,
    MigrationFailed,
    StateTooNew,
    latest_version,
)
from jupyter_bai.engine.store import Store
from jupyter_bai.spec.session import can_transition

FIXTURE = Path(__file__).parent / "fixtures" / "landed-d390500.db"
EVERY_STATUS = {"PENDING", "SCHEDULED", "PREPARING", "RUNNING", "TERMINATING", "TERMINATED",
                "ERROR", "CANCELLED"}


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
            for table in ("sessions", "session_status_history", "events", "vfolders")
        }
    finally:
        conn.close()


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture()
def landed_state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    shutil.copy(FIXTURE, state / "engine.db")
    conn = sqlite3.connect(FIXTURE)
    for (fid,) in conn.execute("SELECT id FROM vfolders"):
        (state / "vfolders" / fid).mkdir(parents=True)  # the folders travel with the store
    conn.close()
    return state


def test_fixture_is_a_landed_state_with_every_status() -> None:
    before = dump(FIXTURE)
    assert {row[4] for row in before["sessions"]} == EVERY_STATUS
    assert user_version(FIXTURE) == 0  # the landed store never set it


def test_landed_store_is_upgraded_with_every_row_intact(landed_state: Path) -> None:
    db = landed_state / "engine.db"
    before = dump(db)
    store = Store(db)
    assert store.schema_version == latest_version() >= 2
    assert store.one("SELECT name FROM sqlite_master WHERE name = 'meta'") is None
    store.close()
    assert user_version(db) == latest_version()
    assert dump(db) == before
    # Opening it again is a no-op.
    Store(db).close()
    assert dump(db) == before


def test_engine_adopts_the_upgraded_sessions_with_allowed_transitions_only(
    landed_state: Path, bwrap: str
) -> None:
    before = {row[0]: row for row in dump(landed_state / "engine.db")["sessions"]}

    async def run() -> dict[str, dict[str, Any]]:
        engine = Engine(EngineConfig(state_dir=landed_state, fake_gpus=(
            {"name": "Fake GPU", "memory": "16g"},), docker=False, stop_grace=0.5))
        await engine.start()
        try:
            for _ in range(400):  # let requeued and resumed sessions settle
                live = engine.sessions.list(status="SCHEDULED,PREPARING,TERMINATING")
                if not live:
                    break
                await asyncio.sleep(0.05)
            return {s["id"]: engine.sessions.get(s["id"]) for s in engine.sessions.list()}
        finally:
            for s in engine.sessions.list(status="PENDING,SCHEDULED,PREPARING,RUNNING"):
                await engine.sessions.destroy(s["id"], forced=True)
            await engine.close()

    after = asyncio.run(run())
    assert set(after) == set(before)
    for sid, old in before.items():
        new = after[sid]
        assert (new["name"], new["image"], new["env"]) == (
            old[2], "local", json.loads(old[3])["env"])
        statuses = [h["status"] for h in new["status_history"]]
        for a, b in zip(statuses, statuses[1:]):
            assert can_transition(a, b), (new["name"], statuses)
    by_name = {s["name"]: s for s in after.values()}
    # Finished sessions are untouched; the lost process is an ERROR; a stop in flight completes.
    assert by_name["landed-terminated"]["result"] == "success"
    assert by_name["landed-cancelled"]["status"] == "CANCELLED"
    assert by_name["landed-running"]["status"] == "ERROR"
    assert by_name["landed-terminating"]["status"] == "TERMINATED"
    # Waiting and starting sessions start: a lost start task resumes, an interrupted one requeues.
    for name in ("landed-pending", "landed-scheduled", "landed-preparing"):
        assert by_name[name]["status"] == "RUNNING", by_name[name]
    assert [h["status"] for h in by_name["landed-preparing"]["status_history"]][3:5] == [
        "PENDING", "SCHEDULED"]


def test_failed_upgrade_rolls_back_and_keeps_the_old_data(landed_state: Path) -> None:
    db = landed_state / "engine.db"
    before = dump(db)

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE sessions SET status = 'ERROR'")
        conn.execute("CREATE TABLE half_made (x INTEGER)")
        raise RuntimeError("disk on fire")

    broken = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "a step that fails", half_then_fail))
    with pytest.raises(MigrationFailed) as err:
        Store(db, migrations=broken)
    message = str(err.value)
    assert "disk on fire" in message and "nothing was changed" in message
    assert "\n" not in message
    assert user_version(db) == 0
    assert dump(db) == before
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'half_made'").fetchone() is None
    assert conn.execute("SELECT value FROM meta").fetchone() == ("1",)  # step 2 undone too
    conn.close()


def test_store_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {latest_version() + 5}")
    conn.close()
    with pytest.raises(StateTooNew) as err:
        Store(db)
    assert f"schema version {latest_version() + 5}" in str(err.value)
    assert "upgrade jupyter-bai" in str(err.value)


def test_engine_on_a_newer_state_does_not_start_and_the_api_says_why(
    tmp_path: Path, bwrap: str
) -> None:
    state = tmp_path / "eng" / "state"
    Store(state / "engine.db").close()
    conn = sqlite3.connect(state / "engine.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    eng = EngineProcess(state_dir=state, runtime_dir=tmp_path / "eng" / "runtime",
                        port=free_port(), token="t-" + "x" * 8)
    eng.start(expect_status=503)
    try:
        r = httpx.get(f"{eng.url}/bai/api/v1/sessions",
                      headers={"Authorization": f"token {eng.token}"})
        assert r.status_code == 503
        body = r.json()
        assert body["error"] == "runtime-unavailable"
        assert "schema version 999" in body["message"] and "upgrade jupyter-bai" in body["message"]
        # Nothing was written: the store still says 999.
        assert user_version(state / "engine.db") == 999
    finally:
        eng.stop()
