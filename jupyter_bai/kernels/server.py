"""What the Jupyter server extension does for session kernels at start and stop.

* start: kernels whose session still runs after the server died (kill -9, crash, OOM)
  are put back under their old ids, so open notebooks reconnect with their variables;
  the server's session table is kept in a file so notebooks find their kernels again.
* stop: kernels are shut down while the engine still runs (the server stops extensions
  before kernels), so a clean stop ends their sessions.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from jupyter_client.provisioning import KernelProvisionerFactory
from jupyter_core.utils import ensure_async

from . import state

SESSIONS_DB = "jupyter-sessions.db"
LIVE = ("PENDING", "SCHEDULED", "PREPARING", "RUNNING")


def keep_session_table(serverapp: Any, state_dir: Path) -> None:
    """Notebook -> kernel rows survive a restart (only while the default in-memory table is
    configured and not yet opened)."""
    sm = getattr(serverapp, "session_manager", None)
    if sm is None or sm.database_filepath != ":memory:" or getattr(sm, "_connection", None):
        return
    sm.database_filepath = str(Path(state_dir) / SESSIONS_DB)


def restore_kernels(serverapp: Any, engine: Any) -> list[str]:
    """Register a KernelManager for every recorded kernel whose session still runs.

    Synchronous on purpose: it runs before the server handles its first request, so the
    session table never sees a notebook whose kernel is not back yet.
    """
    mkm = serverapp.kernel_manager
    restored = []
    for record in state.read_all(engine.config.state_dir):
        kid = record.get("kernel_id")
        try:
            session = engine.sessions.get(record["session_name"])
            if session["status"] not in LIVE or kid in mkm:
                raise LookupError(session["status"])
            _register(mkm, record)
        except Exception as exc:  # noqa: BLE001 - one bad record never blocks the server
            serverapp.log.warning("kernel %s not reattached: %s", kid, exc)
            state.remove(engine.config.state_dir, str(kid))
            _end_orphan(engine, record.get("session_name"))
            continue
        restored.append(kid)
        serverapp.log.info("reattached kernel %s (session %s)", kid, record["session_name"])
    return restored


def _end_orphan(engine: Any, name: str | None) -> None:
    """A live session whose kernel cannot come back would hold resources for nothing."""
    try:
        live = bool(name) and engine.sessions.get(name)["status"] in LIVE
    except Exception:  # noqa: BLE001 - gone already
        return
    if live:
        task = asyncio.ensure_future(engine.sessions.destroy(name, forced=True))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())


def _register(mkm: Any, record: dict[str, Any]) -> None:
    from jupyter_server._tz import utcnow

    kid = record["kernel_id"]
    km = mkm.kernel_manager_factory(
        connection_file=os.path.join(mkm.connection_dir, f"kernel-{kid}.json"),
        parent=mkm, log=mkm.log, kernel_name=record["kernel_name"],
    )
    km.kernel_id = kid
    km.load_connection_info(record["connection_info"])
    km.write_connection_file()
    km._launch_args = dict(record.get("launch_args") or {})
    prov = KernelProvisionerFactory.instance(parent=mkm).create_provisioner_instance(
        kid, km.kernel_spec, parent=km
    )
    prov.kernel_id = kid
    prov.connection_info = km.get_connection_info()
    prov.session_name = record["session_name"]
    km.provisioner = prov
    km.ready.set_result(None)
    km._connect_control_socket()
    km.execution_state = "idle"
    km.reason = ""
    km.last_activity = utcnow()
    mkm._kernels[kid] = km
    mkm._kernel_connections[kid] = 0
    mkm._kernel_ports[kid] = km.ports
    km.start_restarter()
    mkm.start_watching_activity(kid)
    mkm.add_restart_callback(kid, lambda: mkm._handle_kernel_died(kid), "dead")


async def shutdown_kernels(serverapp: Any) -> None:
    """Shut every kernel down now, before the engine closes; never raise.

    Afterwards the kernel manager lists nothing the server's own cleanup could trip on:
    jupyter_server shuts down every kernel id it still holds, pending ones included, and
    stops its IO loop only when none of those calls raises (one "404 Kernel does not exist"
    for a failed start kept the process up until kill -9).
    """
    mkm = getattr(serverapp, "kernel_manager", None)
    if mkm is None:
        return
    pending: dict[str, Any] = getattr(mkm, "_pending_kernels", {})
    starting = [task for kid, task in pending.items()
                if kid not in mkm._kernels and not task.done()]
    for task in starting:  # a launch still waiting: its provisioner ends the session it made
        task.cancel()
    if starting:
        serverapp.log.info("cancelling %d kernel start(s) before the engine stops", len(starting))
        await asyncio.gather(*starting, return_exceptions=True)
    kids = list(mkm.list_kernel_ids())
    if kids:
        serverapp.log.info("shutting down %d kernel(s) before the engine stops", len(kids))
        results = await asyncio.gather(
            *(ensure_async(mkm.shutdown_kernel(kid, now=False)) for kid in kids),
            return_exceptions=True,
        )
        for kid, result in zip(kids, results):
            if isinstance(result, BaseException):
                serverapp.log.warning("kernel %s did not shut down cleanly: %s", kid, result)
                mkm.remove_kernel(kid)  # the engine is about to close: a retry cannot succeed
    for kid in [k for k in pending if k not in mkm._kernels]:
        pending.pop(kid, None)
