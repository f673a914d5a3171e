"""Build the bubblewrap command line that gives a process a container-like layout.

Pure (no I/O beyond looking at which host top-level dirs are symlinks), so the
exact sandbox a session gets can be unit-tested and shown in ``session info``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path, PurePosixPath
from typing import Iterable

from .base import LaunchContext

AGENT_TARGET = "/opt/bai/agent.py"
RUN_TARGET = "/run/bai"
WORK_TARGET = "/home/work"
_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def python_prefixes() -> list[str]:
    """Host directories holding the Python that runs the engine (venv and base)."""
    prefixes = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    return sorted(p for p in prefixes if not p.startswith("/usr/"))


def _root_layout() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _TOP_LEVEL:
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{name}"]
    return args


class _Layout:
    """Mount arguments in order, with the parent directories a bind needs made 0755.

    bwrap creates missing mount points itself, but as root with mode 0700, which the
    unprivileged session user could not traverse (``/opt/bai``, a venv under ``/root``).
    """

    def __init__(self, args: list[str], mounted: Iterable[str], empty: Iterable[str]):
        self.args = args
        self.mounted = list(mounted)  # host trees bound in: their insides exist already
        self.made: set[str] = set(empty)  # fresh tmpfs mounts: they exist, their insides not

    def bind(self, kind: str, source: str, target: str) -> None:
        for parent in reversed(PurePosixPath(target).parents):
            p = str(parent)
            if p == "/" or p in self.made or any(
                p == m or p.startswith(m.rstrip("/") + "/") for m in self.mounted
            ):
                continue
            self.args += ["--perms", "0755", "--dir", p]
            self.made.add(p)
        self.args += [kind, source, target]
        self.mounted.append(target)


def bwrap_argv(
    ctx: LaunchContext,
    command: list[str],
    *,
    bwrap: str = "bwrap",
    agent_path: str | None = None,
    prefixes: Iterable[str] = (),
    drop: Iterable[str] = (),
    seccomp_fd: int | None = None,
    user_namespace: bool = False,
) -> list[str]:
    """The full ``bwrap ... -- command`` line for one session.

    A root engine runs bwrap as root (it can bind anything, devices included) and the
    command under ``drop`` (``setpriv`` to the session user, no capabilities); a non-root
    engine's bwrap works in a user namespace (``user_namespace``), closed behind it with
    ``--disable-userns``. ``seccomp_fd`` is an fd holding the filter that refuses new
    user namespaces (see ``privilege.py``).
    """
    work = ctx.session_dir / "work"
    run = ctx.session_dir / "run"
    root = _root_layout()
    args = [
        bwrap, *root, "--ro-bind", "/etc", "/etc",
        "--proc", "/proc",
        "--dev", "/dev",
        "--perms", "1777", "--tmpfs", "/tmp",
        "--tmpfs", "/run",
    ]
    host_trees = ["/usr", "/etc", "/proc", "/dev",
                  *(root[i + 2] for i, a in enumerate(root) if a in ("--ro-bind", "--symlink"))]
    layout = _Layout(args, host_trees, empty=("/tmp", "/run"))
    # After the tmpfs mounts, so a Python (or state dir) living under /tmp stays visible.
    for prefix in prefixes:
        layout.bind("--ro-bind", prefix, prefix)
    layout.bind("--bind", str(run), RUN_TARGET)
    layout.bind("--bind", str(work), WORK_TARGET)
    if agent_path:
        layout.bind("--ro-bind", agent_path, AGENT_TARGET)
    for mount in ctx.mounts:
        layout.bind("--ro-bind" if mount.readonly else "--bind", str(mount.host_path), mount.target)
    for dev in ctx.extra_dev_paths:
        layout.bind("--dev-bind", dev, dev)
    for path in ctx.extra_bind_paths:
        layout.bind("--bind", path, path)
    args += [
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        *(["--unshare-user", "--disable-userns"] if user_namespace else []),
        *(["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else []),
        "--die-with-parent",
        "--hostname", ctx.session_name[:63],
        "--chdir", WORK_TARGET,
        "--clearenv",
    ]
    for key, value in sorted(ctx.env.items()):
        args += ["--setenv", key, value]
    return [*args, "--", *drop, *command]
