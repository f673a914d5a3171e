"""Pipeline engine overhead: a 50-task DAG of `true` (a chain of 10, a fan-out/fan-in of
1 -> 20 -> 1, a wide layer of 18) as one job, against the same 50 commands run as bare
sandboxed subprocesses one after another, in the same run.

Prints the job's wall time, the bare total, the engine's overhead per task (target < 60 ms)
and the ratio, and how many tasks of the wide layer ran at once (against the node's CPUs).
Usage:  .venv/bin/python bench/pipeline.py [--cpu 0.1]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from engine_proc import start_engine  # noqa: E402
from session_start import bare_argv  # noqa: E402

from jupyter_bai.client import Client  # noqa: E402
from jupyter_bai.pipelines import Pipeline  # noqa: E402


def dag(cpu: str) -> Pipeline:
    p = Pipeline("bench-50", defaults={"image": "local", "resources": {"cpu": cpu, "mem": "64m"}})
    prev = None
    for i in range(10):
        prev = p.task(f"chain-{i}", command="true", depends_on=[prev] if prev else [])
    head = p.task("fan-head", command="true")
    mids = [p.task(f"fan-{i}", command="true", depends_on=[head]) for i in range(20)]
    p.task("fan-tail", command="true", depends_on=mids)
    for i in range(18):
        p.task(f"wide-{i}", command="true")
    assert len(p.tasks) == 50
    return p


def ts(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = cur = 0
    for _, step in points:
        cur += step
        best = max(best, cur)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu", default="0.1", help="CPU slot of each task")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bai-bench-pl-"))
    argv = bare_argv(tmp / "bare")
    subprocess.run(argv, check=True)
    t0 = time.perf_counter()
    for _ in range(50):
        subprocess.run(argv, check=True)
    bare = time.perf_counter() - t0

    engine = start_engine(tmp / "engine")
    try:
        client = Client(engine.url, engine.token)
        client.run_pipeline(dag(args.cpu), wait=True, timeout=600)  # warm-up
        t0 = time.perf_counter()
        job = client.run_pipeline(dag(args.cpu), wait=True, timeout=600)
        wall = time.perf_counter() - t0
        assert job.status == "SUCCEEDED", job
        by = {t.name: t for t in job.tasks}
        chain = ts(by["chain-9"].finished_at) - ts(by["chain-0"].started_at)
        wide = [(ts(t.started_at), ts(t.finished_at)) for t in job.tasks
                if t.name.startswith("wide-")]
        client.close()
    finally:
        engine.stop()
    per_task = (wall - bare) / 50 * 1000
    print(f"50-task DAG job wall time         {wall:8.2f} s")
    print(f"bare sandboxed `true` x50 (serial) {bare:8.2f} s")
    print(f"engine overhead per task           {per_task:8.1f} ms   (target < 60 ms)")
    print(f"chain of 10, per task (serial)     {chain / 10 * 1000:8.1f} ms   vs bare "
          f"{bare / 50 * 1000:.1f} ms: overhead {(chain / 10 - bare / 50) * 1000:.1f} ms")
    print(f"ratio job / bare                   {wall / bare:8.2f}")
    print(f"wide layer: up to {max_overlap(wide)} of 18 at once "
          f"(node CPUs {os.cpu_count()}, task cpu {args.cpu})")


if __name__ == "__main__":
    main()
