"""The engine: one per state directory, owning the store, node, folders and sessions.

Hosted by the Jupyter server extension or by ``jupyter bai serve``; a file lock
makes sure two processes never drive the same state directory.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from typing import IO, Any

from ..spec.errors import BaiError, Conflict
from .config import EngineConfig
from .deploy import DeployManager
from .events import EventBus
from .metrics import MetricsCollector
from .mps import MPSControl
from .node import NodeInfo, discover
from .pipelines import PipelineManager
from .proxy_process import ProxySupervisor
from .runtimes.base import Runtime, engine_id
from .runtimes.docker import DockerRuntime
from .runtimes.local import LocalRuntime
from .runtimes.privilege import SessionUser, resolve_session_user
from .services import ServiceManager
from .sessions import SessionManager
from .store import Store
from .vfolders import VFolderManager

log = logging.getLogger(__name__)


LOCK_WAIT = 2.0  # seconds a starting engine waits for the previous one to let go


class EngineLocked(BaiError):
    status, code = 409, "engine-locked"


class Engine:
    def __init__(self, config: EngineConfig):
        self.config = config
        self._lock_file: IO[str] | None = None
        self.store: Store
        self.events: EventBus
        self.node: NodeInfo
        self.vfolders: VFolderManager
        self.sessions: SessionManager
        self.pipelines: PipelineManager | None = None
        self.services: ServiceManager | None = None
        self.deploys: DeployManager | None = None
        self.proxy: ProxySupervisor | None = None
        self.runtimes: list[Runtime] = []
        self.mps: MPSControl | None = None
        self.metrics: MetricsCollector | None = None
        self.session_user: SessionUser

    def _acquire_lock(self) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        lock = open(self.config.state_dir / "engine.lock", "a+")
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # An engine that is still exiting (a restart) lets go within moments.
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
            lock.close()
            raise EngineLocked(
                f"another jupyter-bai engine already uses {self.config.state_dir}"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock_file = lock

    async def start(self) -> None:
        self._acquire_lock()
        try:
            await self._start()
        except BaseException:
            self._release_lock()
            raise

    async def _start(self) -> None:
        cfg = self.config
        self.store = Store(cfg.db_path)  # migrates; refuses a store newer than this code
        self.events = EventBus(self.store, buffer=cfg.event_buffer)
        self.node = discover(fake_gpus=list(cfg.fake_gpus) or None)
        cfg.vfolder_root.mkdir(parents=True, exist_ok=True)
        try:
            self.session_user = resolve_session_user(cfg.session_user)
        except ValueError as exc:
            raise BaiError(str(exc)) from None
        # What the engine creates in folders belongs to the session user (a root engine's
        # sessions run as that user; otherwise both are the engine's own user already).
        owner = (self.session_user.uid, self.session_user.gid) if os.geteuid() == 0 else None
        self.vfolders = VFolderManager(self.store, cfg.vfolder_root, owner=owner)
        self.mps = MPSControl(cfg.state_dir) if cfg.use_mps else None
        try:
            self.docker = DockerRuntime(
                cfg.state_dir, host=cfg.docker_host, user=cfg.docker_user,
                binds=cfg.docker_binds, pull=cfg.docker_pull, enabled=cfg.docker,
                session_user=self.session_user, pids_limit=cfg.session_pids_limit,
            )
        except ValueError as exc:
            raise BaiError(str(exc)) from None
        self.local = LocalRuntime(cfg.sandbox, cfg.enforce_limits, user=self.session_user,
                                  engine_id=engine_id(cfg.state_dir))
        self.runtimes = [self.local, self.docker]
        self.sessions = SessionManager(
            cfg, self.store, self.events, self.node, self.vfolders, self.runtimes, self.mps
        )
        await self.sessions.start()
        self.pipelines = PipelineManager(self.store, self.events, self.sessions, self.vfolders)
        await self.pipelines.start()
        # Model services: the endpoint proxy (adopted if a previous engine left it serving),
        # then the loop that keeps every service's routes at their count and health.
        self.proxy = ProxySupervisor(cfg, self.store)
        await self.proxy.start()
        self.services = ServiceManager(cfg, self.store, self.events, self.sessions, self.vfolders)
        self.services.endpoint_base = self.proxy.endpoint
        self.deploys = DeployManager(cfg, self.store, self.services, self.vfolders)
        await asyncio.get_running_loop().run_in_executor(None, self.deploys.recover)
        self.services.on_removed = self.deploys.forget
        await self.services.start()
        self.metrics = MetricsCollector(
            self.node, self.sessions, self.runtimes, interval=cfg.metrics_interval
        )
        self.services.metrics = self.metrics  # gpu_util autoscaling reads its samples
        loop = asyncio.get_running_loop()
        # Cgroups of sessions that ended while no engine watched (killed mid-way).
        await loop.run_in_executor(None, self.local.sweep, self._live_session_ids())
        self.docker.live_sessions = self._live_session_ids
        if self.docker.enabled:
            # Containers whose session ended while the engine (or daemon) was away.
            try:
                await loop.run_in_executor(None, self.docker.sweep, self._live_session_ids())
            except BaiError as exc:
                log.info("docker runtime: %s", exc)
        log.info("jupyter-bai engine started on %s", cfg.state_dir)

    async def close(self) -> None:
        try:
            if self.metrics is not None:
                await self.metrics.close()
            if self.pipelines is not None:
                await self.pipelines.close()
            if self.services is not None:
                await self.services.close()
            if self.proxy is not None:
                # The proxy outlives the engine while services exist, so they keep answering.
                await self.proxy.close(stop=not self.store.one("SELECT 1 FROM services"))
            await self.sessions.close()
            for runtime in self.runtimes:
                await asyncio.get_running_loop().run_in_executor(None, runtime.close)
            await asyncio.get_running_loop().run_in_executor(None, self.vfolders.close)
            self.store.close()
        finally:  # whatever failed above, the next engine on this state dir may start
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_file:
            self._lock_file.close()
            self._lock_file = None

    # -- resources ---------------------------------------------------------
    def resources(self) -> dict[str, Any]:
        summary = self.sessions.resource_summary()
        gpu_limit = "none"
        if self.node.gpus:
            gpu_limit = "enforced (MPS)" if self.mps and self.mps.available else "advisory"
        return {
            "node": self.node.to_json(),
            "capacity": summary["capacity"],
            "used": summary["used"],
            "free": summary["free"],
            "gpus": summary["gpus"],
            "fractional_gpu_limit": gpu_limit,
            "runtimes": [r.availability() for r in self.runtimes],
            "pending": summary["pending"],
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything a live view lists, as of one event ``seq``: what a resync reloads.

        The shapes are the REST listings' (``GET /sessions``, ``/resources``, ``/pipelines/jobs``,
        ``/services``), except that folders come without their usage (a walk of each).
        Blocking (many rows): call it from a thread.
        """
        with self.store.consistent():
            seq = self.events.last_seq()
            sessions = self.sessions.list()
            vfolders = [
                {"id": r["id"], "name": r["name"], "usage_mode": r["usage_mode"],
                 "permission": r["permission"], "quota": r["quota"]}
                for r in self.store.query("SELECT * FROM vfolders ORDER BY name")
            ]
            resources = self.resources()
            jobs = self.pipelines.list()
            services = self.services.list()
        return {"seq": seq, "sessions": sessions, "vfolders": vfolders, "resources": resources,
                "pipelines": jobs, "services": services}

    def _live_session_ids(self) -> set[str]:
        rows = self.store.query(
            "SELECT id FROM sessions WHERE status IN "
            "('PENDING','SCHEDULED','PREPARING','RUNNING','TERMINATING')"
        )
        return {r["id"] for r in rows}

    def images(self) -> dict[str, Any]:
        """Images sessions can use: ``local`` and those on the Docker engine."""
        images: list[dict[str, Any]] = [
            {"name": "local", "runtime": "local", "id": None, "size": None, "created": None,
             "min_mem": None, "service_ports": None},
        ]
        notes: list[str] = []
        try:
            images += self.docker.images()
        except BaiError as exc:
            notes.append(str(exc))
        return {"images": images, "notes": notes}

    # -- vfolders that sessions depend on ----------------------------------
    def delete_vfolder(self, name: str) -> None:
        self.vfolders.lookup(name)
        users = self.sessions.in_use_vfolders().get(name)
        if users:
            raise Conflict(
                f"vfolder '{name}' is mounted by live session(s) {', '.join(sorted(users))}"
            )
        self.vfolders.delete(name)
        self.events.publish("vfolder", name, action="deleted")
