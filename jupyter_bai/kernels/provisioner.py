"""A jupyter_client kernel provisioner whose kernel runs inside a compute session.

A kernelspec names it (``metadata.kernel_provisioner.provisioner_name =
"bai-session-provisioner"``) with the session's image, resources and mounts in its
``config`` (``jupyter bai kernelspec install`` writes them). The session is
``interactive``: its agent answers ``session exec``/``run`` next to the kernel, and the
kernel is its startup command; when the kernel exits, the startup command ends the agent,
so the session's status is the kernel's liveness either way.

The Jupyter server's root directory is bound read-write at :data:`ROOT_TARGET` and the
kernel starts in the notebook's folder under it; no other host path is bound. The ZMQ
ports stay on 127.0.0.1: local sessions share the host's network.
"""
from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner
from traitlets import Dict, Float, List, Unicode

from ..spec.errors import BaiError
from . import state
from .access import SessionAccess, access_for, server_app

TERMINAL = ("TERMINATED", "ERROR", "CANCELLED")
ROOT_TARGET = "/home/work/jupyter"
CONNECTION_IN_SESSION = "\0connection"  # replaced by "$HOME/.bai-kernel.json" in the command
ENDED_BY_KERNEL = "process exited"  # status_info when the kernel (the startup command) ended
LOG_LINES = 8
PORT_KEYS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
TICK = 0.025  # seconds between heartbeat pings while a kernel starts
QUEUED = ("PENDING", "SCHEDULED")
QUEUED_POLL = 0.1  # a launch (sandbox, container, agent) takes longer than this anyway


