"""Kernel-enforced cpu and mem limits for the local runtime, through cgroups.

Used when the engine may create cgroups (root, cgroup v2 with the cpu and
memory controllers delegated, or v1 hierarchies mounted writable). Each
session gets ``jupyter-bai/<session id>`` under the engine's own cgroup; the
session's wrapper shell joins it before it starts the sandbox, so every
process of the session is inside before user code runs.
"""
from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


def _own_path(controller: str, proc_cgroup: str) -> str:
    """The engine's own cgroup path for a v1 controller ('' for v2 when controller='')."""
    for line in proc_cgroup.splitlines():
        hid, controllers, path = line.split(":", 2)
        if controller == "" and hid == "0":
            return path
        if controller and controller in controllers.split(","):
            return path
    return "/"


class CgroupLimits:
    def __init__(self, root: Path = ROOT, proc_cgroup: str | None = None):
        self.root = root
        self.error: str | None = None
        text = proc_cgroup if proc_cgroup is not None else self._read("/proc/self/cgroup")
        self.version: str | None = None
        self.bases: dict[str, Path] = {}
        if (root / "cgroup.controllers").exists():
            base = root / _own_path("", text).lstrip("/") / "jupyter-bai"
            if self._prepare_v2(base):
                self.version, self.bases = "v2", {"unified": base}
        elif (root / "memory").is_dir() and (root / "cpu").is_dir():
            bases = {c: root / c / _own_path(c, text).lstrip("/") / "jupyter-bai" for c in ("memory", "cpu")}
            if all(self._mkdir(b) for b in bases.values()):
                self.version, self.bases = "v1", bases
        else:
            self.error = "no cgroup v2 or v1 cpu/memory hierarchy mounted"

    @staticmethod
    def _read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    def _mkdir(self, path: Path) -> bool:
        try:
            path.mkdir(parents=True, exist_ok=True)
            return os.access(path, os.W_OK)
        except OSError as exc:
            self.error = f"cannot create cgroups under {path.parent}: {exc.strerror}"
            return False

    def _prepare_v2(self, base: Path) -> bool:
        if not self._mkdir(base):
            return False
        try:
            # Controllers must be enabled in each parent's subtree_control.
            for parent in (base.parent, base):
                (parent / "cgroup.subtree_control").write_text("+cpu +memory")
        except OSError as exc:
            self.error = f"cannot delegate cpu/memory controllers: {exc.strerror}"
            return False
        return True

    @property
    def available(self) -> bool:
        return self.version is not None

    def create(self, session_id: str, cpu: Decimal, mem: int) -> list[str]:
        """Make the session's cgroup(s) and return the ``cgroup.procs`` files to join."""
        quota = max(1000, int(cpu * PERIOD_US)) if cpu > 0 else None
        procs: list[str] = []
        if self.version == "v2":
            path = self.bases["unified"] / session_id
            path.mkdir(exist_ok=True)
            if quota:
                (path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            if mem > 0:
                (path / "memory.max").write_text(str(mem))
                (path / "memory.swap.max").write_text("0") if (path / "memory.swap.max").exists() else None
            procs.append(str(path / "cgroup.procs"))
        elif self.version == "v1":
            mpath = self.bases["memory"] / session_id
            cpath = self.bases["cpu"] / session_id
            mpath.mkdir(exist_ok=True)
            cpath.mkdir(exist_ok=True)
            if mem > 0:
                (mpath / "memory.limit_in_bytes").write_text(str(mem))
            if quota:
                (cpath / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (cpath / "cpu.cfs_quota_us").write_text(str(quota))
            procs += [str(mpath / "cgroup.procs"), str(cpath / "cgroup.procs")]
        return procs

    def paths(self, session_id: str) -> list[Path]:
        return [base / session_id for base in self.bases.values()]

    def remove(self, session_id: str) -> None:
        """Remove the session's cgroups once its processes are gone (best effort)."""
        for path in self.paths(session_id):
            try:
                path.rmdir()
            except OSError:
                pass
