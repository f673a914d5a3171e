"""GPU checks for a machine with an NVIDIA GPU (not run in CI). One line per check.

1. discovery through pynvml;
2. a `cuda.shares=0.5` batch session on the local runtime: allocating within its share works,
   allocating beyond it fails (MPS limits enforced; the sandbox sees /dev/nvidia* and the MPS
   pipe directory);
3. two such sessions at once on one GPU, both limits holding;
4. a model service whose two routes share one GPU at 0.5 shares each: both HEALTHY, both
   holding GPU memory, both serving through the endpoint.

Runs the engine in-process (no Jupyter server needed); needs the package's runtime
dependencies (pydantic, pyyaml, pynvml/nvidia-ml-py) and torch in the Python that runs it.
Usage: python3 bench/gpu_check.py
"""
from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jupyter_bai.engine.config import EngineConfig  # noqa: E402
from jupyter_bai.engine.engine import Engine  # noqa: E402
from jupyter_bai.engine.node import discover  # noqa: E402
from jupyter_bai.spec.session import SessionSpec  # noqa: E402

PROBE = r"""
import os, sys, time
import torch
share = float(os.environ.get("BACKENDAI_GPU_SHARES", "0"))
total = torch.cuda.get_device_properties(0).total_memory
print("visible", os.environ.get("CUDA_VISIBLE_DEVICES"), "devices", torch.cuda.device_count(),
      "mps_pipe", os.path.isdir(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/nonexistent")),
      "dev_nvidia", sorted(p for p in os.listdir("/dev") if p.startswith("nvidia"))[:3], flush=True)
within = torch.empty(int(total * share * 0.7), dtype=torch.uint8, device="cuda")
print("WITHIN-OK", flush=True)
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
del within
torch.cuda.empty_cache()
try:
    beyond = torch.empty(int(total * share * 1.3), dtype=torch.uint8, device="cuda")
    print("BEYOND-ALLOCATED", flush=True)
except RuntimeError as exc:
    print("BEYOND-REFUSED", str(exc).splitlines()[0][:120], flush=True)
"""


ROUTE_SERVER = r"""
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
import torch
share = float(os.environ.get("BACKENDAI_GPU_SHARES", "0"))
held = torch.empty(int(torch.cuda.get_device_properties(0).total_memory * share * 0.5),
                   dtype=torch.uint8, device="cuda")
class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        body = json.dumps({"port": os.environ["PORT"], "share": share,
                           "held": held.numel(), "gpu": torch.cuda.get_device_name(0)}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""

SERVICE_DEFINITION = """models:
  - name: gpu-check
    model_path: /models
    service:
      start_command: ["{python}", "/models/route.py"]
      health_check: {{path: /health, interval: 2, initial_delay: 120}}