def _slots(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"invalid resource '{item}' in the kernelspec: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _is_local(image: str) -> bool:
    return image == "local" or image.startswith("local:")


def kernel_command(argv: list[str], cwd: str, image: str) -> str:
    """The startup command: write the connection file, run the kernel, then end the session.

    ``$PPID`` is the session's agent: ending it when the kernel exits makes the session end
    with the kernel. ``$BAI_ROOT`` is set only for unsandboxed local sessions. Whether the
    image has ipykernel is asked only after the kernel failed (no extra Python start).
    """
    python = argv[0] if argv and "python" in Path(argv[0]).name else "python3"
    has_ipykernel = "import importlib.util as u, sys; sys.exit(u.find_spec('ipykernel') is None)"
    missing_kernel = f"bai kernel: image '{image}' has no ipykernel (pip install ipykernel in the image)"
    missing_dir = f"bai kernel: the folder {cwd} is missing in the session"
    return (
        "(umask 077; printf '%s' \"$BAI_KERNEL_CONNECTION\" > \"$HOME/.bai-kernel.json\"); "
        "unset BAI_KERNEL_CONNECTION; "
        f"cd \"${{BAI_ROOT:-}}\"{shlex.quote(cwd)} || {{ echo {shlex.quote(missing_dir)} >&2; "
        "kill -TERM $PPID; exit 1; }; "
        f"{_argv_text(argv)}; rc=$?; "
        f"if [ $rc -ne 0 ] && ! {shlex.quote(python)} -c {shlex.quote(has_ipykernel)} 2>/dev/null; "
        f"then echo {shlex.quote(missing_kernel)} >&2; "
        "else echo \"bai kernel: exited with code $rc\"; fi; kill -TERM $PPID"
    )


def _argv_text(argv: list[str]) -> str:
    return " ".join('"$HOME/.bai-kernel.json"' if a == CONNECTION_IN_SESSION else shlex.quote(a)
                    for a in argv)


class BaiSessionProvisioner(LocalProvisioner):  # type: ignore[misc]
    """Launches the kernelspec's argv as the startup command of an interactive session."""

    image = Unicode("local", config=True, help="Image of the kernel's session.")
    resources = List(Unicode(), config=True, help='Resource slots, e.g. ["cpu=1", "mem=2g"].')
    mounts = List(Unicode(), config=True, help="vfolder mounts in Backend.AI's grammar.")
    env = Dict(Unicode(), config=True, help="Extra environment for the kernel.")
    root_target = Unicode(ROOT_TARGET, config=True,
                          help="Where the Jupyter server's root directory appears in the session.")
    start_timeout = Float(120.0, config=True,
                          help="Seconds to wait for the session (queued or starting) and kernel.")

    session_name: str | None = None
    _exit_code: int | None = None
    _stopping = False
    _access: SessionAccess | None = None

    # -- where things are --------------------------------------------------
    @property
    def access(self) -> SessionAccess:
        if self._access is None:
            self._access = access_for(server_app(self.parent))
        return self._access

    def _layout(self, cwd: str | None, notebook: str | None) -> tuple[list[dict[str, str]], str, str]:
        """(binds, working directory in the session, notebook path relative to the root)."""
        app = server_app(self.parent)
        root = os.path.realpath(app.root_dir) if app is not None else None
        if root is None:
            return [], "/home/work", notebook or ""
        binds = [{"source": root, "target": self.root_target, "perm": "rw"}]
        inside = self.root_target
        if cwd:
            rel = os.path.relpath(os.path.realpath(cwd), root)
            if rel != "." and not rel.startswith(".."):
                inside = f"{self.root_target}/{rel}"
        rel_nb = ""
        if notebook:
            rel_nb = os.path.relpath(os.path.realpath(notebook), root)
            rel_nb = "" if rel_nb.startswith("..") else rel_nb
        return binds, inside, rel_nb

    # -- launch ------------------------------------------------------------
    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Create the session and return once the kernel listens (or fail with its log)."""
        kernel_id = str(kwargs.get("kernel_id") or self.kernel_id)
        connection_file = self.parent.connection_file if self.parent else None
        if not connection_file:
            raise RuntimeError("the kernel manager wrote no connection file")
        with open(connection_file) as f:
            connection = f.read()
        env_in = kwargs.get("env") or {}
        notebook = env_in.get("JPY_SESSION_NAME")
        binds, cwd, rel_nb = self._layout(kwargs.get("cwd"), notebook)
        local = _is_local(self.image)
        if not local and self.parent is not None and cmd and cmd[0] == sys.executable:
            # jupyter_client swapped "python3" for this server's Python; a container has its own
            cmd = [self.parent.kernel_spec.argv[0], *cmd[1:]]
        argv = [CONNECTION_IN_SESSION if a == connection_file else a for a in cmd]
        env = {**self.env, **(self.parent.kernel_spec.env if self.parent else {})}
        conn = json.loads(connection)
        # In a container the kernel listens on its own interfaces; Docker publishes the
        # ports on the host's 127.0.0.1 only. Local sessions share the host's loopback.
        env["BAI_KERNEL_CONNECTION"] = connection if local else json.dumps({**conn, "ip": "0.0.0.0"})
        if rel_nb:
            env["JPY_SESSION_NAME"] = f"{self.root_target}/{rel_nb}"
        labels = {"kernel-id": kernel_id, "kernelspec": str(getattr(self.parent, "kernel_name", ""))}
        if rel_nb:
            labels["notebook"] = rel_nb
        name = f"kernel-{kernel_id[:8]}-{int(time.time() * 1000) % 100000:05d}"
        self._exit_code, self._stopping = None, False
        try:
            body: dict[str, Any] = {
                "image": self.image, "name": name, "type": "interactive",
                "command": kernel_command(argv, cwd, self.image),
                "resources": _slots(list(self.resources)), "mounts": list(self.mounts),
                "env": env, "labels": labels, "binds": binds,
                "ports": [] if local else [int(conn[k]) for k in PORT_KEYS],
            }
            await self.access.create(body)
        except Exception as exc:  # refused at once (over capacity, bad image, unknown folder...)
            self.session_name, self._exit_code = None, 1
            self._forget_pending(kernel_id)
            if isinstance(exc, BaiError):  # JupyterLab's dialog shows this line
                title = self.parent.kernel_spec.display_name if self.parent else "this kernel"
                raise RuntimeError(f"{title} cannot start here: {exc}") from None
            raise
        self.session_name = name
        try:
            await self._wait_started(conn, local)
        except BaseException:
            self._forget_pending(kernel_id)
            await self._destroy(forced=True)
            raise
        self.pid = None
        self._record()
        return self.connection_info

    async def _wait_started(self, connection: dict[str, Any], local: bool) -> None:
        """Return once the kernel echoes a heartbeat; fail as soon as its session ends.

        Two waits race: the heartbeat (pinged every :data:`TICK` from the moment the ports
        are known, so a kernel is seen within a tick of listening, whatever the session's
        status says) and the engine's status events (a session that ends wakes this at once).
        """
        assert self.session_name is not None
        ending = asyncio.ensure_future(self.access.ending(self.session_name))
        up = asyncio.ensure_future(self._heartbeat_up(connection, local))
        try:
            done, _ = await asyncio.wait({ending, up}, timeout=self.start_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if ending in done:
                raise RuntimeError(await self._ended_message(ending.result()))
            if up in done:
                up.result()
                return
            session = await self.access.get(self.session_name)
            raise RuntimeError(
                f"kernel session {self.session_name} is still {session['status']} after "
                f"{self.start_timeout:g} s ({session.get('status_info') or 'waiting for resources'});"
                " it was destroyed"
            )
        finally:
            for task in (ending, up):
                task.cancel()
            await asyncio.gather(ending, up, return_exceptions=True)

    async def _heartbeat_up(self, connection: dict[str, Any], local: bool) -> None:
        """Ping from the start of the session's launch (queued: no kernel can answer yet;
        Docker: once the ports it published are known) until the kernel echoes."""
        assert self.session_name is not None
        while True:
            session = await self.access.get(self.session_name)
            if session["status"] in QUEUED:
                await asyncio.sleep(QUEUED_POLL)
            elif local or session.get("ports"):
                break
            else:
                await asyncio.sleep(TICK)
        if not local:
            connection = self._published(session, connection)
        heart = _Heartbeat(connection["ip"], connection["hb_port"])
        try:
            while not await heart.beat(timeout=TICK):
                pass
        finally:
            heart.close()

    def _published(self, session: dict[str, Any], connection: dict[str, Any]) -> dict[str, Any]:
        """Container ports -> the host ports Docker published them on (127.0.0.1)."""
        published = session.get("ports") or {}
        try:
            host = {k: int(published[str(connection[k])]) for k in PORT_KEYS}
        except KeyError:
            raise RuntimeError(
                f"kernel session {self.session_name}: the runtime published no ports "
                f"for the kernel (got {published})"
            ) from None
        self.connection_info = {**self.connection_info, **host, "ip": "127.0.0.1"}
        return {**connection, **host, "ip": "127.0.0.1"}

    async def _ended_message(self, session: dict[str, Any]) -> str:
        name = self.session_name or "?"
        try:
            tail = (await self.access.logs(name, LOG_LINES)).strip()
        except BaiError:
            tail = ""
        lines = [ln for ln in tail.splitlines() if ln.startswith("bai kernel:")]
        why = lines[0].removeprefix("bai kernel: ") if lines else (
            session.get("status_info") or session["status"])
        more = f"\n{tail}" if tail and not lines else ""
        return f"kernel session {name} ended during start: {why}{more}"

    def _forget_pending(self, kernel_id: str) -> None:
        """A failed start leaves its id in the server's pending kernels (jupyter_client keeps
        it), and shutdown then fails with 'Kernel does not exist': drop it once it is done."""
        mkm = getattr(self.parent, "parent", None)
        pending = getattr(mkm, "_pending_kernels", None)
        task = pending.get(kernel_id) if isinstance(pending, dict) else None
        if task is None or not hasattr(task, "add_done_callback"):
            return

        def drop(_: Any) -> None:
            if kernel_id not in getattr(mkm, "_kernels", {}) and pending.get(kernel_id) is task:
                pending.pop(kernel_id, None)

        task.add_done_callback(drop)

    # -- liveness ----------------------------------------------------------
    @property
    def has_process(self) -> bool:
        return self.session_name is not None and self._exit_code is None

    async def poll(self) -> int | None:
        if self.session_name is None:
            return 0
        if self._exit_code is not None:
            return self._exit_code
        try:
            session = await self.access.get(self.session_name)
        except BaiError:
            self._exit_code = 1
            return 1
        if session["status"] not in TERMINAL:
            return None
        code = session.get("exit_code")
        self._exit_code = int(code) if code is not None and code != 0 else 1
        if not self._stopping and session.get("status_info") != ENDED_BY_KERNEL:
            self._ended_outside(session)
        return self._exit_code

    def _ended_outside(self, session: dict[str, Any]) -> None:
        """Destroyed by someone else (``session destroy``, idle timeout): the kernel is dead,
        not restarted (a restart would undo the destroy)."""
        self.log.warning("kernel session %s was ended (%s): the kernel is dead",
                         self.session_name, session.get("status_info"))
        restarter = getattr(self.parent, "_restarter", None)
        if restarter is not None:
            restarter.restart_limit = 0
        self._unrecord()

    async def wait(self) -> int | None:
        while await self.poll() is None:
            await asyncio.sleep(0.1)
        return self._exit_code

    async def send_signal(self, signum: int) -> None:
        """Signals cannot cross into the session: kernelspecs use interrupt_mode "message"."""
        self.log.warning("bai session kernels are interrupted by message; signal %s ignored", signum)

    # -- stop --------------------------------------------------------------
    async def _destroy(self, forced: bool) -> None:
        if self.session_name is None or self._exit_code is not None:
            return
        self._stopping = True
        try:
            session = await self.access.destroy(self.session_name, forced=forced)
            code = session.get("exit_code")
            self._exit_code = int(code) if code not in (None, 0) else -15
        except BaiError as exc:  # already ended: fine
            self.log.info("kernel session %s: %s", self.session_name, exc)
            self._exit_code = -9

    async def kill(self, restart: bool = False) -> None:
        await self._destroy(forced=True)

    async def terminate(self, restart: bool = False) -> None:
        await self._destroy(forced=False)

    async def shutdown_requested(self, restart: bool = False) -> None:
        self._stopping = True

    async def cleanup(self, restart: bool = False) -> None:
        if not restart:
            self._unrecord()
        else:
            self.session_name, self._exit_code, self._stopping = None, None, False

    # -- reattach (a server that died comes back to its kernels) ------------
    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info["session_name"] = self.session_name
        info["image"] = self.image
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        await super().load_provisioner_info(provisioner_info)
        self.session_name = provisioner_info.get("session_name")
        self._exit_code, self._stopping = None, False

    def _record(self) -> None:
        directory = self.access.state_dir
        if directory is not None and self.parent is not None and self.session_name:
            state.write(directory, {
                "kernel_id": self.kernel_id, "kernel_name": self.parent.kernel_name,
                "session_name": self.session_name, "image": self.image,
                "connection_info": _jsonable(self.connection_info),
                "launch_args": {k: v for k, v in (self.parent._launch_args or {}).items()
                                if k in ("cwd", "kernel_id")},
            })

    def _unrecord(self) -> None:
        directory = self.access.state_dir
        if directory is not None and self.kernel_id:
            state.remove(directory, str(self.kernel_id))


def _jsonable(info: Any) -> dict[str, Any]:
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in dict(info).items()}


class _Heartbeat:
    """Pings the kernel's heartbeat (an echo) until one comes back. A published Docker port
    accepts TCP before the kernel listens, so only an echo says the kernel is up."""

    def __init__(self, ip: str, port: int):
        import zmq
        import zmq.asyncio

        self.sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.setsockopt(zmq.RECONNECT_IVL, int(TICK * 1000))
        self.sock.connect(f"tcp://{ip}:{int(port)}")

    async def beat(self, timeout: float) -> bool:
        import zmq

        try:
            await self.sock.send(b"ping", flags=zmq.NOBLOCK)
        except zmq.Again:
            pass
        return bool(await self.sock.poll(int(timeout * 1000)))

    def close(self) -> None:
        self.sock.close()


def kernelspec_json(display_name: str, resources: list[str], image: str = "local",
                    mounts: list[str] | None = None) -> dict[str, Any]:
    """The kernel.json of a session kernel (``kernelspec install`` and kernels/ use it)."""
    config: dict[str, Any] = {"image": image, "resources": resources}
    if mounts:
        config["mounts"] = mounts
    return {
        "argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": "message",
        "metadata": {
            "kernel_provisioner": {"provisioner_name": "bai-session-provisioner", "config": config}
        },
    }
