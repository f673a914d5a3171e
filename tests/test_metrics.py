"""The metrics sampler: per-session usage from cgroups, and no sampling when nobody watches."""
from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from jupyter_bai.engine.config import EngineConfig
from jupyter_bai.engine.engine import Engine
from jupyter_bai.engine.metrics import MetricsCollector
from jupyter_bai.engine.node import _import_pynvml
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
                command="python3 -c \"b = bytearray(64 << 20); print('allocated', flush=True); "
                        "import time; time.sleep(30)\""))
            for _ in range(600):  # the 64 MiB are in use once it says so
                if "allocated" in engine.sessions.logs(s["id"]):
                    break
                await asyncio.sleep(0.05)
            assert engine.sessions.get(s["id"])["status"] == "RUNNING"
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


def test_real_gpu_numbers_come_from_nvml_initialised_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No GPU on CI: a FAKE NVML (monkeypatched pynvml) stands in for the driver."""
    pynvml = _import_pynvml()
    calls: list[str] = []
    fake_nvml = {
        "nvmlInit": lambda: calls.append("init"),
        "nvmlShutdown": lambda: calls.append("shutdown"),
        "nvmlDeviceGetCount": lambda: 1,
        "nvmlDeviceGetHandleByIndex": lambda i: f"fake-handle-{i}",
        "nvmlDeviceGetUtilizationRates": lambda h: SimpleNamespace(gpu=37),
        "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(used=3 << 30, total=16 << 30),
    }
    for name, fn in fake_nvml.items():
        monkeypatch.setattr(pynvml, name, fn)

    async def run() -> None:
        engine = Engine(EngineConfig(state_dir=tmp_path / "state", docker=False, sandbox="none",
                                     fake_gpus=({"name": "GPU under fake NVML", "memory": "16g"},)))
        await engine.start()
        try:
            engine.node.gpus[0].source = "nvml"  # as if NVML had found it
            collector = MetricsCollector(engine.node, engine.sessions, engine.runtimes,
                                         interval=0.05)
            stream = collector.subscribe()
            samples = [await asyncio.wait_for(stream.__anext__(), 5) for _ in range(3)]
            await stream.aclose()
            for _ in range(100):
                if not collector.running:
                    break
                await asyncio.sleep(0.02)
            await collector.close()
            gpu = samples[-1]["gpus"][0]
            assert (gpu["source"], gpu["utilization"], gpu["mem_used"], gpu["mem_total"]) == (
                "nvml", 37, 3 << 30, 16 << 30)
            assert calls == ["init", "shutdown"]  # once per watching period, not per sample
        finally:
            await engine.close()

    asyncio.run(run())
