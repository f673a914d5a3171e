"""Paths under a directory descriptor, resolved without ever following a symlink.

A session with a read-write mount can swap a directory for a symlink at any moment, so a
path checked with ``realpath`` may lead somewhere else when it is used. Everything here works
relative to an open descriptor of the folder instead: ``openat2(RESOLVE_BENEATH |
RESOLVE_NO_SYMLINKS)`` where the kernel has it (Linux 5.6+; Python has no binding, so it is
called through ``syscall(2)``), else one component at a time with ``O_NOFOLLOW`` and
``dir_fd=``. A symlink anywhere on the way fails with ``ELOOP``; the caller then works on
descriptors it holds, so nothing renamed afterwards can move the operation outside.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import stat as stat_mod
from typing import Callable, Iterator, Sequence

#: openat2(2): the syscall number is the same on x86_64 and aarch64 (unified table).
SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_AT_FDCWD = -100
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY

Owner = tuple[int, int]


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _load_openat2() -> Callable[[int, str, int, int], int] | None:
    """A caller of openat2 if this kernel and libc offer it, else None (probed once)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long

    def openat2(dir_fd: int, path: str, flags: int, mode: int) -> int:
        how = _OpenHow(flags, mode, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
        raw = os.fsencode(path)
        for _ in range(8):  # EAGAIN: a concurrent rename was seen; the kernel asks to retry
            fd = syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_long(dir_fd), ctypes.c_char_p(raw),
                         ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
            if fd >= 0:
                return int(fd)
            err = ctypes.get_errno()
            if err != errno.EAGAIN:
                raise OSError(err, os.strerror(err), path)
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)

    try:  # seccomp profiles (Docker's older ones) may answer ENOSYS or EPERM
        os.close(openat2(_AT_FDCWD, ".", _DIR_FLAGS | os.O_CLOEXEC, 0))
    except OSError:
        return None
    return openat2


_openat2 = _load_openat2()


def uses_openat2() -> bool:
    """Whether paths are resolved by the kernel (openat2) or by the component walk."""
    return _openat2 is not None


def open_at(dir_fd: int, parts: Sequence[str], flags: int, mode: int = 0) -> int:
    """Open ``parts`` (plain names, no ``..``) under ``dir_fd``; ``ELOOP`` on any symlink."""
    flags |= os.O_CLOEXEC | os.O_NOFOLLOW
    if not parts:
        return os.open(".", flags, dir_fd=dir_fd)
    if _openat2 is not None:
        try:
            return _openat2(dir_fd, "/".join(parts), flags, mode if flags & os.O_CREAT else 0)
        except NotADirectoryError:
            # O_DIRECTORY on a final symlink: say ELOOP, as for a symlink anywhere else.
            with closing_fd(open_dir(dir_fd, parts[:-1])) as parent:
                _raise_if_symlink(parent, parts[-1])
            raise
    fd = dir_fd
    try:
        for part in parts[:-1]:
            nxt = _open_component(fd, part, _DIR_FLAGS | os.O_CLOEXEC | os.O_NOFOLLOW, 0)
            if fd != dir_fd:
                os.close(fd)
            fd = nxt
        return _open_component(fd, parts[-1], flags, mode)
    finally:
        if fd != dir_fd:
            os.close(fd)


def _open_component(dir_fd: int, name: str, flags: int, mode: int) -> int:
    """One ``openat``; a symlink met with ``O_DIRECTORY`` is ``ELOOP`` (as with openat2)."""
    try:
        return os.open(name, flags, mode, dir_fd=dir_fd)
    except NotADirectoryError:
        _raise_if_symlink(dir_fd, name)
        raise


def _raise_if_symlink(dir_fd: int, name: str) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return  # gone meanwhile: the caller's own error stands
    if stat_mod.S_ISLNK(st.st_mode):
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name)


def open_dir(dir_fd: int, parts: Sequence[str]) -> int:
    """A readable descriptor of the directory ``parts`` under ``dir_fd``."""
    return open_at(dir_fd, parts, _DIR_FLAGS)


@contextlib.contextmanager
def closing_fd(fd: int) -> Iterator[int]:
    """Close ``fd`` when the block ends, however it ends."""
    try:
        yield fd
    finally:
        os.close(fd)


def chown_fd(fd: int, owner: Owner | None) -> None:
    """Give what ``fd`` names to ``owner`` (no-op without one)."""
    if owner is not None:
        os.fchown(fd, *owner)


def make_dirs(dir_fd: int, parts: Sequence[str], owner: Owner | None, mode: int = 0o777) -> int:
    """Open ``parts`` under ``dir_fd``, making missing directories (given to ``owner``)."""
    fd = os.dup(dir_fd)
    try:
        for part in parts:
            try:
                os.mkdir(part, mode, dir_fd=fd)
                made = True
            except FileExistsError:
                made = False
            nxt = open_dir(fd, [part])
            os.close(fd)
            fd = nxt
            if made:
                chown_fd(fd, owner)
        return fd
    except BaseException:
        os.close(fd)
        raise


def deepest_dir(dir_fd: int, parts: Sequence[str]) -> tuple[int, int]:
    """(descriptor, depth) of the longest existing directory prefix of ``parts``."""
    for depth in range(len(parts), -1, -1):
        try:
            return open_dir(dir_fd, parts[:depth]), depth
        except FileNotFoundError:
            continue
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))  # pragma: no cover


def walk_stats(dir_fd: int, skip: Callable[[str], bool]) -> Iterator[os.stat_result]:
    """lstat of every entry under ``dir_fd``, depth first (symlinks not followed; names
    ``skip`` rejects left out); entries that vanish meanwhile are ignored. Holds one
    descriptor per level, so a wide tree cannot exhaust descriptors."""
    stack: list[tuple[int, Iterator[str]]] = []
    fd: int | None = os.dup(dir_fd)
    try:
        while fd is not None:
            subdirs: list[str] = []
            with os.scandir(fd) as it:
                for e in it:
                    if skip(e.name):
                        continue
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat_mod.S_ISDIR(st.st_mode):
                        subdirs.append(e.name)
                    yield st
            stack.append((fd, iter(subdirs)))
            fd = None
            while stack and fd is None:
                parent, names = stack[-1]
                name = next(names, None)
                if name is None:
                    os.close(parent)
                    stack.pop()
                    continue
                with contextlib.suppress(OSError):
                    fd = open_dir(parent, [name])
    finally:
        if fd is not None:
            os.close(fd)
        for parent, _ in stack:
            os.close(parent)


def rmtree_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` under ``dir_fd`` with everything in it; a symlink is removed itself."""
    try:
        fd = open_dir(dir_fd, [name])
    except OSError as err:
        if err.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        os.unlink(name, dir_fd=dir_fd)
        return
    with closing_fd(fd):
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for child, is_dir in entries:
            try:
                if is_dir:
                    rmtree_at(fd, child)
                else:
                    os.unlink(child, dir_fd=fd)
            except FileNotFoundError:
                continue
    os.rmdir(name, dir_fd=dir_fd)
