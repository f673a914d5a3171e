"""Node discovery: what this machine can give to sessions (CPU, memory, GPUs).

Capacity must be what the engine may really use, so a cgroup limit (a container, a systemd
slice) wins over the host's totals. GPUs come from NVML; on a machine without one, tests and
demos declare fake GPUs, and every fake is named as one so nobody mistakes it for hardware.
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

from jupyter_bai.spec.errors import InvalidRequest
from jupyter_bai.spec.resources import ResourceSlots, parse_size

#: cgroup limits at or above this are the kernel's way of saying "no limit".
_UNLIMITED = 1 << 60
_FAKE_DEFAULT_MEMORY = 16 << 30
PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")
MEMINFO = Path("/proc/meminfo")


@dataclass
class GPUDevice:
    """One GPU; ``source`` says whether NVML saw it or configuration invented it."""

    index: int
    name: str
    memory: int
    uuid: str
    source: Literal["nvml", "fake"]
    # a fake GPU's utilisation (percent) is whatever this file says: tests and demos on
    # GPU-less machines set it to drive ``gpu_util`` autoscaling; never shown in the API
    fake_utilization_file: str | None = field(default=None, repr=False)


@dataclass
class NodeInfo:
    """This node's resources, as discovered once at engine start."""

    hostname: str
    cpu_count: int
    mem_total: int
    gpus: list[GPUDevice] = field(default_factory=list)
    mps_available: bool = False
    nvml_error: str | None = None

    def capacity(self) -> ResourceSlots:
        """Slots the scheduler may hand out: whole GPUs and as many fGPU shares as GPUs."""
        n = len(self.gpus)
        return ResourceSlots(
            {"cpu": self.cpu_count, "mem": self.mem_total, "cuda.device": n, "cuda.shares": n}
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the API and the sidebar, with the capacity already summed."""
        data = asdict(self)
        for gpu in data["gpus"]:
            gpu.pop("fake_utilization_file", None)
        data["capacity"] = self.capacity().to_json()
        return data


def discover(
    fake_gpus: list[dict[str, Any]] | None = None,
    cpu_override: int | None = None,
    mem_override: int | None = None,
) -> NodeInfo:
    """Look at this machine once; ``fake_gpus`` replaces NVML (for GPU-less test machines)."""
    if fake_gpus is not None:
        gpus, nvml_error = make_fake_gpus(fake_gpus), None
    else:
        gpus, nvml_error = _nvml_gpus()
    if cpu_override is not None and cpu_override < 1:
        raise InvalidRequest(f"invalid cpu override {cpu_override!r}: must be at least 1")
    if mem_override is not None and mem_override < 1:
        raise InvalidRequest(f"invalid memory override {mem_override!r}: must be positive")
    return NodeInfo(
        hostname=socket.gethostname(),
        cpu_count=cpu_override if cpu_override is not None else cpu_count(),
        mem_total=mem_override if mem_override is not None else mem_total(),
        gpus=gpus,
        mps_available=shutil.which("nvidia-cuda-mps-control") is not None,
        nvml_error=nvml_error,
    )


def cpu_count(proc_cgroup: Path = PROC_CGROUP, cgroup_root: Path = CGROUP_ROOT) -> int:
    """Cores this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    limit = cgroup_cpu_limit(proc_cgroup, cgroup_root)
    if limit is not None:
        n = min(n, max(1, math.floor(limit)))
    return max(1, n)


def mem_total(
    meminfo: Path = MEMINFO, proc_cgroup: Path = PROC_CGROUP, cgroup_root: Path = CGROUP_ROOT
) -> int:
    """Bytes of memory: MemTotal, or the cgroup memory limit when that is lower."""
    total = _meminfo_total(meminfo)
    limit = cgroup_memory_limit(proc_cgroup, cgroup_root)
    if limit is not None and (total is None or limit < total):
        return limit
    if total is not None:
        return total
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cgroup_memory_limit(
    proc_cgroup: Path = PROC_CGROUP, cgroup_root: Path = CGROUP_ROOT
) -> int | None:
    """The tightest memory limit on this process's cgroup or its ancestors (v2 or v1)."""
    limits: list[int] = []
    for d, version in _cgroup_dirs("memory", proc_cgroup, cgroup_root):
        text = _read(d / ("memory.max" if version == 2 else "memory.limit_in_bytes"))
        if text is None or not text.isdigit():  # "max", missing, garbage
            continue
        value = int(text)
        if 0 < value < _UNLIMITED:
            limits.append(value)
    return min(limits) if limits else None


def cgroup_cpu_limit(
    proc_cgroup: Path = PROC_CGROUP, cgroup_root: Path = CGROUP_ROOT
) -> float | None:
    """The tightest CPU quota in cores (``docker --cpus``), or None when there is none."""
    limits: list[float] = []
    for d, version in _cgroup_dirs("cpu", proc_cgroup, cgroup_root):
        if version == 2:
            text = _read(d / "cpu.max")
            parts = text.split() if text else []
            quota, period = (parts + ["", ""])[:2]
        else:
            quota = _read(d / "cpu.cfs_quota_us") or ""
            period = _read(d / "cpu.cfs_period_us") or ""
        if quota.isdigit() and period.isdigit() and int(quota) > 0 and int(period) > 0:
            limits.append(int(quota) / int(period))
    return min(limits) if limits else None


def _cgroup_dirs(
    controller: str, proc_cgroup: Path, cgroup_root: Path
) -> Iterator[tuple[Path, int]]:
    """Directories that may hold this process's limits for ``controller``, own cgroup first.

    /proc/self/cgroup paths are relative to the cgroup namespace the mount may or may not
    share, so every ancestor is tried too; taking the minimum makes a wrong guess harmless
    unless it is tighter, which only happens on a deliberately odd host.
    """
    text = _read(proc_cgroup)
    if text is None:
        return
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            mounts, version = [cgroup_root, cgroup_root / "unified"], 2
        elif controller in controllers.split(","):
            mounts = [cgroup_root / controllers, cgroup_root / controller]
            version = 1
        else:
            continue
        rel = [p for p in path.split("/") if p and p != ".."]
        for mount in mounts:
            is_v2_mount = (mount / "cgroup.controllers").exists()
            if version == 2 and mount == cgroup_root and not is_v2_mount:
                continue  # a v1 or hybrid tmpfs, not a v2 mount
            for depth in range(len(rel), -1, -1):
                d = mount.joinpath(*rel[:depth])
                if d.is_dir():
                    yield d, version


def _meminfo_total(meminfo: Path) -> int | None:
    text = _read(meminfo)
    for line in (text or "").splitlines():
        if line.startswith("MemTotal:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                unit = fields[2].lower() if len(fields) > 2 else "b"
                return int(fields[1]) * (1024 if unit == "kb" else 1)
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


# ---------------------------------------------------------------------- GPUs


def make_fake_gpus(specs: list[dict[str, Any]]) -> list[GPUDevice]:
    """GPUs from configuration, e.g. ``[{"name": "FakeGPU H100", "memory": "80g"}]``.

    A name that does not already say "fake" gets a ``Fake`` prefix, so a fake can never be
    shown as real hardware.
    """
    if not isinstance(specs, list):
        raise InvalidRequest(f"fake_gpus must be a list of objects, not {type(specs).__name__}")
    gpus = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise InvalidRequest(f"fake_gpus[{i}] must be an object like {{'memory': '80g'}}")
        unknown = set(spec) - {"name", "memory", "uuid", "utilization_file"}
        if unknown:
            raise InvalidRequest(f"fake_gpus[{i}] has unknown keys: {', '.join(sorted(unknown))}")
        name = str(spec.get("name") or "Fake GPU")
        if "fake" not in name.lower():
            name = f"Fake {name}"
        memory = spec.get("memory", _FAKE_DEFAULT_MEMORY)
        if isinstance(memory, str):
            try:
                memory = parse_size(memory)
            except InvalidRequest as err:
                raise InvalidRequest(f"fake_gpus[{i}]: {err.message}") from None
        if isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0:
            raise InvalidRequest(f"fake_gpus[{i}] memory {memory!r} must be a positive size")
        uuid = str(spec.get("uuid") or f"GPU-fake-{i:04d}")
        util_file = spec.get("utilization_file")
        gpus.append(GPUDevice(index=i, name=name, memory=memory, uuid=uuid, source="fake",
                              fake_utilization_file=str(util_file) if util_file else None))
    return gpus


def _import_pynvml() -> Any:
    """pynvml (the shim over nvidia-ml-py) warns on import; the warning helps nobody here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import pynvml

    return pynvml


@contextlib.contextmanager
def _nvml() -> Iterator[Any]:
    """nvmlInit ... nvmlShutdown, always paired."""
    pynvml = _import_pynvml()
    pynvml.nvmlInit()
    try:
        yield pynvml
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _nvml_gpus() -> tuple[list[GPUDevice], str | None]:
    """Real GPUs through NVML; any failure means no GPUs and a one-line reason."""
    try:
        pynvml = _import_pynvml()
    except ImportError as err:
        return [], f"pynvml is not installed ({_one_line(err)})"
    try:
        with _nvml():
            gpus = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                gpus.append(
                    GPUDevice(
                        index=i,
                        name=_text(pynvml.nvmlDeviceGetName(h)),
                        memory=int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                        uuid=_text(pynvml.nvmlDeviceGetUUID(h)),
                        source="nvml",
                    )
                )
            return gpus, None
    except pynvml.NVMLError as err:
        return [], f"NVML: {_one_line(err)}"


def gpu_usage() -> list[dict[str, Any]]:
    """Live use of each real GPU for the sidebar; an empty list without NVML.

    Each item: ``index, uuid, name, utilization`` (percent, None if unsupported),
    ``mem_used``, ``mem_total`` (bytes).
    """
    try:
        pynvml = _import_pynvml()
    except ImportError:
        return []
    try:
        with _nvml():
            out = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                mem = pynvml.nvmlDeviceGetMemoryInfo(h)
                try:
                    util: int | None = int(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
                except pynvml.NVMLError:
                    util = None
                out.append(
                    {
                        "index": i,
                        "uuid": _text(pynvml.nvmlDeviceGetUUID(h)),
                        "name": _text(pynvml.nvmlDeviceGetName(h)),
                        "utilization": util,
                        "mem_used": int(mem.used),
                        "mem_total": int(mem.total),
                    }
                )
            return out
    except pynvml.NVMLError:
        return []
