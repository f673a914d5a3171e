"""Compute-session lifecycle: create, schedule, start, supervise, destroy, adopt.

Every transition is written to SQLite (with a status-history row and an event)
before the engine acts on it, so a restart can always tell what was going on.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import secrets
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, AsyncIterator

from ..spec.errors import Conflict, InvalidRequest, InvalidState, NotFound, RuntimeUnavailable
from ..spec.resources import ResourceSlots
from ..spec.session import SessionSpec, SessionStatus, SessionType, can_transition
from .config import EngineConfig
from .events import EventBus
from .mps import MPSControl
from .node import NodeInfo
from .runtimes.agent_client import AgentUnavailable, agent_request, wait_ready
from .runtimes.base import LaunchContext, ResolvedMount, Runtime, RuntimeLost
from .scheduler import Allocation, allocate, check_can_ever_fit, gpu_usage
from .store import Store
from .turns import Turns
from .vfolders import VFolderManager

log = logging.getLogger(__name__)

S = SessionStatus
HOLDS_RESOURCES = (S.SCHEDULED, S.PREPARING, S.RUNNING, S.TERMINATING)
LIVE = (S.PENDING, *HOLDS_RESOURCES)
LOG_TAIL_ON_ERROR = 10
SCHEDULE_BATCH = 2  # sessions placed per scheduler pass (each pass is one event-loop callback)
START_THREADS = 2  # runtime starts at once (cgroup creation and fork serialise in the kernel anyway)


@functools.lru_cache(maxsize=1 << 16)
def _iso(ts: float | None) -> str | None:
    """Cached: a session's timestamps never change and are formatted on every listing."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CONNECTION")


def redact_env(env: dict[str, str]) -> dict[str, str]:
    """Session info is shown in tables and logs: never echo values that look like secrets."""
    return {k: "***" if any(w in k.upper() for w in SECRET_WORDS) else v for k, v in env.items()}


