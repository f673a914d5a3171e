"""A real JupyterLab (with the jupyter-bai engine and the built sidebar) and Debian's Chromium."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from engine_proc import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "ui" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def build_labextension() -> Path:
    """The built extension, rebuilt first if its sources changed (incremental; see labextension/build.py)."""
    spec = importlib.util.spec_from_file_location("bai_labextension_build", ROOT / "labextension" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build()
    return module.OUT


@dataclass
class Lab:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path
    base: Path
    port: int

    def client(self):  # type: ignore[no-untyped-def]
        from jupyter_bai.client import Client

        return Client(self.url, self.token)


def start_lab(base: Path, extension: Path, fake_gpus: str = "2", base_url: str = "/",
              port: int | None = None, token: str | None = None) -> Lab:
    """Start ``jupyter lab`` hosting the engine, with only our copy of the extension on its path.

    Starting again on the same ``base`` (and port and token) restarts it with its state.
    """
    jupyter_path = base / "jupyter"
    (jupyter_path / "labextensions").mkdir(parents=True, exist_ok=True)
    link = jupyter_path / "labextensions" / "jupyter-bai"
    if not link.is_symlink():
        link.symlink_to(extension)
    settings = base / "lab-settings"
    # No news prompt and no update check: they would cover the sidebar in screenshots.
    notif = settings / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True, exist_ok=True)
    (notif / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port = port or free_port()
    token = token or "ui-" + os.urandom(8).hex()
    env = {
        **os.environ,
        "JUPYTER_PATH": str(jupyter_path),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "JUPYTER_BAI_STATE_DIR": str(base / "state"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTER_BAI_FAKE_GPUS": fake_gpus,
    }
    for key in ("JUPYTER_BAI_URL", "JUPYTER_BAI_TOKEN"):
        env.pop(key, None)
    (base / "work").mkdir(exist_ok=True)
    log = base / "lab.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={base / 'work'}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         f"--ServerApp.base_url={base_url}"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(log, "ab"), start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}{base_url.rstrip('/')}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            r = httpx.get(f"{url}/bai/api/v1/resources", headers={"Authorization": f"token {token}"})
            if r.status_code == 200:
                return Lab(url, token, proc, log, base, port)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"jupyter lab did not start: {log.read_text()[-3000:]}")


def stop_lab(lab: Lab) -> None:
    if lab.proc.poll() is None:
        lab.proc.terminate()
        try:
            lab.proc.wait(30)
        except subprocess.TimeoutExpired:
            lab.proc.kill()
            lab.proc.wait()
