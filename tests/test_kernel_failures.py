"""Every way a session kernel can fail to start: a clear message at once (what JupyterLab's
dialog shows), no session left, and a server that still stops on SIGTERM."""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from jupyter_bai.kernels.provisioner import kernelspec_json
from test_kernel_server import TERMINAL, JupyterServer, server  # noqa: F401 (fixture)


def _dies_at_start(server: JupyterServer) -> str:
    """A kernelspec whose kernel exits at once: the session dies during start."""
    spec = kernelspec_json("dies", ["cpu=1", "mem=512m"])
    spec["argv"] = ["python3", "-c", "import sys; print('kernel gave up'); sys.exit(3)",
                    "{connection_file}"]
    path = server.base / "data" / "kernels" / "dies"
    path.mkdir(parents=True)
    (path / "kernel.json").write_text(json.dumps(spec))
    return "dies"


CASES = {
    # a GPU kernelspec on a node without GPUs: refused at once, before any session exists
    "gpu-on-cpu-node": (["-r", "cuda.shares=0.5"], "larger than this whole node"),
    "over-capacity": (["-r", "cpu=4096"], "larger than this whole node"),
    "missing-vfolder": (["-v", "nothere"], "vfolder 'nothere' not found"),
    "bad-image": (["--image", "bai-no-such-image:0"], "bai-no-such-image:0"),
    "dies-during-start": (None, "exited with code 3"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_failed_kernel_start_is_clear_and_the_server_still_stops(
    server: JupyterServer, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args, expected = CASES[case]
    server.start()
    if args is None:
        name = _dies_at_start(server)
    else:
        name = "k-" + case
        made = server.jupyter_bai("kernelspec", "install", name, "--user", *args)
        assert made.returncode == 0, made.stderr
    r = server.start_notebook_kernel("fails.ipynb", name)
    assert r.status_code >= 400
    assert expected in r.json()["message"], r.json()["message"]
    assert server.http("GET", "/api/kernels").json() == []
    live = [s for s in server.http("GET", "/bai/api/v1/sessions").json()["sessions"]
            if s["status"] not in TERMINAL]
    assert live == []
    took = server.sigterm(bound=10)  # the issue: exits within 10 s
    with capsys.disabled():
        print(f"\n{case}: server exited {took:.2f} s after SIGTERM")
    assert server.proc is not None and server.proc.returncode == 0, server.log_tail()
    assert "Kernel does not exist" not in (server.base / "server.log").read_text()
    assert server.processes_left() == []


def test_a_kernel_queued_behind_busy_resources_gives_up_and_leaves_nothing(
    server: JupyterServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The node is busy (not too small): the kernel waits up to its start_timeout, then its
    queued session is cancelled and the launcher says why."""
    server.start()
    cpu = server.http("GET", "/bai/api/v1/resources").json()["capacity"]["cpu"]
    holder = server.http("POST", "/bai/api/v1/sessions", json={
        "image": "local", "name": "holder", "resources": {"cpu": cpu, "mem": "64m"}})
    assert holder.status_code == 201, holder.text
    spec = kernelspec_json("queued", ["cpu=1", "mem=64m"])
    spec["metadata"]["kernel_provisioner"]["config"]["start_timeout"] = 3
    path = server.base / "data" / "kernels" / "queued"
    path.mkdir(parents=True)
    (path / "kernel.json").write_text(json.dumps(spec))
    r = server.start_notebook_kernel("queued.ipynb", "queued")
    assert r.status_code >= 400
    assert "is still PENDING after 3 s" in r.json()["message"], r.json()["message"]
    sessions = server.http("GET", "/bai/api/v1/sessions").json()["sessions"]
    assert [s["status"] for s in sessions if s["name"] != "holder"] == ["CANCELLED"]
    server.http("DELETE", "/bai/api/v1/sessions/holder")  # not a kernel: it would outlive the stop
    took = server.sigterm(bound=10)  # the issue: exits within 10 s
    with capsys.disabled():
        print(f"\nqueued-then-timeout: server exited {took:.2f} s after SIGTERM")
    assert server.proc is not None and server.proc.returncode == 0
    assert server.processes_left() == []


def test_sigterm_while_a_kernel_is_still_starting_stops_the_server(
    server: JupyterServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The launcher waits on a kernel whose session is queued; the server is stopped then.
    jupyter_server shuts down every pending kernel id it holds: one that never got a
    KernelManager answers 404 'Kernel does not exist', which stopped the shutdown half-way
    (the process stayed up until kill -9)."""
    import threading

    server.start()
    cpu = server.http("GET", "/bai/api/v1/resources").json()["capacity"]["cpu"]
    holder = server.http("POST", "/bai/api/v1/sessions", json={
        "image": "local", "name": "holder", "resources": {"cpu": cpu, "mem": "64m"}})
    assert holder.status_code == 201, holder.text
    assert server.jupyter_bai("kernelspec", "install", "waits", "-r", "cpu=1", "-r", "mem=64m",
                              "--user").returncode == 0
    answer: list[int] = []
    launcher = threading.Thread(target=lambda: answer.append(
        _status_or_0(server, "waits.ipynb", "waits")), daemon=True)
    launcher.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not [
            s for s in server.http("GET", "/bai/api/v1/sessions").json()["sessions"]
            if s["name"] != "holder"]:
        time.sleep(0.1)
    took = server.sigterm(bound=10)  # the issue: exits within 10 s
    with capsys.disabled():
        print(f"\nsigterm-during-start: server exited {took:.2f} s after SIGTERM")
    launcher.join(timeout=30)
    assert server.proc is not None and server.proc.returncode == 0, server.log_tail()
    assert "Kernel does not exist" not in (server.base / "server.log").read_text()
    kernel_sessions = [s for s in server.sessions_in_store() if s["name"] != "holder"]
    assert kernel_sessions and all(s["status"] in TERMINAL for s in kernel_sessions), kernel_sessions
    assert not list((server.state / "kernels").glob("*.json"))


def _status_or_0(server: JupyterServer, notebook: str, kernel: str) -> int:
    """The launcher's request; 0 when the server went away before answering."""
    try:
        return server.start_notebook_kernel(notebook, kernel).status_code
    except httpx.HTTPError:
        return 0


@pytest.mark.parametrize("failing", ["gpu-session-kernel", "plain-kernel-missing-python"])
def test_a_failed_start_next_to_a_running_kernel_does_not_hang_the_stop(
    server: JupyterServer, failing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's scenario: a notebook's session kernel runs, the GPU kernel fails to start
    (node without GPUs), then SIGTERM. jupyter_client keeps a failed start's id among its
    pending kernels; shutting all kernels down then met 'HTTP 404 Kernel does not exist',
    the server's cleanup stopped there and the process stayed up. A kernel that is not a
    session kernel failing the same way must not hang it either."""
    server.start()
    assert server.jupyter_bai("kernelspec", "install", "works", "-r", "cpu=1", "-r", "mem=256m",
                              "--user").returncode == 0
    r = server.start_notebook_kernel("works.ipynb", "works")
    assert r.status_code == 201, r.text
    if failing == "gpu-session-kernel":
        made = server.jupyter_bai("kernelspec", "install", "gpu", "-r", "cuda.shares=0.5", "--user")
        assert made.returncode == 0, made.stderr
    else:
        path = server.base / "data" / "kernels" / "gpu"
        path.mkdir(parents=True)
        (path / "kernel.json").write_text(json.dumps({
            "argv": [str(server.base / "no-such-python"), "-m", "ipykernel_launcher", "-f",
                     "{connection_file}"],
            "display_name": "broken", "language": "python"}))
    failed = server.start_notebook_kernel("gpu.ipynb", "gpu")
    assert failed.status_code >= 400
    assert [k["name"] for k in server.http("GET", "/api/kernels").json()] == ["works"]
    took = server.sigterm(bound=10)  # the issue: exits within 10 s
    with capsys.disabled():
        print(f"\n{failing} next to a running kernel: server exited {took:.2f} s after SIGTERM")
    assert server.proc is not None and server.proc.returncode == 0, server.log_tail()
    assert "Kernel does not exist" not in (server.base / "server.log").read_text()
    assert all(s["status"] in TERMINAL for s in server.sessions_in_store())
    assert server.processes_left() == []