def tail_lines(path: Path, n: int) -> str:
    """Last ``n`` lines of a log without reading a huge file whole."""
    if n <= 0:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024 * max(1, n // 100 + 1)))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-n:])


class IllegalTransition(RuntimeError):
    """The engine tried a status change the life cycle forbids: a bug, logged and never written."""


@dataclass
class Tracked:
    """In-memory companion of a live session: its supervision task."""

    task: asyncio.Task[None] | None = None


class SessionManager:
    def __init__(
        self,
        config: EngineConfig,
        store: Store,
        events: EventBus,
        node: NodeInfo,
        vfolders: VFolderManager,
        runtimes: list[Runtime],
        mps: MPSControl | None = None,
    ):
        self.config = config
        self.store = store
        self.events = events
        self.node = node
        self.vfolders = vfolders
        self.runtimes = runtimes
        self.mps = mps
        self.capacity = node.capacity()
        self.defaults = ResourceSlots.parse({"cpu": config.default_cpu, "mem": config.default_mem})
        self._wakeup = asyncio.Event()
        self._tracked: dict[str, Tracked] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main: list[asyncio.Task[None]] = []
        self._seq = int((store.one("SELECT MAX(seq) AS s FROM sessions") or {"s": 0})["s"] or 0)
        # Starts get their own few threads: a burst of 20 no longer has every worker thread
        # making cgroups and forking at once, each competing with the event loop for a CPU.
        self._start_pool = ThreadPoolExecutor(START_THREADS, thread_name_prefix="bai-session-start")
        self.turns = Turns()

    # -- rows --------------------------------------------------------------
    def _row(self, ref: str) -> Any:
        row = self.store.one(
            "SELECT * FROM sessions WHERE id = ? OR (name = ? AND status IN (%s)) "
            "ORDER BY seq DESC LIMIT 1" % ",".join("?" * len(LIVE)),
            (ref, ref, *[s.value for s in LIVE]),
        )
        if row is None:
            row = self.store.one(
                "SELECT * FROM sessions WHERE name = ? ORDER BY seq DESC LIMIT 1", (ref,)
            )
        if row is None:
            raise NotFound(f"session '{ref}' not found")
        return row

    def _to_json(self, row: Any, history: bool = True) -> dict[str, Any]:
        spec = json.loads(row["spec"])
        alloc = json.loads(row["allocation"]) if row["allocation"] else None
        handle = json.loads(row["runtime_state"]) if row["runtime_state"] else {}
        data: dict[str, Any] = {
            "id": row["id"],
            "name": row["name"],
            "status": row["status"],
            "status_info": row["status_info"],
            "result": row["result"],
            "exit_code": row["exit_code"],
            "image": spec["image"],
            "type": spec["type"],
            "command": spec.get("command"),
            "resources": spec["resources"],
            "mounts": spec["mounts"],
            "env": redact_env(spec.get("env", {})),
            "idle_timeout": spec.get("idle_timeout"),
            "max_lifetime": spec.get("max_lifetime"),
            "labels": spec.get("labels") or {},
            "binds": spec.get("binds") or [],
            "ports": handle.get("ports") or {},
            "runtime": row["runtime"],
            "sandbox": handle.get("sandbox") or self._sandbox_kind(row["runtime"]),
            "allocation": alloc["cuda"] if alloc else None,
            "created_at": _iso(row["created_at"]),
            "started_at": _iso(row["started_at"]),
            "terminated_at": _iso(row["terminated_at"]),
        }
        if history:
            data["status_history"] = [
                {"status": h["status"], "at": _iso(h["at"]), "info": h["info"]}
                for h in self.store.query(
                    "SELECT status, at, info FROM session_status_history "
                    "WHERE session_id = ? ORDER BY at, rowid", (row["id"],),
                )
            ]
        return data

    def _sandbox_kind(self, runtime_name: str) -> str | None:
        for runtime in self.runtimes:
            if runtime.name == runtime_name:
                return runtime.sandbox_kind
        return None

    def _transition(
        self, sid: str, status: SessionStatus, info: str | None = None, **fields: Any
    ) -> None:
        """The ONE way a session's status changes: checked against the life cycle, then the
        row, its history and its events are written in one transaction."""
        now = time.time()
        if status == S.RUNNING:
            fields.setdefault("started_at", now)
        if status.is_terminal:
            fields.setdefault("terminated_at", now)
        sets = ["status = ?", "status_info = ?"]
        params: list[Any] = [status.value, info]
        for key, value in fields.items():
            sets.append(f"{key} = ?")
            params.append(json.dumps(value) if isinstance(value, (dict, list)) else value)
        with self.store.tx():
            row = self.store.one("SELECT name, status FROM sessions WHERE id = ?", (sid,))
            if row is None:
                raise IllegalTransition(f"status change of unknown session {sid} to {status.value}")
            current = S(row["status"])
            if not can_transition(current, status):
                log.error("refused status change of session %s (%s): %s -> %s (%s)",
                          row["name"], sid, current.value, status.value, info)
                raise IllegalTransition(
                    f"session '{row['name']}' may not go from {current.value} to {status.value}"
                )
            self.store.execute(f"UPDATE sessions SET {', '.join(sets)} WHERE id = ?", (*params, sid))
            self.store.execute(
                "INSERT INTO session_status_history(session_id, status, at, info) VALUES (?,?,?,?)",
                (sid, status.value, now, info),
            )
            self._publish_status(sid, previous=current)
            if status == S.SCHEDULED:
                self._publish_resources("allocated", row["name"])
            elif current in HOLDS_RESOURCES and status not in HOLDS_RESOURCES:
                self._publish_resources("released", row["name"])

    def _publish_status(self, sid: str, previous: SessionStatus | None = None) -> None:
        row = self.store.one(
            "SELECT name, status, status_info, result, exit_code FROM sessions WHERE id = ?", (sid,)
        )
        self.events.publish(
            "session", row["name"], id=sid, status=row["status"],
            previous=previous.value if previous else None, info=row["status_info"],
            result=row["result"], exit_code=row["exit_code"],
        )

    def _publish_resources(self, action: str, session: str) -> None:
        self.events.publish("resources", "node", action=action, session=session,
                            **self.resource_summary())

    # -- public API --------------------------------------------------------
    def runtime_for(self, image: str) -> Runtime:
        for runtime in self.runtimes:
            if runtime.handles(image):
                return runtime
        known = ", ".join(r.name for r in self.runtimes)
        raise RuntimeUnavailable(
            f"no available runtime runs image '{image}' (available: {known}; "
            "use 'local' for the local sandbox)"
        )

    def _resolve_mounts(self, spec: SessionSpec) -> list[dict[str, Any]]:
        resolved = []
        for mount in spec.mounts:
            folder = self.vfolders.lookup(mount.source)  # no usage walk on the loop
            folder_perm = getattr(folder.permission, "value", folder.permission)
            perm = mount.perm or folder_perm
            if perm == "rw" and folder_perm == "ro":
                raise InvalidRequest(
                    f"vfolder '{mount.source}' is read-only and cannot be mounted rw"
                )
            resolved.append({"source": mount.source, "target": mount.target, "perm": perm})
        return resolved

    def _resolve_binds(self, spec: SessionSpec) -> list[dict[str, Any]]:
        """Host binds only under the Jupyter server's root_dir (symlinks resolved first)."""
        if not spec.binds:
            return []
        root = self.config.bind_root
        if root is None:
            raise InvalidRequest("host binds are not allowed: this engine has no Jupyter root_dir")
        real_root = Path(os.path.realpath(root))
        resolved = []
        for bind in spec.binds:
            real = Path(os.path.realpath(bind.source))
            if real != real_root and real_root not in real.parents:
                raise InvalidRequest(
                    f"bind source '{bind.source}' is outside the Jupyter server's root "
                    f"directory {real_root}"
                )
            if not real.is_dir():
                raise InvalidRequest(f"bind source '{bind.source}' is not an existing directory")
            resolved.append({"source": str(real), "target": bind.target, "perm": bind.perm})
        return resolved

    async def create_async(self, spec: SessionSpec, **engine_parts: Any) -> dict[str, Any]:
        """:meth:`create` for the event loop: the runtime's image check (a Docker API call)
        runs in an executor first."""
        runtime = self.runtime_for(spec.image)
        resources = spec.resources.with_defaults(self.defaults)
        check_can_ever_fit(resources, self.capacity)
        await asyncio.get_running_loop().run_in_executor(None, runtime.check, spec.image, resources)
        async with self.turns.turn():
            return self.create(spec, image_checked=True, **engine_parts)

    def create(
        self, spec: SessionSpec, *, image_checked: bool = False,
        engine_env: dict[str, str] | None = None,
        engine_mounts: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """``engine_env`` and ``engine_mounts`` come from the engine itself (a pipeline task's
        ``BACKENDAI_PIPELINE_*`` and its ``/pipeline`` folders: ``{"source", "subpath",
        "target", "perm"}``), so they skip the checks that keep users off reserved names."""
        runtime = self.runtime_for(spec.image)
        resources = spec.resources.with_defaults(self.defaults)
        check_can_ever_fit(resources, self.capacity)
        mounts = self._resolve_mounts(spec) + list(engine_mounts or [])
        binds = self._resolve_binds(spec)
        if not image_checked:
            runtime.check(spec.image, resources)  # unknown image, below the image's minimum
        sid = str(uuid.uuid4())
        name = spec.name or f"sess-{secrets.token_hex(3)}"
        stored = spec.model_dump(mode="json")
        stored.update(name=name, resources=resources.to_json(), mounts=mounts, binds=binds,
                      env={**spec.env, **(engine_env or {})})
        now = time.time()
        self._seq += 1
        try:
            with self.store.tx():
                self.store.execute(
                    "INSERT INTO sessions(id, seq, name, spec, status, runtime, created_at) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (sid, self._seq, name, json.dumps(stored), S.PENDING.value, runtime.name, now),
                )
                self.store.execute(
                    "INSERT INTO session_status_history(session_id, status, at, info) "
                    "VALUES (?,?,?,?)", (sid, S.PENDING.value, now, None),
                )
                self._publish_status(sid)
        except sqlite3.IntegrityError:
            raise Conflict(f"session name '{name}' is already in use by a live session") from None
        self._wakeup.set()
        return self.get(sid)

    def get(self, ref: str) -> dict[str, Any]:
        return self._to_json(self._row(ref))

    def list(self, status: str | None = None) -> list[dict[str, Any]]:
        if status:
            statuses = [s.strip().upper() for s in status.split(",")]
            bad = [s for s in statuses if s not in S.__members__]
            if bad:
                raise InvalidRequest(
                    f"unknown status '{bad[0]}' (known: {', '.join(S.__members__)})"
                )
            rows = self.store.query(
                "SELECT * FROM sessions WHERE status IN (%s) ORDER BY seq" % ",".join("?" * len(statuses)),
                statuses,
            )
        else:
            rows = self.store.query("SELECT * FROM sessions ORDER BY seq")
        return [self._to_json(r, history=False) for r in rows]

    def logs(self, ref: str, tail: int | None = None) -> str:
        row = self._row(ref)
        path = self._session_dir(row["id"]) / "logs" / "output.log"
        if tail is not None:
            return tail_lines(path, tail)
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def log_path(self, ref: str) -> Path:
        return self._session_dir(self._row(ref)["id"]) / "logs" / "output.log"

    async def destroy(self, ref: str, forced: bool = False) -> dict[str, Any]:
        row = self._row(ref)
        sid, status = row["id"], S(row["status"])
        if status.is_terminal:
            raise InvalidState(f"session '{row['name']}' is already {status.value}")
        if status in (S.PENDING, S.SCHEDULED):
            # Not handed to a runtime yet (the start task leaves SCHEDULED before its first
            # await): cancel it, as Backend.AI cancels a session that has not started.
            tracked = self._tracked.pop(sid, None)
            if tracked and tracked.task:
                tracked.task.cancel()
            self._transition(sid, S.CANCELLED, "user-requested")
            self._wakeup.set()
            return self.get(sid)
        if status != S.TERMINATING:
            self._transition(sid, S.TERMINATING, "user-requested")
        await self._stop(sid, grace=0.0 if forced else self.config.stop_grace)
        tracked = self._tracked.get(sid)
        if tracked and tracked.task:
            # Includes a start still in flight: it stops what it launched (see _start_session).
            try:
                await asyncio.wait_for(asyncio.shield(tracked.task), timeout=10)
            except asyncio.TimeoutError:
                pass
        return self.get(sid)

    def in_use_vfolders(self) -> dict[str, list[str]]:
        """Which live sessions mount each folder (a mounted folder cannot be deleted)."""
        used: dict[str, list[str]] = {}
        rows = self.store.query(
            "SELECT name, spec FROM sessions WHERE status IN (%s)" % ",".join("?" * len(LIVE)),
            [s.value for s in LIVE],
        )
        for row in rows:
            for mount in json.loads(row["spec"])["mounts"]:
                used.setdefault(mount["source"], []).append(row["name"])
        return used

    # -- exec / run through the in-session agent ---------------------------
    def _agent_for(self, ref: str) -> tuple[Any, str]:
        row = self._row(ref)
        spec = json.loads(row["spec"])
        if row["status"] != S.RUNNING.value:
            raise InvalidState(f"session '{row['name']}' is {row['status']}, not RUNNING")
        if spec["type"] == SessionType.batch.value:
            raise InvalidState(
                f"session '{row['name']}' is a batch session; exec and run need an interactive one"
            )
        ctx = self._context(row)
        return row, self.runtime_for(spec["image"]).agent_socket(ctx)

    async def wait_started(self, ref: str, timeout: float) -> None:
        """Let a just-created session finish starting before code is sent to it."""
        starting = (S.PENDING.value, S.SCHEDULED.value, S.PREPARING.value)
        deadline = time.monotonic() + timeout
        while self._row(ref)["status"] in starting and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def agent_stream(self, ref: str, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        await self.wait_started(ref, self.config.agent_start_timeout)
        row, _socket = self._agent_for(ref)
        runtime = self.runtime_for(json.loads(row["spec"])["image"])
        # Output of runs and execs also goes to the session log, as a container's would.
        log_file = open(self._session_dir(row["id"]) / "logs" / "output.log", "a", encoding="utf-8")
        try:
            async for message in runtime.agent_request(self._context(row), request):
                if message.get("type") == "stream":
                    log_file.write(message.get("text", ""))
                    log_file.flush()
                yield message
        except AgentUnavailable as exc:
            raise InvalidState(f"session '{row['name']}' is not answering: {exc}") from None
        finally:
            log_file.close()

    # -- context -----------------------------------------------------------
    def _session_dir(self, sid: str) -> Path:
        return self.config.sessions_dir / sid

    def _context(self, row: Any) -> LaunchContext:
        spec = json.loads(row["spec"])
        alloc = Allocation.from_json(json.loads(row["allocation"])) if row["allocation"] else None
        mounts = []
        for m in spec["mounts"]:
            try:
                host = self.vfolders.host_path(m["source"])
                if m.get("subpath"):  # engine-made mounts only; the engine chose the path
                    host = host / m["subpath"]
            except NotFound:
                host = Path("/nonexistent")
            mounts.append(ResolvedMount(m["source"], host, m["target"], m["perm"] == "ro"))
        for b in spec.get("binds") or []:
            mounts.append(ResolvedMount(f"bind:{b['source']}", Path(b["source"]), b["target"],
                                        b["perm"] == "ro"))
        devices = alloc.devices if alloc else []
        env = self._session_env(row["id"], row["name"], spec, alloc)
        extra_dev: list[str] = []
        extra_bind: list[str] = []
        if any(g.source == "nvml" and g.index in devices for g in self.node.gpus):
            extra_dev = [str(p) for p in sorted(Path("/dev").glob("nvidia*"))]
        if "CUDA_MPS_PIPE_DIRECTORY" in env:
            # The MPS client finds its daemon here; a private /tmp would hide it (no limit).
            extra_bind.append(env["CUDA_MPS_PIPE_DIRECTORY"])
        return LaunchContext(
            session_id=row["id"],
            session_name=row["name"],
            image=spec["image"],
            session_dir=self._session_dir(row["id"]),
            # an inference session with a command is that command (a route's server): when
            # it exits, the session ends and the service replaces the route
            interactive=spec["type"] == SessionType.interactive.value or not spec.get("command"),
            command=spec.get("command"),
            env=env,
            mounts=mounts,
            gpu_devices=devices,
            extra_dev_paths=extra_dev,
            extra_bind_paths=extra_bind,
            resources=dict(spec.get("resources") or {}),
            ports=list(spec.get("ports") or []),
        )

    def _session_env(
        self, sid: str, name: str, spec: dict[str, Any], alloc: Allocation | None
    ) -> dict[str, str]:
        import os
        import sys

        devices = alloc.devices if alloc else []
        path = os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
        env = {
            "PATH": path,
            "HOME": "/home/work",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            **self.config.extra_env,
            **spec.get("env", {}),
            "BACKENDAI_SESSION_ID": sid,
            "BACKENDAI_SESSION_NAME": name,
            "BACKENDAI_KERNEL_IMAGE": spec["image"],
            "BACKENDAI_CLUSTER_SIZE": "1",
            "CUDA_VISIBLE_DEVICES": ",".join(str(d) for d in devices),
            "GPU_COUNT": str(len(devices)),
        }
        if alloc and alloc.gpu_shares:
            total = sum(alloc.gpu_shares.values(), Decimal(0))
            env["BACKENDAI_GPU_SHARES"] = str(total)
            fraction = str(min(alloc.gpu_shares.values()))
            memory = {g.index: g.memory for g in self.node.gpus}
            if self.mps and self.mps.available and self.mps.ensure_started():
                env.update(self.mps.session_env(alloc.gpu_shares, memory))
                env["BACKENDAI_GPU_LIMIT"] = "enforced (MPS)"
            else:
                # Advisory: frameworks that read these honour the share.
                env["BACKENDAI_GPU_LIMIT"] = "advisory"
                env["BACKENDAI_GPU_MEMORY_FRACTION"] = fraction
                env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = fraction
        return env

    # -- scheduling --------------------------------------------------------
    def current_allocations(self) -> list[Allocation]:
        rows = self.store.query(
            "SELECT allocation FROM sessions WHERE allocation IS NOT NULL AND status IN (%s)"
            % ",".join("?" * len(HOLDS_RESOURCES)),
            [s.value for s in HOLDS_RESOURCES],
        )
        return [Allocation.from_json(json.loads(r["allocation"])) for r in rows]

    def usage(self) -> dict[str, Any]:
        allocs = self.current_allocations()
        used = ResourceSlots({})
        for a in allocs:
            used = used + a.slots
        shares = gpu_usage(allocs)
        return {"used": used, "gpu_shares": shares}

    def resource_summary(self) -> dict[str, Any]:
        """Capacity, used and free slots and per-GPU shares: what ``resources`` events carry."""
        usage = self.usage()
        used = usage["used"]
        capacity = self.capacity
        free = {k: str(max(Decimal(0), capacity[k] - used[k])) for k in capacity}
        # GPU slots overlap (a whole device is also one share): count from the devices.
        shares = usage["gpu_shares"]
        per_device = [Decimal(1) - shares.get(g.index, Decimal(0)) for g in self.node.gpus]
        free["cuda.device"] = str(sum(1 for f in per_device if f == 1))
        free["cuda.shares"] = str(sum(per_device, Decimal(0)))
        holders: dict[int, list[str]] = {}
        rows = self.store.query(
            "SELECT name, allocation FROM sessions WHERE allocation IS NOT NULL AND status IN (%s) "
            "ORDER BY seq" % ",".join("?" * len(HOLDS_RESOURCES)),
            [s.value for s in HOLDS_RESOURCES],
        )
        for row in rows:
            for idx in (json.loads(row["allocation"]).get("cuda") or {}).get("devices", []):
                holders.setdefault(int(idx), []).append(row["name"])
        gpus = []
        for gpu in self.node.gpus:
            taken = usage["gpu_shares"].get(gpu.index, Decimal(0))
            gpus.append({
                "index": gpu.index, "name": gpu.name, "memory": gpu.memory,
                "source": gpu.source, "shares_used": str(taken),
                "shares_free": str(Decimal(1) - taken), "sessions": holders.get(gpu.index, []),
            })
        pending = self.store.one("SELECT COUNT(*) AS n FROM sessions WHERE status = 'PENDING'")
        return {
            "capacity": capacity.to_json(),
            "used": used.to_json(),
            "free": free,
            "gpus": gpus,
            "pending": int(pending["n"]) if pending else 0,
        }

    def _schedule_once(self, batch: int = SCHEDULE_BATCH) -> bool:
        """Place up to ``batch`` pending sessions; True when more may be placeable now."""
        pending = self.store.query(
            "SELECT * FROM sessions WHERE status = ? ORDER BY seq LIMIT ?",
            (S.PENDING.value, batch + 1),
        )
        if not pending:
            return False
        current = self.current_allocations()
        indices = [g.index for g in self.node.gpus]
        for placed, row in enumerate(pending):  # strict FIFO: the head blocks those behind it
            if placed == batch:
                return True
            spec = json.loads(row["spec"])
            request = ResourceSlots.from_json(spec["resources"])
            alloc = allocate(request, self.capacity, indices, current)
            if alloc is None:
                return False
            current.append(alloc)
            self._transition(row["id"], S.SCHEDULED, allocation=alloc.to_json())
            self._spawn(self._start_session(row["id"]), row["id"])
        return False

    def _spawn(self, coro: Any, sid: str) -> None:
        task = asyncio.create_task(coro)
        self._tracked.setdefault(sid, Tracked()).task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _scheduler_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                async with self.turns.turn():
                    more = self._schedule_once()
            except Exception:  # never let one bad row stop scheduling
                log.exception("scheduler pass failed")
                continue
            if more:  # a burst: let the loop serve others between batches
                self._wakeup.set()
                await asyncio.sleep(0)

    async def _start_session(self, sid: str) -> None:
        ctx: LaunchContext | None = None
        runtime: Runtime | None = None
        try:
            async with self.turns.turn():
                row = self._row(sid)
                ctx = self._context(row)
                runtime = self.runtime_for(ctx.image)
                if self._status(sid) != S.SCHEDULED:  # cancelled before it could start (destroy)
                    return
                self._transition(sid, S.PREPARING)
            # Runtimes may block (a Docker API call); keep the event loop serving. The start
            # is never cancelled half-way (a cancelled await would leave the executor's
            # container running): a destroy meanwhile is honoured when it returns.
            handle = await asyncio.shield(
                asyncio.get_running_loop().run_in_executor(self._start_pool, runtime.start, ctx))
        except Exception as exc:
            log.exception("start of %s failed", sid)
            self._finish(sid, S.ERROR, f"failed to start: {exc}", ctx=ctx, runtime=runtime)
            return
        async with self.turns.turn():
            self.store.execute(
                "UPDATE sessions SET runtime_state = ? WHERE id = ?", (json.dumps(handle), sid)
            )
            terminating = self._status(sid) == S.TERMINATING
        if terminating:  # destroy came while the start was in flight
            await runtime.stop(handle, grace=0.0)
            await self._run_until_exit(sid, ctx, runtime, handle, starting=False)
            return
        await self._run_until_exit(sid, ctx, runtime, handle, starting=True)

    async def _run_until_exit(
        self, sid: str, ctx: LaunchContext, runtime: Runtime, handle: dict[str, Any],
        starting: bool,
    ) -> None:
        waiter = asyncio.ensure_future(runtime.wait(handle))
        try:
            if starting and ctx.interactive:
                ready = asyncio.ensure_future(
                    wait_ready(runtime.agent_socket(ctx), self.config.agent_start_timeout)
                )
                finished, _ = await asyncio.wait(
                    {waiter, ready}, return_when=asyncio.FIRST_COMPLETED
                )
                if ready in finished and ready.exception() is None:
                    self._mark_running(sid)
                elif ready not in finished:
                    ready.cancel()
                elif self._status(sid) == S.PREPARING:
                    await runtime.stop(handle, grace=1.0)
            elif starting:
                async with self.turns.turn():
                    self._mark_running(sid)
            await waiter
        except asyncio.CancelledError:
            waiter.cancel()
            raise
        except RuntimeLost as exc:  # e.g. the Docker daemon went away: ERROR, keep serving
            self._finish(sid, S.ERROR, str(exc), ctx, runtime, handle, result="failure")
            return
        async with self.turns.turn():
            self._on_exit(sid, ctx, runtime, handle, runtime.exit_code(ctx, handle))

    def _mark_running(self, sid: str) -> None:
        if self._status(sid) == S.PREPARING:
            self._transition(sid, S.RUNNING)

    def _status(self, sid: str) -> SessionStatus:
        row = self.store.one("SELECT status FROM sessions WHERE id = ?", (sid,))
        return S(row["status"])

    def _on_exit(
        self, sid: str, ctx: LaunchContext, runtime: Runtime, handle: dict[str, Any],
        code: int | None,
    ) -> None:
        status = self._status(sid)
        if status.is_terminal:
            return
        row = self._row(sid)
        reason = row["status_info"] if status == S.TERMINATING else None
        if status == S.TERMINATING:
            result = "undefined" if ctx.interactive else ("success" if code == 0 else "failure")
            self._finish(sid, S.TERMINATED, reason or "user-requested", ctx, runtime, handle,
                         result=result, exit_code=code)
        elif status == S.PREPARING:
            tail = tail_lines(ctx.log_path, LOG_TAIL_ON_ERROR)
            self._finish(sid, S.ERROR, f"exited during start with code {code}: {tail}".strip(),
                         ctx, runtime, handle, result="failure", exit_code=code)
        elif not ctx.interactive:
            result = "success" if code == 0 else "failure"
            reason = runtime.exit_reason(ctx, handle) if code else None
            info = "finished" if code == 0 else reason or f"exit code {code}"
            self._finish(sid, S.TERMINATED, info, ctx, runtime, handle, result=result,
                         exit_code=code)
        elif code == 0:
            self._finish(sid, S.TERMINATED, "process exited", ctx, runtime, handle, exit_code=code)
        else:
            tail = tail_lines(ctx.log_path, LOG_TAIL_ON_ERROR)
            reason = runtime.exit_reason(ctx, handle) or f"exited with code {code}"
            self._finish(sid, S.ERROR, f"{reason}: {tail}".strip(),
                         ctx, runtime, handle, result="failure", exit_code=code)

    def _finish(
        self, sid: str, status: SessionStatus, info: str, ctx: LaunchContext | None = None,
        runtime: Runtime | None = None, handle: dict[str, Any] | None = None, **fields: Any,
    ) -> None:
        if ctx is not None and runtime is not None:
            try:
                runtime.cleanup(ctx, handle)
            except Exception:
                log.exception("cleanup of %s failed", sid)
        self._transition(sid, status, info, **fields)
        self._tracked.pop(sid, None)
        self._wakeup.set()

    async def _stop(self, sid: str, grace: float) -> None:
        row = self._row(sid)
        handle = json.loads(row["runtime_state"]) if row["runtime_state"] else None
        runtime = self.runtime_for(json.loads(row["spec"])["image"])
        tracked = self._tracked.get(sid)
        if handle is None:
            if tracked and tracked.task and not tracked.task.done():
                # A start is in flight (maybe a container being created right now): it sees
                # TERMINATING when it returns, stops what it launched and finishes the session.
                return
            ctx = self._context(row)
            self._finish(sid, S.TERMINATED, row["status_info"] or "user-requested", ctx, runtime)
            return
        await runtime.stop(handle, grace)
        if tracked is None or tracked.task is None or tracked.task.done():
            ctx = self._context(row)
            self._on_exit(sid, ctx, runtime, handle, runtime.exit_code(ctx, handle))

    # -- restart: adopt what is still there --------------------------------
    def _adopt_all(self) -> None:
        rows = self.store.query(
            "SELECT * FROM sessions WHERE status IN (%s) ORDER BY seq"
            % ",".join("?" * len(HOLDS_RESOURCES)),
            [s.value for s in HOLDS_RESOURCES],
        )
        for row in rows:
            sid, status = row["id"], S(row["status"])
            ctx = self._context(row)
            try:
                runtime = self.runtime_for(ctx.image)
            except RuntimeUnavailable as exc:
                self._finish(sid, S.ERROR, f"runtime unavailable after restart: {exc}")
                continue
            stored = json.loads(row["runtime_state"]) if row["runtime_state"] else None
            handle = runtime.adopt(ctx, stored)
            if handle is None:
                code = runtime.exit_code(ctx, stored) if stored else None
                if code is not None:
                    self._on_exit(sid, ctx, runtime, stored or {}, code)
                elif status == S.SCHEDULED:
                    # Its start task was lost with the engine; nothing was launched: start it.
                    self._spawn(self._start_session(sid), sid)
                elif status == S.PREPARING and stored is None:
                    self._transition(sid, S.PENDING, "requeued after engine restart",
                                     allocation=None)
                elif status == S.TERMINATING:
                    self._finish(sid, S.TERMINATED, row["status_info"] or "user-requested",
                                 ctx, runtime, stored)
                else:
                    self._finish(sid, S.ERROR, "process lost while the engine was down",
                                 ctx, runtime, stored, result="failure")
                continue
            if stored != handle:
                self.store.execute(
                    "UPDATE sessions SET runtime_state = ? WHERE id = ?", (json.dumps(handle), sid)
                )
            log.info("re-adopted session %s (%s)", row["name"], status.value)
            starting = status in (S.SCHEDULED, S.PREPARING)
            if starting:
                if status == S.SCHEDULED:
                    self._transition(sid, S.PREPARING, "re-adopted")
            self._spawn(self._run_until_exit(sid, ctx, runtime, handle, starting), sid)
            if status == S.TERMINATING:
                self._spawn_stop(sid)

    def _spawn_stop(self, sid: str) -> None:
        task = asyncio.create_task(self._stop(sid, self.config.stop_grace))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- idle timeout / max lifetime (Backend.AI's idle checkers) ------------
    async def _checker_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.checker_interval)
            try:
                await self._check_idle()
            except Exception:
                log.exception("idle checker failed")

    async def _check_idle(self) -> None:
        now = time.time()
        rows = self.store.query("SELECT * FROM sessions WHERE status = ?", (S.RUNNING.value,))
        for row in rows:
            spec = json.loads(row["spec"])
            started = row["started_at"] or row["created_at"]
            reason = None
            if spec.get("max_lifetime") and now - started > spec["max_lifetime"]:
                reason = "max-lifetime-exceeded"
            elif spec.get("idle_timeout") and spec["type"] != SessionType.batch.value:
                last = started
                try:
                    async for msg in agent_request(
                        self.runtime_for(spec["image"]).agent_socket(self._context(row)),
                        {"op": "status"}, timeout=5,
                    ):
                        if msg.get("type") == "status":
                            last = max(last, float(msg.get("last_activity") or 0))
                            if msg.get("busy"):
                                last = now
                except AgentUnavailable:
                    continue
                if now - last > spec["idle_timeout"]:
                    reason = "idle-timeout"
            if reason and self._status(row["id"]) == S.RUNNING:  # it may have ended meanwhile
                self._transition(row["id"], S.TERMINATING, reason)
                self._spawn_stop(row["id"])

    # -- engine hooks ------------------------------------------------------
    async def start(self) -> None:
        self._adopt_all()
        self._main = [
            asyncio.create_task(self._scheduler_loop()),
            asyncio.create_task(self._checker_loop()),
        ]
        self._wakeup.set()

    async def close(self) -> None:
        """Stop supervising; sessions keep running and are adopted next start."""
        for task in [*self._main, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._main, *self._tasks, return_exceptions=True)
