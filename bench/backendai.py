"""jupyter-bai against the official Backend.AI SDK on the same cluster, in one run.

Two measurements, each alternating the two sides ``--runs`` times on the same halfstack:
session create → RUNNING (interactive, ``cpu=1 mem=512m``), and a vfolder upload of
``--mb`` MB (one file). The SDK side runs in the halfstack's own venv (its pins cannot live in
ours) as one long-lived subprocess, timed inside that process so interpreter start-up is not
counted against it. Prints medians (s) and the ratio jupyter-bai / SDK (target: at most 1.1).

Usage: .venv/bin/python bench/backendai.py [--runs 3] [--mb 100]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from backendai_cluster import IMAGE, ensure_cluster  # noqa: E402

from jupyter_bai.client import Client  # noqa: E402
from jupyter_bai.client.backendai import BackendAIConfig, BackendAIDriver  # noqa: E402

# Runs in the halfstack venv: reads one JSON command per line, answers with seconds taken.
SDK_WORKER = r"""
import json, sys, time, os
from pathlib import Path
from ai.backend.client.session import Session
from ai.backend.client.config import APIConfig
cfg = APIConfig(endpoint=os.environ["EP"], endpoint_type="api", access_key=os.environ["AK"],
                secret_key=os.environ["SK"])
with Session(config=cfg) as api:
    for line in sys.stdin:
        cmd = json.loads(line)
        t0 = time.perf_counter()
        if cmd["op"] == "session":
            s = api.ComputeSession.get_or_create(cmd["image"], name=cmd["name"],
                                                 resources={"cpu": 1, "mem": "512m"})
            while s.get_info()["status"] != "RUNNING":  # get_or_create waits; be sure
                time.sleep(0.05)
            dt = time.perf_counter() - t0
            s.destroy(forced=True)
        elif cmd["op"] == "upload":
            src = Path(cmd["file"])
            import contextlib, io
            with contextlib.redirect_stdout(io.StringIO()):
                api.VFolder(cmd["folder"]).upload([src.name], basedir=src.parent)
            dt = time.perf_counter() - t0
        print(json.dumps({"seconds": dt}), flush=True)
"""


class SDK:
    def __init__(self, python: Path, endpoint: str, ak: str, sk: str) -> None:
        self.proc = subprocess.Popen(
            [str(python), "-c", SDK_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env={**os.environ, "EP": endpoint, "AK": ak, "SK": sk})

    def run(self, **cmd: str) -> float:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the SDK worker died (see its stderr above)")
        return float(json.loads(line)["seconds"])

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    cluster = ensure_cluster()
    client = Client(driver=BackendAIDriver(BackendAIConfig(
        cluster.endpoint, cluster.access_key, cluster.secret_key)))
    sdk = SDK(cluster.sdk_python, cluster.endpoint, cluster.access_key, cluster.secret_key)
    folder = f"bench{uuid.uuid4().hex[:6]}"
    times: dict[str, list[float]] = {"bai-session": [], "sdk-session": [], "bai-upload": [], "sdk-upload": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.runs):
                name = f"bb{uuid.uuid4().hex[:6]}"
                t0 = time.perf_counter()
                client.create_session(IMAGE, name=name, resources={"cpu": 1, "mem": "512m"},
                                      wait=True, timeout=300)
                times["bai-session"].append(time.perf_counter() - t0)
                client.destroy_session(name, forced=True)
                client.wait_session(name, {"TERMINATED"}, timeout=120)
                sname = f"sb{uuid.uuid4().hex[:6]}"
                times["sdk-session"].append(sdk.run(op="session", image=IMAGE, name=sname))
                client.wait_session(sname, {"TERMINATED"}, timeout=120)
            client.create_vfolder(folder)
            for i in range(args.runs):
                src = Path(tmp) / f"blob{i}.bin"
                with open(src, "wb") as f:
                    for _ in range(args.mb):
                        f.write(os.urandom(1 << 20))
                t0 = time.perf_counter()
                client.upload(folder, [src], f"bai{i}")
                times["bai-upload"].append(time.perf_counter() - t0)
                sdk_src = Path(tmp) / f"sdk{i}.bin"
                src.rename(sdk_src)
                times["sdk-upload"].append(sdk.run(op="upload", folder=folder, file=str(sdk_src)))
                sdk_src.unlink()
    finally:
        sdk.close()
        try:
            client.delete_vfolder(folder)
        except Exception:
            pass
        client.close()
        cluster.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"Backend.AI {cluster.endpoint}: {args.runs} runs each, medians")
    for what, label in (("session", "session create -> RUNNING"), ("upload", f"vfolder upload {args.mb} MB")):
        bai, ref = med[f"bai-{what}"], med[f"sdk-{what}"]
        print(f"  {label:28s} jupyter-bai {bai:7.3f}s   SDK {ref:7.3f}s   ratio {bai / ref:5.2f}x")


if __name__ == "__main__":
    main()
