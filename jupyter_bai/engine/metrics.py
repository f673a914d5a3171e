"""Live metrics: one sampler per engine, about once a second, with a short history.

Sampling reads ``/proc``, cgroup files and NVML, which may block, so it runs in
its own thread, never on the event loop; and it runs only while someone watches
(a metrics subscriber, or a ``GET /metrics`` in the last minute), so an idle
engine costs nothing. Fake GPUs have no utilisation (only their allocation is
reported, and ``source`` says they are fake) unless configured with a
``utilization_file`` whose number stands in for NVML's reading. A session's
``gpu_util`` is the mean utilisation of the GPUs allocated to it (NVML reports per
device, so sessions sharing one GPU each see the whole device's number).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Sequence

import psutil

from .node import NodeInfo, _import_pynvml

if TYPE_CHECKING:
    from .runtimes.base import Runtime
    from .sessions import SessionManager

log = logging.getLogger(__name__)

HISTORY = 120
LINGER = 60.0  # seconds a GET /metrics keeps the sampler running
CGROUP_ROOT = Path("/sys/fs/cgroup")
SAMPLED_STATUSES = ("PREPARING", "RUNNING", "TERMINATING")


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cpu_usage_usec(path: Path) -> int | None:
    """CPU time used by a cgroup in microseconds (v2 ``cpu.stat``, v1 ``cpuacct.usage``)."""
    try:
        for line in (path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value)
    except (OSError, ValueError):
        pass
    ns = _read_int(path / "cpuacct.usage")
    return ns // 1000 if ns is not None else None


def _read_percent(path: Path) -> int | None:
    try:
        return max(0, min(100, round(float(path.read_text().split()[0]))))
    except (OSError, ValueError, IndexError):
        return None


def _session_gpu_util(allocation: str | None, util: dict[int, int | None]) -> float | None:
    """Mean utilisation of the session's GPUs; None without GPUs or readings."""
    devices = (json.loads(allocation).get("cuda") or {}).get("devices", []) if allocation else []
    values = [util[int(d)] for d in devices if util.get(int(d)) is not None]
    return round(sum(values) / len(values), 1) if values else None  # type: ignore[arg-type]


def mean_gpu_util(sample: dict[str, Any], session_ids: set[str]) -> float | None:
    """Mean ``gpu_util`` of these sessions in one sample (what a ``gpu_util`` rule sees)."""
    values = [s["gpu_util"] for s in sample.get("sessions", [])
              if s["id"] in session_ids and s.get("gpu_util") is not None]
    return round(sum(values) / len(values), 1) if values else None


def _mem_usage(path: Path) -> int | None:
    current = _read_int(path / "memory.current")
    return current if current is not None else _read_int(path / "memory.usage_in_bytes")


