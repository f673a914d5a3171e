"""A real Backend.AI 23.09.10 cluster for tests and benchmarks (the vendored halfstack kit).

:func:`ensure_cluster` reuses a halfstack that already answers on 127.0.0.1:8081 with a live
agent, else runs ``tests/backendai/halfstack/halfstack.sh`` (about 3 minutes; root and a Docker
daemon needed) and returns a handle whose :meth:`Cluster.stop` runs ``stop.sh`` only for what it
started. One start per test run: the fixture is session-scoped.
"""
from __future__ import annotations

import asyncio
import fcntl
import concurrent.futures
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Coroutine

import httpx

KIT = Path(__file__).parent / "backendai" / "halfstack"
ENDPOINT = "http://127.0.0.1:8081"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # the example fixtures' admin keypair
IMAGE = "python"  # the alias halfstack.sh registers for its locally built kernel image
SDK_PYTHON_REL = "venv/bin/python"
#: Held while a halfstack starts (by this module, or by hand: `flock FILE bash halfstack.sh`).
START_LOCK = "/tmp/bai-halfstack.start.lock"


@dataclass
class Cluster:
    endpoint: str
    access_key: str
    secret_key: str
    workdir: Path
    started: bool

    @property
    def sdk_python(self) -> Path:
        """The halfstack's own venv, which has the official ``backend.ai-client`` SDK."""
        return self.workdir / SDK_PYTHON_REL

    def stop(self) -> None:
        if not self.started:
            return
        env = {**os.environ, "BAI_HALFSTACK_DIR": str(self.workdir)}
        subprocess.run(["bash", str(KIT / "stop.sh")], env=env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _ready() -> bool:
    """The manager answers and the cluster has an agent with capacity (a signed request)."""
    try:
        if httpx.get(ENDPOINT + "/", timeout=3).json().get("manager", "").split(".")[0] != "23":
            return False
    except (httpx.HTTPError, ValueError):
        return False
    from jupyter_bai.client.backendai import BackendAIConfig, BackendAIDriver

    async def capacity() -> str:
        d = BackendAIDriver(BackendAIConfig(ENDPOINT, ACCESS_KEY, SECRET_KEY), timeout=10)
        try:
            return (await d.resources()).capacity.get("cpu", "0")
        finally:
            await d.aclose()

    try:
        return float(_run(capacity)) > 0
    except Exception:
        return False


def _run(make: Callable[[], Coroutine[Any, Any, str]]) -> str:
    """``asyncio.run`` that also works under a running loop (Playwright's sync API runs one):
    there it would fail, ``_ready`` would say False and a second halfstack would start on top of
    the running one (rewriting its etcd keys and removing its kernel image when stopped)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def can_start() -> str | None:
    """Why this machine cannot run the halfstack, or None."""
    if os.geteuid() != 0:
        return "root (the halfstack installs Debian packages and runs PostgreSQL)"
    if shutil.which("docker") is None or subprocess.run(
            ["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
        return "a running Docker daemon"
    if shutil.which("apt-get") is None:
        return "Debian (apt-get)"
    return None


def _listening() -> bool:
    """Something holds the manager's port: a halfstack starting, or a busy one."""
    try:
        with socket.create_connection(("127.0.0.1", int(ENDPOINT.rsplit(":", 1)[1])), timeout=3):
            return True
    except OSError:
        return False


def _wait_ready(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if _ready():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(3)


def ensure_cluster(workdir: Path | None = None, timeout: float = 900) -> Cluster:
    """A running halfstack: the one already up, or a new one (stopped by ``Cluster.stop``).

    A manager that answers slowly (a loaded machine) is waited for, never doubled: a second
    halfstack would fight the first for its ports, and its ``stop.sh`` removes the kernel
    image both use.
    """
    default = Path(os.environ.get("BAI_HALFSTACK_DIR", "/tmp/bai-halfstack"))
    with open(START_LOCK, "a") as lock:
        # One start at a time on the machine: a second caller waits, then finds it running.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _ready() or (_listening() and _wait_ready(300)):
            return Cluster(ENDPOINT, ACCESS_KEY, SECRET_KEY, default, started=False)
        return _start(workdir, timeout)


def _start(workdir: Path | None, timeout: float) -> Cluster:
    work = workdir or Path(f"/tmp/bai-halfstack-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "BAI_HALFSTACK_DIR": str(work)}
    log = work.parent / f"{work.name}.log"
    cluster = Cluster(ENDPOINT, ACCESS_KEY, SECRET_KEY, work, started=True)
    try:
        with open(log, "wb") as out:
            subprocess.run(["bash", str(KIT / "halfstack.sh")], env=env, stdout=out,
                           stderr=subprocess.STDOUT, check=True, timeout=timeout)
        deadline = time.monotonic() + 60
        while not _ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the halfstack did not become ready; see {log}")
            time.sleep(2)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def delete_folder_when_free(client: Any, folder: str, timeout: float = 120) -> None:
    """Delete a cluster folder once no session holds it any more (23.09 refuses while one does)."""
    from jupyter_bai.spec.errors import BaiError, NotFound

    deadline = time.monotonic() + timeout
    while True:
        try:
            client.delete_vfolder(folder)
            return
        except NotFound:
            return
        except BaiError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def destroy_if_there(client: Any, session: str) -> None:
    """A test's clean-up: destroy the cluster session, which may never have been made or may
    already be gone."""
    from jupyter_bai.spec.errors import BaiError

    try:
        client.destroy_session(session, forced=True)
    except BaiError:
        pass
