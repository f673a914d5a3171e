"""Who a session runs as, and what it may never do, whatever user runs the engine.

Backend.AI runs kernel containers as an unprivileged ``work`` user; so do we. An engine
running as root (``make lab`` on a fresh machine, CI) hands every session to an ordinary
uid/gid (``BaiApp.session_user``, 1000:1000 by default), with no capabilities at all
(effective, permitted, inheritable, ambient and bounding), ``no_new_privs``, and, in the
bubblewrap sandbox, a seccomp filter that refuses new user namespaces: a nested user
namespace is the one way an unprivileged process regains mount and device-node powers.
An engine that is not root runs sessions as itself (it cannot do otherwise).
"""
from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

DEFAULT_UID = DEFAULT_GID = 1000  # Backend.AI's "work" user
CLONE_NEWUSER = 0x10000000


@dataclass(frozen=True)
class SessionUser:
    uid: int
    gid: int

    @property
    def spec(self) -> str:
        return f"{self.uid}:{self.gid}"

    @property
    def needs_drop(self) -> bool:
        """True when the engine is root: sessions must be handed to ``uid`` explicitly."""
        return os.geteuid() == 0 and self.uid != 0


def resolve_session_user(setting: str = "auto") -> SessionUser:
    """``auto`` = 1000:1000 under a root engine, else the engine's own ids; or ``UID[:GID]``."""
    setting = (setting or "auto").strip()
    if setting == "auto":
        if os.geteuid() == 0:
            return SessionUser(DEFAULT_UID, DEFAULT_GID)
        return SessionUser(os.geteuid(), os.getegid())
    uid_s, _, gid_s = setting.partition(":")
    if not uid_s.isdigit() or (gid_s and not gid_s.isdigit()):
        raise ValueError(f"session_user must be 'auto' or UID[:GID] (numbers), not {setting!r}")
    uid, gid = int(uid_s), int(gid_s) if gid_s else int(uid_s)
    if uid == 0 or gid == 0:
        raise ValueError("session_user may not be root (0): sessions never run as root")
    if os.geteuid() != 0 and uid != os.geteuid():
        raise ValueError(
            f"session_user {setting!r} needs a root engine; this one runs as uid {os.geteuid()}"
        )
    return SessionUser(uid, gid)


def drop_argv(user: SessionUser) -> list[str]:
    """``setpriv`` (util-linux) prefix that becomes ``user`` with no capabilities left.

    Empty when the engine is not root: it has nothing to give away, and bubblewrap
    drops what a user namespace grants before it runs the command.
    """
    if not user.needs_drop:
        return []
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    return [
        setpriv, f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups",
        "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
    ]


def hand_over(paths: Iterable[Path], user: SessionUser) -> None:
    """Give the session's writable directories to its uid (root engine only; no-op otherwise)."""
    if os.geteuid() != 0:
        return
    for path in paths:
        os.chown(path, user.uid, user.gid, follow_symlinks=False)


def unreachable(path: Path, user: SessionUser) -> Path | None:
    """The first directory on the way to ``path`` that ``user`` may not traverse, if any."""
    import stat

    for parent in [*reversed(Path(path).parents), Path(path)]:
        try:
            st = os.stat(parent)
        except OSError:
            return parent
        if st.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif st.st_gid == user.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return parent
    return None


def seccomp_filter_bpf() -> bytes | None:
    """BPF program that refuses new user namespaces (``unshare``/``clone`` with CLONE_NEWUSER).

    ``clone3`` passes its flags in memory a filter cannot read: it answers ENOSYS, which
    makes libc fall back to ``clone``. Built with libseccomp (``pyseccomp``); None when that
    library is missing (the note in ``resources`` says so).
    """
    try:
        import pyseccomp as sc
    except (ImportError, OSError, RuntimeError):
        return None
    import tempfile

    filt = sc.SyscallFilter(sc.ALLOW)
    newuser = sc.Arg(0, sc.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)
    filt.add_rule(sc.ERRNO(errno.EPERM), "unshare", newuser)
    filt.add_rule(sc.ERRNO(errno.EPERM), "clone", newuser)
    filt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as tmp:
        filt.export_bpf(tmp)
        tmp.seek(0)
        return tmp.read()
