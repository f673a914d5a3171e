"""Cost of one live-metrics sample, and what it costs to keep the sampler running at 1 Hz.

Times ``MetricsCollector.sample()`` (host CPU/memory, per-session cgroup reads, NVML when there
is a GPU) with 0 and then N running local sessions, against a baseline in the same process: a
bare ``psutil.virtual_memory()`` call (the cheapest useful reading). Prints the median per
sample, the ratio to the baseline and the sampler's duty cycle at its interval. Usage:
    .venv/bin/python bench/metrics_cost.py [--sessions 10] [--runs 200]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from jupyter_bai.engine.config import EngineConfig  # noqa: E402
from jupyter_bai.engine.engine import Engine  # noqa: E402
from jupyter_bai.spec.session import SessionSpec  # noqa: E402


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def main(sessions: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(EngineConfig(state_dir=Path(tmp) / "state", docker=False,
                                     default_cpu="0.1", default_mem="64m"))
        await engine.start()
        try:
            assert engine.metrics is not None
            base = median_ms(psutil.virtual_memory, runs)
            empty = median_ms(engine.metrics.sample, runs)
            ids = [engine.sessions.create(SessionSpec(image="local", type="batch",
                                                      command="sleep 60"))["id"]
                   for _ in range(sessions)]
            for _ in range(400):
                if all(engine.sessions.get(i)["status"] == "RUNNING" for i in ids):
                    break
                await asyncio.sleep(0.05)
            busy = median_ms(engine.metrics.sample, runs)
            interval = engine.metrics.interval
            print(f"{'case':<28}{'median ms':>10}{'x baseline':>12}{'duty @1Hz':>11}")
            print(f"{'baseline virtual_memory()':<28}{base:>10.3f}{1:>12.1f}{'':>11}")
            for label, ms in (("sample, 0 sessions", empty), (f"sample, {sessions} sessions", busy)):
                print(f"{label:<28}{ms:>10.3f}{ms / base:>12.1f}"
                      f"{ms / (interval * 1000) * 100:>10.2f}%")
            for i in ids:
                await engine.sessions.destroy(i, forced=True)
        finally:
            await engine.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.sessions, args.runs))
