"""The ``local`` runtime: a session is a bubblewrap sandbox (or a plain process).

Each session runs under a tiny ``/bin/sh`` wrapper in its own process group
and session (so it outlives an engine killed with -9). The wrapper records
its pid and, when the command ends, the exit status in the session's run
directory: a restarted engine reads those files to adopt or finish sessions
it did not start itself.

Privileges (see ``privilege.py``): the wrapper keeps the engine's user (it joins
the cgroup and writes the exit status into ``state/``, which the session never
sees); under a root engine the sandboxed command itself runs through ``setpriv``
as the session user with no capabilities, behind a seccomp filter that refuses
new user namespaces.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import sandbox
from .base import LaunchContext, Runtime
from .cgroups import CgroupLimits
from .privilege import (SessionUser, drop_argv, hand_over, resolve_session_user, seccomp_filter_bpf,
                        unreachable)

AGENT_FILE = Path(__file__).with_name("agent.py")

# $1.. is the sandboxed command; BAI_STATE_DIR is the wrapper's own directory.
WRAPPER = (
    'for f in $BAI_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; '
    'echo $$ > "$BAI_STATE_DIR/wrapper.pid"; "$@"; rc=$?; '
    'echo $rc > "$BAI_STATE_DIR/exit"; exit $rc'
)


#: One thread deletes finished sessions' scratch trees in order: starting a thread per session
#: cost the event loop about a millisecond each in a burst of exits.
_REMOVER = ThreadPoolExecutor(1, thread_name_prefix="bai-scratch-remover")


def _remove_trees(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def proc_starttime(pid: int) -> int | None:
    """Kernel start time of ``pid`` (tells a live session from a reused pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    state = fields[0]
    if state in (b"Z", b"X"):
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class LocalRuntime(Runtime):
    name = "local"

    def __init__(self, sandbox_mode: str = "auto", enforce_limits: bool = True, *,
                 user: SessionUser | None = None, engine_id: str = ""):
        self.cgroups = CgroupLimits(engine_id=engine_id) if enforce_limits else None
        self.user = user or resolve_session_user("auto")
        self.drop = drop_argv(self.user)
        if self.drop and not os.path.exists(self.drop[0]):
            raise RuntimeError("the engine runs as root but 'setpriv' (util-linux) is missing: "
                               "it cannot hand sessions to an unprivileged user")
        self.seccomp = seccomp_filter_bpf()
        self.bwrap = shutil.which("bwrap")
        self.sandbox_error: str | None = None
        if sandbox_mode == "none":
            self.use_bwrap = False
        else:
            self.use_bwrap = bool(self.bwrap) and self._bwrap_works()
            if sandbox_mode == "bwrap" and not self.use_bwrap:
                raise RuntimeError(
                    f"bubblewrap was required but cannot run: {self.sandbox_error or 'bwrap not found'}"
                )
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._oom: dict[str, bool] = {}  # session id -> OOM-killed, read off the loop by wait()

    def _bwrap_works(self) -> bool:
        try:
            proc = subprocess.run(
                [self.bwrap or "bwrap", "--ro-bind", "/", "/", "--unshare-pid", "--dev", "/dev",
                 "--proc", "/proc", "true"],
                capture_output=True, text=True, timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.sandbox_error = str(exc)
            return False
        if proc.returncode != 0:
            self.sandbox_error = proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"
            return False
        return True

    # -- description -------------------------------------------------------
    def handles(self, image: str) -> bool:
        return image == "local" or image.startswith("local:")

    @property
    def sandbox_kind(self) -> str:
        return "bwrap" if self.use_bwrap else "none"

    def availability(self) -> dict[str, Any]:
        if self.cgroups is not None and self.cgroups.available:
            notes = [f"cpu and mem limits are enforced with cgroups {self.cgroups.version}"]
        else:
            why = self.cgroups.error if self.cgroups is not None else "disabled by configuration"
            notes = [f"cpu and mem are reserved by the scheduler but not enforced ({why})"]
        notes.append(f"sessions run as uid:gid {self.user.spec} with no capabilities"
                     + (", no new user namespaces (seccomp)" if self.use_bwrap and self.seccomp
                        else ""))
        if self.use_bwrap and self.seccomp is None:
            notes.append("seccomp filter unavailable (pyseccomp/libseccomp missing): a session "
                         "may create nested user namespaces")
        if not self.use_bwrap:
            reason = self.sandbox_error or "bwrap is not installed"
            notes.insert(
                0,
                f"no sandbox ({reason}): sessions are plain processes; isolation and read-only "
                "mounts are off, and the layout lives under $BAI_ROOT",
            )
        return {"name": self.name, "available": True, "sandbox": self.sandbox_kind, "notes": notes}

    # -- launch ------------------------------------------------------------
    def _prepare_dirs(self, ctx: LaunchContext) -> None:
        for sub in ("work", "run", "logs"):
            (ctx.session_dir / sub).mkdir(parents=True, exist_ok=True)
        ctx.state_dir.mkdir(mode=0o700, exist_ok=True)
        for stale in (ctx.exit_path, ctx.pid_path):
            stale.unlink(missing_ok=True)
        # /home/work, the agent's socket directory and read-write folders belong to the
        # session user (under a root engine; otherwise they are the engine's, which is it).
        hand_over([ctx.session_dir / "work", ctx.session_dir / "run",
                   *(m.host_path for m in ctx.mounts if not m.readonly)], self.user)

    def _plain_layout(self, ctx: LaunchContext) -> tuple[Path, dict[str, str]]:
        """Without bwrap: the container layout as a directory tree of symlinks."""
        root = ctx.session_dir / "root"
        work = root / "home" / "work"
        work.parent.mkdir(parents=True, exist_ok=True)
        if not work.exists():
            work.symlink_to(ctx.session_dir / "work")
        for mount in ctx.mounts:
            link = root / mount.target.lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(mount.host_path)
        env = {
            **ctx.env,
            "BAI_ROOT": str(root),
            "HOME": str(work),
            "PATH": ctx.env.get("PATH", os.environ.get("PATH", "/usr/bin:/bin")),
        }
        return work, env

    def _command(self, ctx: LaunchContext, socket: str, agent: str) -> list[str]:
        if ctx.interactive:
            cmd = [sys.executable, agent, "--socket", socket]
            if ctx.command:
                cmd += ["--startup", ctx.command]
            return cmd
        return ["/bin/sh", "-c", ctx.command or "true"]

    def start(self, ctx: LaunchContext) -> dict[str, Any]:
        self._prepare_dirs(ctx)
        run_dir = ctx.session_dir / "run"
        cgroup_procs: list[str] = []
        if self.cgroups is not None and self.cgroups.available:
            cgroup_procs = self.cgroups.create(ctx.session_id, ctx.cpu, ctx.mem)
        log = open(ctx.log_path, "ab", buffering=0)
        pass_fds: list[int] = []
        try:
            if self.use_bwrap:
                command = self._command(ctx, f"{sandbox.RUN_TARGET}/agent.sock", sandbox.AGENT_TARGET)
                if self.seccomp is not None:
                    pass_fds.append(self._seccomp_fd())
                argv = sandbox.bwrap_argv(
                    ctx, command, bwrap=self.bwrap or "bwrap", agent_path=str(AGENT_FILE),
                    prefixes=sandbox.python_prefixes(), drop=self.drop,
                    seccomp_fd=pass_fds[0] if pass_fds else None,
                    user_namespace=os.geteuid() != 0,
                )
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                       "BAI_CGROUP_PROCS": " ".join(cgroup_procs)}
                cwd = str(ctx.session_dir)
            else:
                self._check_reachable(ctx)
                work, env = self._plain_layout(ctx)
                argv = [*self.drop, *self._command(ctx, str(run_dir / "agent.sock"), str(AGENT_FILE))]
                env["BAI_CGROUP_PROCS"] = " ".join(cgroup_procs)
                cwd = str(work)
            env["BAI_STATE_DIR"] = str(ctx.state_dir)
            popen = subprocess.Popen(
                ["/bin/sh", "-c", WRAPPER, "bai-session", *argv],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=cwd, start_new_session=True, close_fds=True, pass_fds=pass_fds,
            )
        finally:
            log.close()
            for fd in pass_fds:
                os.close(fd)
        self._children[popen.pid] = popen
        return {
            "pid": popen.pid,
            "pgid": popen.pid,
            "starttime": proc_starttime(popen.pid),
            "sandbox": self.sandbox_kind,
            "cgroups": self.cgroups.version if cgroup_procs and self.cgroups else None,
            "session": ctx.session_id,
        }

    def _check_reachable(self, ctx: LaunchContext) -> None:
        """Without a sandbox the session user sees host permissions: say what it cannot reach."""
        if not self.drop:
            return
        for path in [ctx.session_dir / "work", *(m.host_path for m in ctx.mounts)]:
            blocked = unreachable(path, self.user)
            if blocked is not None:
                raise RuntimeError(
                    f"no sandbox: the session user {self.user.spec} cannot reach {path} "
                    f"({blocked} is closed to it); make the state directory's parents "
                    "traversable or install bubblewrap"
                )

    def _seccomp_fd(self) -> int:
        """A memfd holding the filter; bwrap reads it and closes it before the command runs."""
        fd = os.memfd_create("bai-seccomp")
        os.write(fd, self.seccomp or b"")
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    # -- supervision -------------------------------------------------------
    def is_alive(self, handle: dict[str, Any]) -> bool:
        pid = int(handle["pid"])
        start = proc_starttime(pid)
        return start is not None and start == handle.get("starttime")

    def adopt(self, ctx: LaunchContext, handle: dict[str, Any] | None) -> dict[str, Any] | None:
        if handle is None and ctx.pid_path.exists():
            # Killed between spawn and recording the handle: the wrapper left its pid.
            try:
                pid = int(ctx.pid_path.read_text().strip())
            except ValueError:
                return None
            handle = {"pid": pid, "pgid": pid, "starttime": proc_starttime(pid),
                      "sandbox": self.sandbox_kind}
        if handle is None or not self.is_alive(handle):
            return None
        return handle

    def exit_code(self, ctx: LaunchContext, handle: dict[str, Any]) -> int | None:
        try:
            text = ctx.exit_path.read_text().strip()
        except OSError:
            text = ""
        if text:
            return int(text)
        popen = self._children.get(int(handle["pid"]))
        if popen is not None and popen.poll() is not None:
            return popen.returncode
        return None

    async def wait(self, handle: dict[str, Any]) -> None:
        pid = int(handle["pid"])
        if not self.is_alive(handle):
            self._finish(pid)
            return
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(pid)
        except (ProcessLookupError, AttributeError, OSError):
            while self.is_alive(handle):
                await asyncio.sleep(0.2)
            self._finish(pid)
            await self._note_oom(handle)
            return
        done: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, lambda: done.done() or done.set_result(None))
        try:
            if self.is_alive(handle):  # it may have ended between the checks
                await done
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        self._finish(pid)
        await self._note_oom(handle)

    async def _note_oom(self, handle: dict[str, Any]) -> None:
        """Read the cgroup's OOM counter in an executor, so exit_reason() does no I/O."""
        sid = handle.get("session")
        if sid and self.cgroups is not None:
            loop = asyncio.get_running_loop()
            self._oom[sid] = await loop.run_in_executor(None, self._oom_killed, sid)

    def _finish(self, pid: int) -> None:
        popen = self._children.pop(pid, None)
        if popen is not None:
            popen.wait()
        else:
            _reap(pid)

    async def stop(self, handle: dict[str, Any], grace: float) -> None:
        pgid = int(handle["pgid"])
        loop = asyncio.get_running_loop()

        def alive() -> bool:  # a /proc scan: off the event loop
            return self._group_alive(pgid)

        if not self.is_alive(handle) and not await loop.run_in_executor(None, alive):
            return
        await loop.run_in_executor(None, self._terminate, pgid)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            _reap(int(handle["pid"]))
            if not await loop.run_in_executor(None, alive):
                return
            await asyncio.sleep(0.05)
        self._signal(pgid, signal.SIGKILL)

    @staticmethod
    def _signal(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass

    @classmethod
    def _terminate(cls, pgid: int) -> None:
        """SIGTERM the session's own processes, not the wrapper or bubblewrap's supervisors.

        The wrapper (the group leader) or a bwrap that dies of SIGTERM takes the pid
        namespace down with SIGKILL (``--die-with-parent``), so a command's TERM trap
        would be cut off mid-way. Left alone, they exit once the command has.
        """
        members = cls._group_members(pgid)
        if members is None:
            cls._signal(pgid, signal.SIGTERM)
            return
        for pid, comm in members:
            if pid != pgid and comm != b"bwrap":
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    @staticmethod
    def _group_members(pgid: int) -> list[tuple[int, bytes]] | None:
        """Live (pid, comm) of a process group; None when /proc cannot be read."""
        try:
            entries = os.listdir("/proc")
        except OSError:
            return None
        members = []
        for entry in entries:
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", "rb") as f:
                        stat = f.read()
                except OSError:
                    continue
                close = stat.rfind(b")")
                fields = stat[close + 2 :].split()
                if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                    members.append((int(entry), stat[stat.find(b"(") + 1 : close]))
        return members

    @classmethod
    def _group_alive(cls, pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A zombie leader still counts as a member: look for a live one.
        return bool(cls._group_members(pgid))

    def agent_socket(self, ctx: LaunchContext) -> str:
        return str(ctx.session_dir / "run" / "agent.sock")

    def exit_reason(self, ctx: LaunchContext, handle: dict[str, Any] | None) -> str | None:
        if self.cgroups is None:
            return None
        known = self._oom.get(ctx.session_id)
        oom = known if known is not None else self._oom_killed(ctx.session_id)
        return "out of memory: the session used all of its mem" if oom else None

    def _oom_killed(self, session_id: str) -> bool:
        assert self.cgroups is not None
        for path in self.cgroups.paths(session_id):
            for name in ("memory.events", "memory.oom_control"):
                try:
                    text = (path / name).read_text()
                except OSError:
                    continue
                for line in text.splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and value.strip() not in ("", "0"):
                        return True
        return False

    def cleanup(self, ctx: LaunchContext, handle: dict[str, Any] | None) -> None:
        self._oom.pop(ctx.session_id, None)
        # Renamed at once (the session's files are gone from its place), deleted in a
        # thread: a scratch dir of many files would otherwise hold the event loop.
        doomed = []
        for sub in ("work", "root"):
            trash = ctx.session_dir / f".{sub}.removing"
            try:
                os.rename(ctx.session_dir / sub, trash)
            except FileNotFoundError:
                pass
            except OSError:
                doomed.append(ctx.session_dir / sub)
            if trash.exists():  # also one left by an engine killed while removing
                doomed.append(trash)
        if doomed:
            _REMOVER.submit(_remove_trees, doomed)
        if self.cgroups is not None:
            self.cgroups.remove(ctx.session_id)

    def close(self) -> None:
        if self.cgroups is not None:
            self.cgroups.close()

    def sweep(self, live: set[str]) -> list[str]:
        """Cgroups of this engine's sessions that no longer exist (an engine killed mid-way)."""
        return self.cgroups.sweep(live) if self.cgroups is not None else []
