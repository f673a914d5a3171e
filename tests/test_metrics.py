"""The metrics sampler: per-session usage from cgroups, and no sampling when nobody watches."""
from __future__ import annotations

import asyncio
from pathlib import Path

from jupyter_bai.engine.config import EngineConfig
from jupyter_bai.engine.engine import Engine
from jupyter_bai.engine.runtimes.local import LocalRuntime
from jupyter_bai.spec.session import SessionSpec


def test_sampler_reports_sessions_and_runs_only_while_watched(tmp_path: Path, bwrap: str) -> None:
    async def run() -> None:
        engine = Engine(EngineConfig(state_dir=tmp_path / "state", docker=False, default_cpu="0.2",
                                     default_mem="256m", metrics_interval=0.1))
        await engine.start()
        metrics = engine.metrics
        assert metrics is not None
        try:
            s = engine.sessions.create(SessionSpec(
                image="local", type="batch",
                command="python3 -c \"b = bytearray(64 << 20); import time; time.sleep(30)\""))
            for _ in range(200):
                if engine.sessions.get(s["id"])["status"] == "RUNNING":
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            assert not metrics.running and metrics.samples_taken == 0  # nobody watched yet
            stream = metrics.subscribe()
            first = await asyncio.wait_for(stream.__anext__(), 5)
            second = await asyncio.wait_for(stream.__anext__(), 5)
            assert second["at"] > first["at"]
            (mine,) = [x for x in second["sessions"] if x["id"] == s["id"]]
            local = next(r for r in engine.runtimes if isinstance(r, LocalRuntime))
            if local.cgroups is not None and local.cgroups.available:
                assert mine["mem_used"] is not None and mine["mem_used"] > 64 << 20
            else:
                assert (mine["cpu_percent"], mine["mem_used"]) == (None, None)
            await stream.aclose()
            for _ in range(50):
                if not metrics.running:
                    break
                await asyncio.sleep(0.05)
            assert not metrics.running  # the last watcher left: sampling stopped
            taken = metrics.samples_taken
            await asyncio.sleep(0.4)
            assert metrics.samples_taken == taken
            body = await metrics.current()  # a GET samples at once and keeps the history
            assert body["latest"] is body["history"][-1] and len(body["history"]) >= 3
            await engine.sessions.destroy(s["id"], forced=True)
        finally:
            await engine.close()

    asyncio.run(run())
