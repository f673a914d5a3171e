"""A jupyter_client kernel provisioner whose kernel runs inside a compute session.

A kernelspec names it (``metadata.kernel_provisioner.provisioner_name =
"bai-session-provisioner"``) with the session's image, resources and mounts in
its ``config``; "Python 3 (GPU 0.5)" is then a launcher choice like any other.
The kernel is the session's main process (a batch session), so the session's
status *is* the kernel's liveness, and shutting the kernel down destroys it.
The ZMQ ports stay on 127.0.0.1: local sessions share the host's network.
"""
from __future__ import annotations

import asyncio
import json
import shlex
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner
from traitlets import Dict, List, Unicode

from ..client import AsyncClient
from ..spec.errors import BaiError

TERMINAL = ("TERMINATED", "ERROR", "CANCELLED")
CONNECTION_IN_SESSION = ".bai-kernel.json"


class BaiSessionProvisioner(LocalProvisioner):  # type: ignore[misc]
    """Launches the kernelspec's argv as a session on the jupyter-bai engine."""

    image = Unicode("local", config=True, help="Image of the kernel's session.")
    resources = List(Unicode(), config=True, help='Resource slots, e.g. ["cpu=1", "mem=2g"].')
    mounts = List(Unicode(), config=True, help="vfolder mounts in Backend.AI's grammar.")
    env = Dict(Unicode(), config=True, help="Extra environment for the kernel.")

    session_name: str | None = None
    _exit_code: int | None = None

    def _client(self) -> AsyncClient:
        return AsyncClient()

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Start the session; its command writes the connection file, then execs the kernel."""
        kernel_id = str(kwargs.get("kernel_id") or self.kernel_id)
        connection_file = self.parent.connection_file if self.parent else None
        if not connection_file:
            raise RuntimeError("the kernel manager wrote no connection file")
        with open(connection_file) as f:
            connection = f.read()
        argv = [CONNECTION_IN_SESSION if a == connection_file else a for a in cmd]
        write = ("import os; open(%r, 'w').write(os.environ.pop('BAI_KERNEL_CONNECTION'))"
                 % CONNECTION_IN_SESSION)
        command = (f"python3 -c {shlex.quote(write)} && unset BAI_KERNEL_CONNECTION "
                   f"&& exec {shlex.join(argv)}")
        self.session_name = f"kernel-{kernel_id[:8]}"
        client = self._client()
        try:
            session = await client.create_session(
                self.image, name=self.session_name, type="batch", command=command,
                resources=list(self.resources) or None, mounts=list(self.mounts) or None,
                env={**self.env, "BAI_KERNEL_CONNECTION": connection},
            )
            session = await client.wait_session(session["name"], {"RUNNING"}, timeout=120)
        finally:
            await client.aclose()
        if session["status"] in TERMINAL:
            raise RuntimeError(
                f"kernel session {self.session_name} ended at start: {session.get('status_info')}"
            )
        self.pid = None
        return self.connection_info

    @property
    def has_process(self) -> bool:
        return self.session_name is not None and self._exit_code is None

    async def poll(self) -> int | None:
        if self.session_name is None:
            return 0
        if self._exit_code is not None:
            return self._exit_code
        client = self._client()
        try:
            session = await client.get_session(self.session_name)
        except BaiError:
            self._exit_code = 1
            return 1
        finally:
            await client.aclose()
        if session["status"] in TERMINAL:
            self._exit_code = session.get("exit_code") if session.get("exit_code") is not None else 1
            return self._exit_code
        return None

    async def wait(self) -> int | None:
        while await self.poll() is None:
            await asyncio.sleep(0.2)
        return self._exit_code

    async def send_signal(self, signum: int) -> None:
        """Signals cannot cross into the session: kernelspecs use interrupt_mode "message"."""
        self.log.warning("bai session kernels are interrupted by message; signal %s ignored", signum)

    async def _destroy(self, forced: bool) -> None:
        if self.session_name is None or self._exit_code is not None:
            return
        client = self._client()
        try:
            session = await client.destroy_session(self.session_name, forced=forced)
            self._exit_code = session.get("exit_code") if session.get("exit_code") is not None else -15
        except BaiError as exc:
            self.log.info("kernel session %s: %s", self.session_name, exc)
            self._exit_code = -9
        finally:
            await client.aclose()

    async def kill(self, restart: bool = False) -> None:
        await self._destroy(forced=True)

    async def terminate(self, restart: bool = False) -> None:
        await self._destroy(forced=False)

    async def cleanup(self, restart: bool = False) -> None:
        if restart:
            self.session_name, self._exit_code = None, None

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info["session_name"] = self.session_name
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        await super().load_provisioner_info(provisioner_info)
        self.session_name = provisioner_info.get("session_name")


def kernelspec(display_name: str, resources: list[str], image: str = "local") -> dict[str, Any]:
    """The kernel.json for a session kernel (the files under kernels/ are made by this)."""
    return {
        "argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": "message",
        "metadata": {
            "kernel_provisioner": {
                "provisioner_name": "bai-session-provisioner",
                "config": {"image": image, "resources": resources},
            }
        },
    }


if __name__ == "__main__":  # regenerate kernels/*/kernel.json
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "kernels"
    for name, title, res in [
        ("bai-python", "Python 3 (bai session)", ["cpu=1", "mem=2g"]),
        ("bai-python-gpu-half", "Python 3 (GPU 0.5)", ["cpu=2", "mem=8g", "cuda.shares=0.5"]),
    ]:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "kernel.json").write_text(json.dumps(kernelspec(title, res), indent=2) + "\n")
