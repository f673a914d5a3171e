"""Build the bubblewrap command line that gives a process a container-like layout.

Pure (no I/O beyond looking at which host top-level dirs are symlinks), so the
exact sandbox a session gets can be unit-tested and shown in ``session info``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
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


def bwrap_argv(
    ctx: LaunchContext,
    command: list[str],
    *,
    bwrap: str = "bwrap",
    agent_path: str | None = None,
    prefixes: Iterable[str] = (),
) -> list[str]:
    """The full ``bwrap ... -- command`` line for one session."""
    work = ctx.session_dir / "work"
    run = ctx.session_dir / "run"
    args = [
        bwrap, *_root_layout(), "--ro-bind", "/etc", "/etc",
        "--proc", "/proc",
        "--dev", "/dev",
        "--tmpfs", "/tmp",
        "--tmpfs", "/run",
    ]
    # After the tmpfs mounts, so a Python (or state dir) living under /tmp stays visible.
    for prefix in prefixes:
        args += ["--ro-bind", prefix, prefix]
    args += [
        "--bind", str(run), RUN_TARGET,
        "--bind", str(work), WORK_TARGET,
    ]
    if agent_path:
        args += ["--ro-bind", agent_path, AGENT_TARGET]
    for mount in ctx.mounts:
        args += ["--ro-bind" if mount.readonly else "--bind", str(mount.host_path), mount.target]
    for dev in ctx.extra_dev_paths:
        args += ["--dev-bind", dev, dev]
    for path in ctx.extra_bind_paths:
        args += ["--bind", path, path]
    args += [
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", ctx.session_name[:63],
        "--chdir", WORK_TARGET,
        "--clearenv",
    ]
    for key, value in sorted(ctx.env.items()):
        args += ["--setenv", key, value]
    return [*args, "--", *command]
