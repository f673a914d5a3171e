"""`make lab`'s path: JupyterLab starts with the jupyter_bai server extension enabled."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from engine_proc import free_port

BIN = Path(sys.executable).parent


def test_extension_is_enabled_in_the_environment() -> None:
    out = subprocess.run([str(BIN / "jupyter"), "server", "extension", "list"],
                         capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert "jupyter_bai" in text and "enabled" in text.split("jupyter_bai", 1)[1].splitlines()[0]


def test_jupyterlab_hosts_the_engine_and_writes_the_connection_file(tmp_path: Path, bwrap: str) -> None:
    port, token = free_port(), "lab-token"
    env = {**os.environ, "JUPYTER_BAI_STATE_DIR": str(tmp_path / "state"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    env.pop("JUPYTER_BAI_URL", None)
    proc = subprocess.Popen(
        [str(BIN / "jupyter"), "lab", "--no-browser", "--allow-root", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={tmp_path}"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "wb"),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{url}/bai/api/v1/resources", headers={"Authorization": f"token {token}"})
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "lab.log").read_text()[-2000:]
            time.sleep(0.5)
        assert r.status_code == 200
        assert httpx.get(f"{url}/lab", headers={"Authorization": f"token {token}"}).status_code == 200
        conn = json.loads((tmp_path / "runtime" / "bai-engine.json").read_text())
        assert conn["url"].rstrip("/") in (url, f"http://localhost:{port}") and conn["token"] == token
        assert conn["state_dir"] == str(tmp_path / "state")
    finally:
        proc.terminate()
        proc.wait(30)
