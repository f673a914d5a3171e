"""Docker session start: the engine against a raw `docker run` of the same image and command,
measured in the same run.

* batch: `session create IMAGE --type batch -c true` → TERMINATED, against
  `docker run --rm ... IMAGE /bin/sh -c true` (returns once the container is gone);
* interactive: `session create IMAGE` → RUNNING (its agent answers), against
  `docker run -d ... IMAGE python3 /opt/bai/agent.py ...` until the same agent answers.

Both sides use the test image (tests/docker_image.py), the host's /usr bound read-only, the
same cpu/mem limits and --init. Prints medians, p90 and the ratio (target: at most 1.15x
raw `docker run` at the median). Usage:
    .venv/bin/python bench/docker_start.py [--runs 15]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import docker_image  # noqa: E402
from _watch import StatusWatcher  # noqa: E402
from engine_proc import start_engine  # noqa: E402

from jupyter_bai.engine.runtimes.agent_client import wait_ready  # noqa: E402
from jupyter_bai.engine.runtimes.docker import AGENT_FILE  # noqa: E402

CPU, MEM = "0.5", "256m"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def raw_args(image: str) -> list[str]:
    binds = [a for b in docker_image.HOST_BINDS for a in ("-v", f"{b}:{b}:ro")]
    return ["--init", "--cpus", CPU, "--memory", MEM, "--memory-swap", MEM, "-w", "/home/work",
            *binds, image]


def raw_batch(image: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", *raw_args(image)[:-1], image, "/bin/sh", "-c", "true"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def raw_interactive(image: str, tmp: Path, i: int) -> float:
    run = tmp / f"raw-{i}"
    run.mkdir(parents=True)
    t0 = time.perf_counter()
    cid = subprocess.run(
        ["docker", "run", "-d", "--rm", "-v", f"{run}:/run/bai", "-v", f"{AGENT_FILE}:/opt/bai/agent.py:ro",
         *raw_args(image), "python3", "/opt/bai/agent.py", "--socket", "/run/bai/agent.sock"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    asyncio.run(wait_ready(str(run / "agent.sock"), 30))
    elapsed = time.perf_counter() - t0
    subprocess.run(["docker", "rm", "-f", cid], check=True, capture_output=True)
    return elapsed


def line(label: str, values: list[float]) -> str:
    return (f"  {label:<30} median {statistics.median(values)*1000:7.1f} ms"
            f"   p90 {pct(values, 90)*1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    image = docker_image.build()["image"]
    tmp = Path(tempfile.mkdtemp(prefix="bai-docker-bench-"))

    engine = start_engine(tmp / "engine", {"JUPYTER_BAI_DOCKER_BINDS": ",".join(docker_image.HOST_BINDS)})
    raw_b: list[float] = []
    raw_i: list[float] = []
    eng_b: list[float] = []
    eng_i: list[float] = []
    try:
        http = httpx.Client(base_url=f"{engine.url}/bai/api/v1",
                            headers={"Authorization": f"token {engine.token}"}, timeout=60)
        events = StatusWatcher(engine.url, engine.token)
        batch = {"image": image, "type": "batch", "command": "true",
                 "resources": {"cpu": CPU, "mem": MEM}}
        inter = {"image": image, "resources": {"cpu": CPU, "mem": MEM}}

        def engine_batch() -> float:
            t0 = time.perf_counter()
            r = http.post("/sessions", json=batch)
            r.raise_for_status()
            t1, ev = events.wait(r.json()["id"], ("TERMINATED",))
            assert ev["status"] == "TERMINATED" and ev["result"] == "success", ev
            return t1 - t0

        def engine_interactive() -> float:
            t0 = time.perf_counter()
            r = http.post("/sessions", json=inter)
            r.raise_for_status()
            t1, ev = events.wait(r.json()["id"], ("RUNNING",))
            assert ev["status"] == "RUNNING", ev
            http.delete(f"/sessions/{r.json()['id']}").raise_for_status()
            return t1 - t0

        # Warm up both paths, then interleave so both see the same machine state.
        raw_batch(image)
        raw_interactive(image, tmp, -1)
        engine_batch()
        engine_interactive()
        for i in range(args.runs):
            raw_b.append(raw_batch(image))
            eng_b.append(engine_batch())
            raw_i.append(raw_interactive(image, tmp, i))
            eng_i.append(engine_interactive())
    finally:
        engine.stop()

    print(f"docker session start benchmark ({args.runs} runs each, image {image})")
    print(line("raw docker run --rm (batch)", raw_b))
    print(line("engine batch create->TERM", eng_b))
    rb = statistics.median(eng_b) / statistics.median(raw_b)
    print(f"  batch ratio {rb:5.2f}x  (target <= 1.15x)")
    print(line("raw docker run -d -> agent up", raw_i))
    print(line("engine create->RUNNING", eng_i))
    ri = statistics.median(eng_i) / statistics.median(raw_i)
    print(f"  interactive ratio {ri:5.2f}x  (target <= 1.15x)")


if __name__ == "__main__":
    main()
