"""Session start overhead: `session create` (batch, `true`) -> TERMINATED, against a bare
`subprocess.run` of the same sandboxed command, measured in the same run.

Also creates 20 sessions at once and checks that every one finishes (none lost or stuck).
Prints medians, p90, the engine's overhead in ms and the ratio. Usage:
    .venv/bin/python bench/session_start.py [--runs 30] [--burst 20]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _watch import StatusWatcher  # noqa: E402
from engine_proc import start_engine  # noqa: E402

from jupyter_bai.engine.runtimes.base import LaunchContext  # noqa: E402
from jupyter_bai.engine.runtimes.local import LocalRuntime  # noqa: E402
from jupyter_bai.engine.runtimes.sandbox import bwrap_argv, python_prefixes  # noqa: E402


def bare_argv(tmp: Path) -> list[str]:
    """The same sandbox the local runtime builds, run directly."""
    ctx = LaunchContext(
        session_id="bench", session_name="bench", image="local", session_dir=tmp,
        interactive=False, command="true", env={"PATH": "/usr/bin:/bin", "HOME": "/home/work"},
        mounts=[],
    )
    for sub in ("work", "run", "logs"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    runtime = LocalRuntime()
    if not runtime.use_bwrap:
        return ["/bin/sh", "-c", "true"]
    return bwrap_argv(ctx, ["/bin/sh", "-c", "true"], bwrap=runtime.bwrap or "bwrap",
                      prefixes=python_prefixes())


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--burst", type=int, default=20)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bai-bench-"))
    argv = bare_argv(tmp / "bare")
    subprocess.run(argv, check=True)  # warm up page cache
    bare = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True)
        bare.append(time.perf_counter() - t0)

    engine = start_engine(tmp / "engine")
    try:
        http = httpx.Client(base_url=f"{engine.url}/bai/api/v1",
                            headers={"Authorization": f"token {engine.token}"}, timeout=60)
        events = StatusWatcher(engine.url, engine.token)
        body = {"image": "local", "type": "batch", "command": "true",
                "resources": {"cpu": "0.1", "mem": "64m"}}
        warm = http.post("/sessions", json=body)  # warm-up; also proves the stream is live
        warm.raise_for_status()
        events.wait(warm.json()["id"])
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            r = http.post("/sessions", json=body)
            r.raise_for_status()
            t1, event = events.wait(r.json()["id"])
            assert event["status"] == "TERMINATED" and event["result"] == "success", event
            times.append(t1 - t0)

        # Burst: N sessions created at once must all finish.
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.burst) as pool:
            ids = list(pool.map(lambda _: http.post("/sessions", json=body).json()["id"],
                                range(args.burst)))
        finals = [events.wait(i, timeout=120)[1] for i in ids]
        burst_wall = time.perf_counter() - t0
        listed = {s["id"]: s for s in http.get("/sessions").json()["sessions"]}
        ok = sum(1 for i in ids if listed[i]["status"] == "TERMINATED" and listed[i]["result"] == "success")
        stuck = sum(1 for i in ids if listed[i]["status"] not in ("TERMINATED", "ERROR", "CANCELLED"))
        assert len(finals) == args.burst
    finally:
        engine.stop()

    mb, me = statistics.median(bare), statistics.median(times)
    print(f"session start benchmark ({args.runs} runs each, sandbox: {'bwrap' if 'bwrap' in argv[0] else 'none'})")
    print(f"  bare subprocess.run  median {mb*1000:7.1f} ms   p90 {pct(bare, 90)*1000:7.1f} ms")
    print(f"  engine create->TERM  median {me*1000:7.1f} ms   p90 {pct(times, 90)*1000:7.1f} ms")
    print(f"  engine overhead      median {(me-mb)*1000:7.1f} ms   ratio {me/mb:5.2f}x  (target < 50 ms)")
    print(f"  burst of {args.burst}: {ok} succeeded, {stuck} stuck, {args.burst - ok - stuck} failed, "
          f"all finished in {burst_wall:.2f} s")


if __name__ == "__main__":
    main()
