"""Session kernels on the docker runtime: ports published on 127.0.0.1 only, and an image
without ipykernel named in the launcher's error."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import docker_image
from conftest import require
from test_kernel_server import TERMINAL, JupyterServer, ok, server  # noqa: F401 (fixture)

VENV_BIN = str(Path(sys.executable).parent)
# What the test image needs from the host for this Python (and its ipykernel): /usr, the
# venv and the interpreter it was made from (read-only binds, like the local sandbox's).
PY_BINDS = sorted({sys.prefix, sys.base_prefix} - {"/usr"})


@pytest.fixture()
def image() -> str:
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception:  # noqa: BLE001
        client = None
    require(client is not None, "a Docker engine (dockerd answering)")
    return docker_image.build(client)["image"]


def _docker_server(base: Path) -> JupyterServer:
    binds = ",".join([*docker_image.HOST_BINDS, *PY_BINDS])
    return JupyterServer(base, extra_env={"JUPYTER_BAI_DOCKER_BINDS": binds})


def _kernel_container(image: str, session: dict[str, Any]) -> Any:
    import docker

    client = docker.from_env(timeout=30)
    found = client.containers.list(filters={"label": f"ai.backend.bai.session-id={session['id']}"})
    assert len(found) == 1
    return found[0]


def test_kernel_runs_in_a_container_with_loopback_only_ports(tmp_path: Path, image: str,
                                                           bwrap: str) -> None:
    srv = _docker_server(tmp_path)
    (srv.root / "nb").mkdir()
    (srv.root / "nb" / "data.txt").write_text("host file\n")
    srv.start()
    try:
        made = srv.jupyter_bai("kernelspec", "install", "dk", "--image", image, "-r", "cpu=1",
                               "-r", "mem=1g", "--user")
        assert made.returncode == 0, made.stderr
        spec_file = srv.base / "data" / "kernels" / "dk" / "kernel.json"
        spec = json.loads(spec_file.read_text())
        # the test image has no Python of its own: this one (with ipykernel) is bound in
        spec["env"] = {"PATH": f"{VENV_BIN}:/usr/bin:/bin"}
        spec_file.write_text(json.dumps(spec))

        r = srv.start_notebook_kernel("nb/k.ipynb", "dk")
        assert r.status_code == 201, r.text
        kid = r.json()["kernel"]["id"]
        sessions = srv.http("GET", "/bai/api/v1/sessions").json()["sessions"]
        sess = [s for s in sessions if s["labels"].get("kernel-id") == kid][0]
        assert sess["runtime"] == "docker" and sess["type"] == "interactive"
        container = _kernel_container(image, sess)
        published = container.attrs["NetworkSettings"]["Ports"]
        assert len(published) >= 5  # the kernel's five (and the image's service ports)
        assert {b["HostIp"] for binds in published.values() for b in binds} == {"127.0.0.1"}
        kc = srv.client_for(kid)
        try:
            assert ok(kc, "import os; print(os.getcwd())") == "/home/work/jupyter/nb"
            assert ok(kc, "print(open('data.txt').read())") == "host file"
            assert ok(kc, "print(open('/etc/hostname').read())") == sess["name"][:63]
            ok(kc, "y = 'kept'")
        finally:
            kc.stop_channels()
        # the server dies and comes back: the container kept running, the kernel is reattached
        srv.kill9()
        srv.start()
        kc = srv.client_for(kid)
        try:
            assert ok(kc, "print(y)") == "kept"
        finally:
            kc.stop_channels()
        took = srv.sigterm()
        print(f"docker kernel: server stopped {took:.2f} s after SIGTERM")
        assert all(s["status"] in TERMINAL for s in srv.sessions_in_store())
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
        import docker

        for c in docker.from_env().containers.list(
            all=True, filters={"label": f"ai.backend.bai.state-dir={srv.state.resolve()}"}
        ):
            c.remove(force=True)


def test_an_image_without_ipykernel_is_named_in_the_error(tmp_path: Path, image: str,
                                                          bwrap: str) -> None:
    srv = _docker_server(tmp_path)
    srv.start()
    try:
        made = srv.jupyter_bai("kernelspec", "install", "nokernel", "--image", image, "--user")
        assert made.returncode == 0, made.stderr
        r = srv.start_notebook_kernel("k.ipynb", "nokernel")
        assert r.status_code >= 400
        message = r.json()["message"]
        assert f"image '{image}' has no ipykernel" in message, message
        assert srv.http("GET", "/api/kernels").json() == []
        srv.sigterm()
        assert all(s["status"] in TERMINAL for s in srv.sessions_in_store())
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
