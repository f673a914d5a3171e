"""Kernel-enforced cpu and mem limits for the local runtime, through cgroups.

Used when the engine may create cgroups (root, cgroup v2 with the cpu and
memory controllers delegated, or v1 hierarchies mounted writable). Each
session gets ``jupyter-bai/<engine id>/<session id>`` under the engine's own
cgroup (the engine id keeps engines on one machine from sweeping each
other's); the session's wrapper shell joins it before it starts the sandbox,
so every process of the session is inside before user code runs.

A cgroup can only be removed once its last task is gone, which after a stop
may take a moment: removal is retried by one janitor thread (never on the
event loop), and ``sweep`` at engine start removes what a crash left behind.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import signal
import threading
import time
from decimal import Decimal
from pathlib import Path

log = logging.getLogger(__name__)

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


#: A session id (a UUID): what a cgroup directly under ``jupyter-bai/`` was named before
#: engines got their own directories (those are named by 16 hex digits).
_OLD_LAYOUT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
REMOVE_PATIENCE = 30.0
CLOSE_PATIENCE = 3.0  # seconds an engine's close waits for its last session cgroups to go  # seconds the janitor keeps killing and retrying one cgroup


class CgroupLimits:
    def __init__(self, root: Path = ROOT, proc_cgroup: str | None = None, engine_id: str = ""):
        self.root = root
        self.error: str | None = None
        text = proc_cgroup if proc_cgroup is not None else self._read("/proc/self/cgroup")
        self.version: str | None = None
        self.bases: dict[str, Path] = {}
        self._pending: dict[Path, float] = {}
        self._cond = threading.Condition()
        self._janitor: threading.Thread | None = None
        self._closing = False
        sub = ("jupyter-bai", engine_id) if engine_id else ("jupyter-bai",)
        if (root / "cgroup.controllers").exists():
            base = root / _own_path("", text).lstrip("/") / Path(*sub)
            if self._prepare_v2(base):
                self.version, self.bases = "v2", {"unified": base}
        elif (root / "memory").is_dir() and (root / "cpu").is_dir():
            bases = {c: root / c / _own_path(c, text).lstrip("/") / Path(*sub) for c in ("memory", "cpu")}
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
            chain = [base]
            while chain[0].name != "jupyter-bai":
                chain.insert(0, chain[0].parent)
            for parent in (chain[0].parent, *chain):
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
            if not path.parent.is_dir():  # removed by a closing engine of the same state dir
                self._prepare_v2(path.parent)
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
            mpath.mkdir(parents=True, exist_ok=True)
            cpath.mkdir(parents=True, exist_ok=True)
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
        """Hand the session's cgroups to the janitor thread, which removes them at once or retries.

        Never removed on the caller's thread: ``rmdir`` of a cgroup waits on the kernel's cgroup
        lock, which other sessions' cgroup creation holds during a burst of starts; on the event
        loop that wait showed up as tens of milliseconds of lag.
        """
        for path in self.paths(session_id):
            self._defer(path)

    def close(self) -> None:
        """Remove this engine's own directory once no session cgroup is left in it (blocking:
        waits up to ``CLOSE_PATIENCE`` for the janitor).

        Without this every engine ever started on the machine (each test run makes hundreds)
        left an empty directory behind, and the kernel's cgroup operations slow down as
        they pile up. A directory with live sessions stays (a restart adopts them).
        """
        deadline = time.monotonic() + CLOSE_PATIENCE
        with self._cond:
            self._closing = True
            # Sessions that just ended: their cgroups go in a moment (the janitor's retries).
            while self._pending and time.monotonic() < deadline:
                self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))
            busy = {path.parent for path in self._pending}
        for base in self.bases.values():
            if base not in busy:
                self._remove_quietly(base)

    @staticmethod
    def _remove_quietly(path: Path) -> None:
        try:
            path.rmdir()
        except OSError:
            pass  # sessions still in it (adopted by the next engine), or already gone

    def _sweep_old_layout(self) -> None:
        """Empty session cgroups of engines from before per-engine directories
        (``jupyter-bai/<session id>``): never swept by any engine since. Only empty ones go:
        one that still has tasks belongs to a session some old engine may still run."""
        for base in self.bases.values():
            top = base.parent
            if top.name != "jupyter-bai":
                continue
            try:
                entries = [p for p in top.iterdir() if _OLD_LAYOUT.fullmatch(p.name)]
            except OSError:
                continue
            for path in entries:
                self._remove_quietly(path)

    def sweep(self, live: set[str]) -> list[str]:
        """Remove this engine's cgroups of sessions not in ``live`` (killing leftover tasks)."""
        self._sweep_old_layout()
        swept = set()
        for base in self.bases.values():
            try:
                entries = list(base.iterdir())
            except OSError:
                continue
            for path in entries:
                if path.is_dir() and path.name not in live:
                    swept.add(path.name)
                    if not self._try_remove(path, kill=True):
                        self._defer(path)
        return sorted(swept)

    @staticmethod
    def _try_remove(path: Path, kill: bool) -> bool:
        if kill:
            try:
                pids = (path / "cgroup.procs").read_text().split()
            except OSError:
                pids = []
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        try:
            path.rmdir()
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                log.warning("cannot remove cgroup %s: %s", path, exc.strerror)
                return True  # nothing a retry would change
            return False
        return True

    def _defer(self, path: Path) -> None:
        with self._cond:
            self._pending.setdefault(path, time.monotonic() + REMOVE_PATIENCE)
            if self._janitor is None or not self._janitor.is_alive():
                self._janitor = threading.Thread(target=self._janitor_loop,
                                                 name="bai-cgroup-janitor", daemon=True)
                self._janitor.start()
            self._cond.notify_all()

    def _janitor_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending:  # stays for the next burst: no thread start per exit
                    self._cond.wait()
                todo = list(self._pending.items())
            for path, deadline in todo:
                # A stopped session's tasks are on their way out; a late straggler is killed.
                done = self._try_remove(path, kill=time.monotonic() > deadline - REMOVE_PATIENCE + 2)
                if done or time.monotonic() > deadline:
                    if not done:
                        log.warning("cgroup %s still busy after %.0fs; left for the next sweep",
                                    path, REMOVE_PATIENCE)
                    with self._cond:
                        self._pending.pop(path, None)
                        self._cond.notify_all()
                        last = self._closing and not any(p.parent == path.parent for p in self._pending)
                    if last:  # the engine has closed and this was its last session cgroup
                        self._remove_quietly(path.parent)
            time.sleep(0.05)
