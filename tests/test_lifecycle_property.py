"""Property: whatever users and processes do, and however often the engine restarts, no session
ever records a status change the life cycle forbids (and the engine never even tries one)."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_bai.engine.config import EngineConfig
from jupyter_bai.engine.engine import Engine
from jupyter_bai.spec.errors import BaiError
from jupyter_bai.spec.session import ALLOWED_TRANSITIONS, SessionSpec, SessionStatus

COMMANDS = {"quick": "true", "fails": "exit 3", "sleeps": "sleep 2"}

ops = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(["interactive", *COMMANDS])),
    st.tuples(st.just("destroy"), st.integers(0, 5)),
    st.tuples(st.just("exit"), st.integers(0, 5)),
    st.tuples(st.just("restart"), st.just(0)),
    st.tuples(st.just("wait"), st.sampled_from([0.0, 0.05, 0.3])),
)


def forbidden_steps(engine: Engine) -> list[tuple[str, str, str]]:
    bad = []
    rows = engine.store.query(
        "SELECT session_id, status FROM session_status_history ORDER BY session_id, at, rowid")
    last: dict[str, str] = {}
    for row in rows:
        sid, status = row["session_id"], row["status"]
        prev = last.get(sid)
        if prev is None:
            if status != "PENDING":
                bad.append((sid, "<created>", status))
        elif SessionStatus(status) not in ALLOWED_TRANSITIONS[SessionStatus(prev)]:
            bad.append((sid, prev, status))
        last[sid] = status
    return bad


async def drive(state: Path, script: list[tuple[str, Any]]) -> tuple[list[Any], list[str]]:
    config = EngineConfig(state_dir=state, docker=False, default_cpu="0.1", default_mem="64m",
                          stop_grace=0.3, agent_start_timeout=10)
    engine = Engine(config)
    await engine.start()
    created: list[str] = []
    try:
        for op, arg in script:
            if op == "create":
                interactive = arg == "interactive"
                spec = SessionSpec(image="local", type="interactive" if interactive else "batch",
                                   command=None if interactive else COMMANDS[arg])
                created.append(engine.sessions.create(spec)["id"])
            elif op == "destroy" and created:
                try:
                    await engine.sessions.destroy(created[arg % len(created)])
                except BaiError:
                    pass  # already over: a user error, not a transition
            elif op == "exit" and created:
                row = engine.store.one("SELECT runtime_state FROM sessions WHERE id = ?",
                                       (created[arg % len(created)],))
                handle = json.loads(row["runtime_state"]) if row["runtime_state"] else {}
                if handle.get("pgid"):
                    try:
                        os.killpg(int(handle["pgid"]), signal.SIGKILL)  # the process dies
                    except ProcessLookupError:
                        pass
            elif op == "restart":
                await engine.close()
                engine = Engine(config)
                try:
                    await engine.start()
                except BaseException as exc:  # say why, not a missing attribute in `finally`
                    raise AssertionError(f"the engine did not restart: {exc!r}") from exc
            elif op == "wait":
                await asyncio.sleep(arg)
        await asyncio.sleep(0.2)
        return forbidden_steps(engine), created
    finally:
        if hasattr(engine, "sessions"):  # else the restart failed: its error is reported
            for s in engine.sessions.list(status="PENDING,SCHEDULED,PREPARING,RUNNING,TERMINATING"):
                try:
                    await engine.sessions.destroy(s["id"], forced=True)
                except BaiError:
                    pass
            assert forbidden_steps(engine) == []
            await engine.close()


class Refusals(logging.Handler):
    """Collects the engine's 'refused status change' errors (it must never even try one)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "refused status change" in record.getMessage():
            self.messages.append(record.getMessage())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(ops, min_size=1, max_size=8))
def test_no_forbidden_transition_is_ever_recorded(
    script: list[tuple[str, Any]], bwrap: str
) -> None:
    refusals = Refusals()
    logger = logging.getLogger("jupyter_bai.engine.sessions")
    logger.addHandler(refusals)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bad, _ = asyncio.run(drive(Path(tmp) / "state", script))
    finally:
        logger.removeHandler(refusals)
    assert bad == []
    assert refusals.messages == []