"""


async def check_service(engine: Engine) -> bool:
    """Two routes at 0.5 shares each on one GPU, both healthy and serving."""
    import httpx

    from jupyter_bai.spec.service import ServiceCreate
    from jupyter_bai.spec.vfolder import VFolderCreate

    engine.vfolders.create(VFolderCreate(name="gpusvc", usage_mode="model"))
    root = engine.vfolders.host_path("gpusvc")
    (root / "route.py").write_text(ROUTE_SERVER)
    (root / "model-definition.yaml").write_text(SERVICE_DEFINITION.format(python=sys.executable))
    assert engine.services is not None
    engine.services.create(ServiceCreate(
        name="gpusvc", image="local", model_folder="gpusvc", replicas=2, public=True,
        resources={"cpu": "1", "mem": "4g", "cuda.shares": "0.5"}))
    info: dict = {}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        info = engine.services.get("gpusvc")
        statuses = [r["status"] for r in info["routes"]]
        if statuses == ["HEALTHY", "HEALTHY"] or "FAILED_TO_START" in statuses:
            break
        await asyncio.sleep(0.5)
    ok = line("service routes healthy", [r["status"] for r in info["routes"]] == ["HEALTHY"] * 2,
              f"{info.get('status')}: {[(r['status'], r['status_info']) for r in info['routes']]}")
    answers = []
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(4):
            r = await http.get(info["endpoint"] + "health")
            answers.append(r.json() if r.status_code == 200 else {"error": r.text})
    ports = {a.get("port") for a in answers}
    ok &= line("two routes share one GPU and serve",
               len(ports) == 2 and all(a.get("share") == 0.5 and a.get("held") for a in answers),
               f"answers {answers[:2]}")
    engine.services.delete("gpusvc")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and engine.services.list():
        await asyncio.sleep(0.5)
    return ok


def line(name: str, ok: bool, detail: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
    return ok


async def run_sessions(engine: Engine, count: int, hold: float) -> list[tuple[dict, str]]:
    ids = []
    for i in range(count):
        spec = SessionSpec(image="local", name=f"gpu-check-{count}-{i}", type="batch",
                           command=f"{sys.executable} /home/work/probe/probe.py {hold}",
                           resources={"cpu": "1", "mem": "4g", "cuda.shares": "0.5"},
                           mounts=["probe:/home/work/probe:ro"])
        ids.append(engine.sessions.create(spec)["id"])
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        done = [engine.sessions.get(i) for i in ids]
        if all(s["status"] in ("TERMINATED", "ERROR", "CANCELLED") for s in done):
            return [(s, engine.sessions.logs(s["id"])) for s in done]
        await asyncio.sleep(0.2)
    raise TimeoutError("GPU sessions did not finish in 10 minutes")


async def main() -> int:
    ok = True
    node = discover()
    ok &= line("discovery", bool(node.gpus) and all(g.source == "nvml" for g in node.gpus),
               f"{len(node.gpus)} GPU(s): " + ", ".join(f"{g.name} {g.memory >> 30} GiB" for g in node.gpus)
               + (f" (nvml error: {node.nvml_error})" if node.nvml_error else ""))
    mps = shutil.which("nvidia-cuda-mps-control")
    ok &= line("mps", mps is not None, f"nvidia-cuda-mps-control at {mps}")
    if not node.gpus:
        return 1
    state = Path(tempfile.mkdtemp(prefix="bai-gpu-check-"))
    engine = Engine(EngineConfig(state_dir=state))
    await engine.start()
    try:
        from jupyter_bai.spec.vfolder import VFolderCreate

        engine.vfolders.create(VFolderCreate(name="probe"))
        (engine.vfolders.host_path("probe") / "probe.py").write_text(PROBE)
        res = engine.resources()
        ok &= line("resources", res["fractional_gpu_limit"].startswith("enforced"),
                   f"fractional limit {res['fractional_gpu_limit']}, free {res['free']}")

        [(s, logs)] = await run_sessions(engine, 1, 0)
        ok &= line("sandbox sees GPU", "mps_pipe True" in logs and "nvidia" in logs,
                   logs.splitlines()[0] if logs else f"no output ({s['status_info']})")
        ok &= line("within share", "WITHIN-OK" in logs, f"{s['status']} exit {s['exit_code']}")
        ok &= line("beyond share refused", "BEYOND-REFUSED" in logs,
                   next((x for x in logs.splitlines() if x.startswith("BEYOND")), "no BEYOND line"))

        pair = await run_sessions(engine, 2, 5)
        devices = {tuple((s.get("allocation") or {}).get("devices", [])) for s, _ in pair}
        ok &= line("two sessions on one GPU", len(devices) == 1 and all("WITHIN-OK" in lg for _, lg in pair),
                   f"devices {sorted(devices)}, statuses {[s['status'] for s, _ in pair]}")
        ok &= line("both limits hold", all("BEYOND-REFUSED" in lg for _, lg in pair),
                   "; ".join(next((x for x in lg.splitlines() if x.startswith("BEYOND")), "none")
                             for _, lg in pair))
        ok &= await check_service(engine)
    finally:
        await engine.close()
        if engine.mps:
            engine.mps.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