def docker_cgroup_dirs(container_id: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Where the daemon's usual drivers put a container's cgroups (v2 and v1)."""
    return [
        root / "system.slice" / f"docker-{container_id}.scope",
        root / "docker" / container_id,
        *(root / c / "docker" / container_id for c in ("memory", "cpuacct", "cpu,cpuacct")),
    ]


class MetricsCollector:
    def __init__(
        self,
        node: NodeInfo,
        sessions: "SessionManager",
        runtimes: Sequence["Runtime"],
        interval: float = 1.0,
        history: int = HISTORY,
    ):
        self.node = node
        self.sessions = sessions
        self.runtimes = list(runtimes)
        self.interval = interval
        self.history: deque[dict[str, Any]] = deque(maxlen=history)
        self.samples_taken = 0
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._watched_until = 0.0
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bai-metrics")
        self._prev_cpu: dict[str, tuple[float, int]] = {}
        self._nvml: Any = None
        self._has_nvml = any(g.source == "nvml" for g in node.gpus)
        psutil.cpu_percent(interval=None)  # the first reading only starts the measurement

    # -- who watches ---------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def _watched(self) -> bool:
        return bool(self._subscribers) or time.monotonic() < self._watched_until

    def _ensure_running(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def current(self) -> dict[str, Any]:
        """Latest sample and the kept history; starts the sampler for a while if it was off."""
        self._watched_until = time.monotonic() + LINGER
        if not self.running:  # the newest kept sample may be old: take one now
            self._record(await self._sample_async())
        self._ensure_running()
        return {"interval": self.interval, "latest": self.history[-1],
                "history": list(self.history)}

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        """Each new sample; a slow subscriber skips to the newest (never a backlog)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1)
        self._subscribers.add(queue)
        self._ensure_running()
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    # -- the sampling loop ---------------------------------------------------
    async def _run(self) -> None:
        try:
            while self._watched():
                started = time.monotonic()
                try:
                    self._record(await self._sample_async())
                except Exception:  # a bad read must not stop the stream
                    log.exception("metrics sample failed")
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._nvml_shutdown)

    def _record(self, sample: dict[str, Any]) -> None:
        self.history.append(sample)
        for queue in list(self._subscribers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(sample)

    async def _sample_async(self) -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.sample)

    async def close(self) -> None:
        self._subscribers.clear()
        self._watched_until = 0.0
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    # -- one sample (in the sampler thread) --------------------------------
    def sample(self) -> dict[str, Any]:
        self.samples_taken += 1
        mem = psutil.virtual_memory()
        summary = self.sessions.resource_summary()
        gpus = self._gpus(summary["gpus"])
        return {
            "at": time.time(),
            "cpu": {"percent": psutil.cpu_percent(interval=None), "count": psutil.cpu_count()},
            "mem": {"used": int(mem.total - mem.available), "total": int(mem.total)},
            "gpus": gpus,
            "sessions": self._sessions(gpus),
        }

    def _gpus(self, allocated: list[dict[str, Any]]) -> list[dict[str, Any]]:
        live = self._nvml_sample() if self._has_nvml else {}
        for gpu in self.node.gpus:
            if gpu.fake_utilization_file:
                live[gpu.index] = (_read_percent(Path(gpu.fake_utilization_file)), None)
        out = []
        for gpu in allocated:
            util, mem_used = live.get(gpu["index"], (None, None))
            out.append({
                "index": gpu["index"], "name": gpu["name"], "source": gpu["source"],
                "mem_total": gpu["memory"], "mem_used": mem_used, "utilization": util,
                "shares_used": gpu["shares_used"], "sessions": gpu["sessions"],
            })
        return out

    def _nvml_sample(self) -> dict[int, tuple[int | None, int | None]]:
        try:
            if self._nvml is None:
                pynvml = _import_pynvml()
                pynvml.nvmlInit()
                self._nvml = pynvml
            nv = self._nvml
            out: dict[int, tuple[int | None, int | None]] = {}
            for i in range(nv.nvmlDeviceGetCount()):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                try:
                    util: int | None = int(nv.nvmlDeviceGetUtilizationRates(h).gpu)
                except nv.NVMLError:
                    util = None
                out[i] = (util, int(nv.nvmlDeviceGetMemoryInfo(h).used))
            return out
        except Exception as exc:  # NVML missing or broken: no live numbers, keep going
            log.debug("nvml sample failed: %s", exc)
            return {}

    def _nvml_shutdown(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self._nvml = None

    def _cgroup_dirs(self, sid: str, runtime_name: str, handle: dict[str, Any]) -> list[Path]:
        for runtime in self.runtimes:
            if runtime.name != runtime_name:
                continue
            cgroups = getattr(runtime, "cgroups", None)
            if cgroups is not None and cgroups.available:
                return list(cgroups.paths(sid))
            if handle.get("container"):
                return docker_cgroup_dirs(str(handle["container"]))
        return []

    def _sessions(self, gpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
        util = {g["index"]: g["utilization"] for g in gpus}
        rows = self.sessions.store.query(
            "SELECT id, name, runtime, runtime_state, allocation FROM sessions "
            "WHERE status IN (%s) "
            "ORDER BY seq" % ",".join("?" * len(SAMPLED_STATUSES)), SAMPLED_STATUSES,
        )
        now = time.monotonic()
        out, seen = [], set()
        for row in rows:
            sid = row["id"]
            seen.add(sid)
            handle = json.loads(row["runtime_state"]) if row["runtime_state"] else {}
            cpu_usec = mem = None
            for path in self._cgroup_dirs(sid, row["runtime"], handle):
                cpu_usec = cpu_usec if cpu_usec is not None else _cpu_usage_usec(path)
                mem = mem if mem is not None else _mem_usage(path)
            percent = None
            if cpu_usec is not None:
                prev = self._prev_cpu.get(sid)
                if prev is not None and now > prev[0]:
                    percent = round(100.0 * (cpu_usec - prev[1]) / 1e6 / (now - prev[0]), 1)
                self._prev_cpu[sid] = (now, cpu_usec)
            out.append({"id": sid, "name": row["name"], "cpu_percent": percent, "mem_used": mem,
                        "gpu_util": _session_gpu_util(row["allocation"], util)})
        for gone in set(self._prev_cpu) - seen:
            del self._prev_cpu[gone]
        return out
