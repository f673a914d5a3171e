"""The event outbox: same transaction as the change, growing seq, bounded subscribers, resync."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from jupyter_bai.engine.config import EngineConfig
from jupyter_bai.engine.engine import Engine
from jupyter_bai.engine.events import TRIM_EVERY, EventBus
from jupyter_bai.engine.sessions import IllegalTransition
from jupyter_bai.engine.store import Store
from jupyter_bai.spec.errors import Conflict
from jupyter_bai.spec.session import SessionSpec, SessionStatus


async def take(stream: AsyncIterator[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(stream.__anext__(), 5) for _ in range(n)]


def test_rolled_back_change_leaves_no_event_and_subscribers_see_only_commits(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        store = Store(tmp_path / "engine.db")
        bus = EventBus(store)
        stream = bus.subscribe()
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError):
            with store.tx():
                store.execute("INSERT INTO vfolders VALUES ('i', 'f', 'general', 'rw', NULL, 0)")
                bus.publish("vfolder", "f", action="created")
                raise RuntimeError("the change failed")
        assert store.query("SELECT * FROM events") == []
        assert store.query("SELECT * FROM vfolders") == []
        with store.tx():
            store.execute("INSERT INTO vfolders VALUES ('i', 'g', 'general', 'rw', NULL, 0)")
            event = bus.publish("vfolder", "g", action="created")
            await asyncio.sleep(0.05)
            assert not first.done()  # not before the commit
        got = await asyncio.wait_for(first, 5)
        assert got == event and got["name"] == "g" and got["seq"] == bus.last_seq()
        await stream.aclose()
        store.close()

    asyncio.run(run())


def test_seq_grows_by_one_and_is_never_reused_after_trimming(tmp_path: Path) -> None:
    store = Store(tmp_path / "engine.db")
    bus = EventBus(store, keep=10)
    seqs = [bus.publish("vfolder", f"f{i}", action="created")["seq"] for i in range(TRIM_EVERY + 5)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert len(store.query("SELECT seq FROM events")) < 20  # trimmed
    store.close()
    reopened = Store(tmp_path / "engine.db")
    assert EventBus(reopened).publish("vfolder", "x")["seq"] == seqs[-1] + 1
    reopened.close()


def test_slow_subscriber_gets_one_resync_then_live_events(tmp_path: Path) -> None:
    async def run() -> None:
        store = Store(tmp_path / "engine.db")
        bus = EventBus(store, buffer=5)
        stream = bus.subscribe()
        reading = asyncio.ensure_future(stream.__anext__())  # subscribed, then stops reading
        await asyncio.sleep(0)
        published = [bus.publish("vfolder", f"f{i}", action="uploaded") for i in range(50)]
        (sub,) = bus._subscribers
        assert len(sub) <= 5  # bounded, whatever the backlog
        head = await asyncio.wait_for(reading, 5)
        # What was missed became one resync at a seq it had reached; what follows has no gap.
        assert head["kind"] == "resync" and head["seq"] in [e["seq"] for e in published]
        tail = [e for e in published if e["seq"] > head["seq"]]
        assert 0 < len(tail) < 5
        assert await take(stream, len(tail)) == tail
        assert len(sub) == 0
        live = bus.publish("vfolder", "after", action="created")
        assert await take(stream, 1) == [live]
        await stream.aclose()
        store.close()

    asyncio.run(run())


def test_replay_from_before_the_kept_history_starts_with_resync(tmp_path: Path) -> None:
    async def run() -> None:
        store = Store(tmp_path / "engine.db")
        bus = EventBus(store, keep=10)
        for i in range(TRIM_EVERY + 3):
            bus.publish("vfolder", f"f{i}", action="created")
        last = bus.last_seq()
        assert not bus.can_replay(5)
        stale = bus.subscribe(since=5)
        assert await take(stale, 1) == [{"kind": "resync", "seq": last}]
        live = bus.publish("vfolder", "new", action="created")
        assert await take(stale, 1) == [live]
        await stale.aclose()
        # A replay that is still whole has no resync.
        recent = bus.subscribe(since=last - 2)
        got = await take(recent, 3)
        assert [e["seq"] for e in got] == [last - 1, last, live["seq"]]
        await recent.aclose()
        # A seq this engine never gave out (another state dir) cannot be trusted either.
        alien = bus.subscribe(since=live["seq"] + 100)
        assert await take(alien, 1) == [{"kind": "resync", "seq": live["seq"]}]
        await alien.aclose()
        store.close()

    asyncio.run(run())


def test_refused_status_change_and_refused_create_write_nothing(tmp_path: Path) -> None:
    async def run() -> None:
        engine = Engine(EngineConfig(state_dir=tmp_path / "state", docker=False, sandbox="none",
                                     default_mem="64m", default_cpu="0.1"))
        await engine.start()
        try:
            # Keep it PENDING: the scheduler is never woken.
            engine.sessions._wakeup.set = lambda: None  # type: ignore[method-assign]
            s = engine.sessions.create(SessionSpec(image="local", name="held"))
            before = engine.events.last_seq()
            history = engine.store.query("SELECT * FROM session_status_history")
            with pytest.raises(IllegalTransition):
                engine.sessions._transition(s["id"], SessionStatus.RUNNING)
            with pytest.raises(Conflict):
                engine.sessions.create(SessionSpec(image="local", name="held"))
            assert engine.sessions.get("held")["status"] == "PENDING"
            assert engine.events.last_seq() == before
            assert engine.store.query("SELECT * FROM session_status_history") == history
            # An allowed change writes the row, its history and its event together.
            engine.sessions._transition(s["id"], SessionStatus.CANCELLED, "user-requested")
            (event,) = engine.events.history(before)
            assert (event["kind"], event["status"], event["previous"], event["info"]) == (
                "session", "CANCELLED", "PENDING", "user-requested")
        finally:
            await engine.close()

    asyncio.run(run())


def test_destroying_a_scheduled_session_cancels_it_and_reports_the_release(tmp_path: Path) -> None:
    async def run() -> None:
        engine = Engine(EngineConfig(state_dir=tmp_path / "state", docker=False, sandbox="none",
                                     default_mem="64m", default_cpu="0.5"))
        await engine.start()
        try:
            engine.sessions._wakeup.set = lambda: None  # type: ignore[method-assign]  # we schedule
            s = engine.sessions.create(SessionSpec(image="local", name="soon"))
            before = engine.events.last_seq()
            engine.sessions._schedule_once()  # SCHEDULED; its start task has not run yet
            assert engine.sessions.get("soon")["status"] == "SCHEDULED"
            assert engine.resources()["used"]["cpu"] == "0.5"
            done = await engine.sessions.destroy(s["id"])
            await asyncio.sleep(0.3)  # a start task that still ran would show up here
            assert done["status"] == "CANCELLED"
            assert [h["status"] for h in engine.sessions.get("soon")["status_history"]] == [
                "PENDING", "SCHEDULED", "CANCELLED"]
            assert engine.resources()["used"]["cpu"] == "0"
            kinds = [(e["kind"], e.get("status") or e.get("action"))
                     for e in engine.events.history(before)]
            assert kinds == [("session", "SCHEDULED"), ("resources", "allocated"),
                             ("session", "CANCELLED"), ("resources", "released")]
            released = engine.events.history(before)[-1]
            assert released["session"] == "soon" and released["used"]["cpu"] == "0"
        finally:
            await engine.close()

    asyncio.run(run())
