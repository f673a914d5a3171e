"""Kernel start: time from "start kernel" to the first ``execute_reply``, for the bai session
kernelspec (local runtime, and Docker when a daemon answers) against the standard local
ipykernel (``python3``), all through the same real ``jupyter server`` in the same run.

Each run: ``POST /api/kernels`` (what JupyterLab's launcher does), then a kernel client on
the server's connection file waits for ``kernel_info`` (as JupyterLab does), executes ``1``
and waits for the reply; then the kernel is shut down. Prints medians, p90 and the ratio
against the baseline (target: at most 1.5x + 200 ms at the median), then where the session
kernels' time went (their sessions' status history). Usage:
    .venv/bin/python bench/kernel_start.py [--runs 7] [--no-docker]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from jupyter_client import BlockingKernelClient  # noqa: E402
from test_kernel_docker import PY_BINDS, VENV_BIN  # noqa: E402
from test_kernel_server import JupyterServer  # noqa: E402

import docker_image  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


PHASES = ("to the session's creation", "queued (PENDING, SCHEDULED)",
          "sandbox or container start, agent up (PREPARING)", "RUNNING to the first reply")


def _at(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def phases(srv: JupyterServer, kid: str, t0_wall: float, took: float) -> list[float] | None:
    """Where a session kernel's start went, from its session's status history (ms-precise)."""
    sessions = srv.http("GET", "/bai/api/v1/sessions").json()["sessions"]
    mine = [s for s in sessions if s["labels"].get("kernel-id") == kid]
    if not mine:
        return None
    detail = srv.http("GET", f"/bai/api/v1/sessions/{mine[-1]['name']}").json()
    at = {h["status"]: _at(h["at"]) for h in detail["status_history"]}
    if not {"PENDING", "PREPARING", "RUNNING"} <= set(at):
        return None
    return [at["PENDING"] - t0_wall, at["PREPARING"] - at["PENDING"],
            at["RUNNING"] - at["PREPARING"], t0_wall + took - at["RUNNING"]]


def first_reply(srv: JupyterServer, kernel: str,
                split: dict[str, list[list[float]]] | None = None) -> float:
    t0, t0_wall = time.perf_counter(), time.time()
    r = srv.http("POST", "/api/kernels", json={"name": kernel})
    r.raise_for_status()
    kid = r.json()["id"]
    kc = BlockingKernelClient(connection_file=str(srv.runtime / f"kernel-{kid}.json"))
    kc.load_connection_file()
    kc.start_channels(hb=False)  # a kernel still starting fails heartbeats: not "dead"
    try:
        kc.wait_for_ready(timeout=120)  # kernel_info until iopub is live, as JupyterLab does
        try:
            reply = kc.execute_interactive("1", timeout=120, output_hook=lambda _msg: None)
        except TimeoutError:
            raise SystemExit(f"kernel {kernel} ({kid}) did not answer; see {srv.base}/server.log")
        took = time.perf_counter() - t0
        assert reply["content"]["status"] == "ok", reply["content"]
        if split is not None and kernel != "python3":
            parts = phases(srv, kid, t0_wall, took)
            if parts:
                split.setdefault(kernel, []).append(parts)
    finally:
        kc.stop_channels()
        srv.http("DELETE", f"/api/kernels/{kid}")
    return took


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=10).ping()
        return True
    except Exception:  # noqa: BLE001
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--no-docker", action="store_true")
    args = ap.parse_args()
    use_docker = not args.no_docker and docker_available()
    with tempfile.TemporaryDirectory(prefix="bai-kbench-") as tmp:
        binds = ",".join([*docker_image.HOST_BINDS, *PY_BINDS])
        srv = JupyterServer(Path(tmp), extra_env={"JUPYTER_BAI_DOCKER_BINDS": binds}).start()
        try:
            kinds = {"python3 (local ipykernel)": "python3"}
            made = srv.jupyter_bai("kernelspec", "install", "bench-local", "-r", "cpu=1",
                                   "-r", "mem=1g", "--user")
            assert made.returncode == 0, made.stderr
            kinds["bai session, local runtime"] = "bench-local"
            if use_docker:
                image = docker_image.build()["image"]
                made = srv.jupyter_bai("kernelspec", "install", "bench-docker", "--image", image,
                                       "-r", "cpu=1", "-r", "mem=1g", "--user")
                assert made.returncode == 0, made.stderr
                spec_file = srv.base / "data" / "kernels" / "bench-docker" / "kernel.json"
                spec = json.loads(spec_file.read_text())
                spec["env"] = {"PATH": f"{VENV_BIN}:/usr/bin:/bin"}  # ipykernel bound in
                spec_file.write_text(json.dumps(spec))
                kinds["bai session, docker runtime"] = "bench-docker"
            for kernel in kinds.values():  # warm caches (imports, image) once, untimed
                first_reply(srv, kernel)
            times: dict[str, list[float]] = {k: [] for k in kinds}
            split: dict[str, list[list[float]]] = {}
            for _ in range(args.runs):  # interleaved, so load on the machine hits all alike
                for label, kernel in kinds.items():
                    times[label].append(first_reply(srv, kernel, split))
        finally:
            srv.sigterm()
    base = statistics.median(times["python3 (local ipykernel)"])
    print(f"time to first execute_reply, {args.runs} runs each (median / p90):")
    for label, values in times.items():
        med = statistics.median(values)
        line = f"  {label:32s} {med * 1000:7.0f} ms / {pct(values, 0.9) * 1000:7.0f} ms"
        if label != "python3 (local ipykernel)":
            target = 1.5 * base + 0.2
            verdict = "meets" if med <= target else "MISSES"
            line += (f"   ratio {med / base:4.2f}x; target 1.5x + 200 ms = {target * 1000:.0f} ms:"
                     f" {verdict}")
        print(line)
    if not use_docker:
        print("  (docker runtime not measured: no Docker daemon answers)")
    print("where a session kernel's start goes (medians, ms; from its session's status history):")
    for label, kernel in kinds.items():
        if split.get(kernel):
            cols = [statistics.median(run[i] for run in split[kernel]) * 1000
                    for i in range(len(PHASES))]
            print(f"  {label}: " + "; ".join(f"{name} {v:.0f}" for name, v in zip(PHASES, cols)))


if __name__ == "__main__":
    main()
