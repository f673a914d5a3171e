"""VFolders: named directories under a storage root, with file operations that cannot escape.

Each folder lives at ``root/<id>`` (named by id, not by name, so a rename or a delete never
races with a path someone else holds) and its metadata is a row in the Store. A session may
change a rw folder while the engine works in it (swap a directory for a symlink, say), so no
file operation here follows a path string: each opens the folder's directory and walks
beneath that descriptor without following symlinks (:mod:`jupyter_bai.engine.safefs`), then
acts on descriptors it holds. Symlinks are listed as symlinks and never followed: reading,
writing or listing through one is refused; removing or moving the link itself works.

The methods block (file I/O, whole-tree walks for usage): the API calls them from an
executor, never on the event loop.
"""
from __future__ import annotations

import builtins
import contextlib
import errno
import logging
import os
import sqlite3
import stat as stat_mod
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from jupyter_bai.engine import fsscan, safefs
from jupyter_bai.engine.fsscan import TEMP_PREFIX
from jupyter_bai.engine.fsscan import Row as _Row
from jupyter_bai.engine.fsscan import is_temp as _is_temp
from jupyter_bai.engine.fsscan import row as _row
from jupyter_bai.engine.fswalker import FsWalkers, WalkerUnavailable
from jupyter_bai.engine.safefs import Owner, closing_fd
from jupyter_bai.engine.store import Store
from jupyter_bai.spec.errors import BaiError, Conflict, InvalidRequest, NotFound, QuotaExceeded
from jupyter_bai.spec.vfolder import (
    FileEntry,
    Permission,
    UsageMode,
    VFolderCreate,
    VFolderInfo,
    validate_vfolder_name,
)

CHUNK_SIZE = 1 << 20
log = logging.getLogger(__name__)

#: A folder's own directory (``root/<id>``) is never a symlink; refuse one if it ever is.
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
#: Deleted folders are renamed to this prefix under the storage root, then removed.
TRASH_PREFIX = ".trash-"


def _new_id() -> str:
    """A fresh folder id (a module function so tests can force a collision)."""
    return uuid.uuid4().hex


def _fmt(n: int) -> str:
    """Human size for messages, in the same notation users type (``10m``)."""
    from jupyter_bai.spec.resources import format_size

    return format_size(n)


def _storage_error(message: str) -> BaiError:
    """A failure of the host's storage, not of the request."""
    return BaiError(message, status=500, code="storage-error")


class UploadTooLarge(BaiError):
    """The body is over the per-request cap (``c.BaiApp.max_upload_size``)."""

    status, code = 413, "upload-too-large"


@dataclass(frozen=True)
class FolderRecord:
    """One ``vfolders`` row."""

    id: str
    name: str
    usage_mode: str
    permission: str
    quota: int | None
    created_at: float


@dataclass(frozen=True)
class _Target:
    """A lexically checked path: plain components (no ``..``, no temp names) under a folder."""

    folder: FolderRecord
    parts: tuple[str, ...]

    @property
    def rel(self) -> str:
        return "/".join(self.parts)

    @property
    def leaf(self) -> str:
        return self.parts[-1]


@dataclass
class Download:
    """An open regular file of a folder, checked on the descriptor itself."""

    file: BinaryIO
    size: int
    name: str

    def close(self) -> None:
        self.file.close()


class VFolderManager:
    """Creates, lists and deletes vfolders and runs the file operations inside them.

    ``owner`` (uid, gid): when set, folder roots, uploaded files and directories the engine
    makes are given to it, so sessions running as that uid can use them.
    """

    def __init__(self, store: Store, root: Path, owner: Owner | None = None):
        self.store = store
        self.root = Path(root)
        self.owner = owner
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        #: Big listings and usage walks run in these processes, off the server's GIL.
        self.walkers = FsWalkers()
        if self.root.is_dir():
            threading.Thread(target=self.purge_trash, daemon=True, name="bai-vfolder-purge").start()

    def close(self) -> None:
        """Stop the walker processes; later listings walk in this process."""
        self.walkers.close()

    # ------------------------------------------------------------------ folders

    def create(self, req: VFolderCreate) -> VFolderInfo:
        """Make the directory and the row together: neither exists without the other."""
        name = validate_vfolder_name(req.name)
        if self._find(name) is not None:
            raise Conflict(f"vfolder {name!r} already exists")
        fid = _new_id()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with closing_fd(os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)) as root:
                os.mkdir(fid, dir_fd=root)
                with closing_fd(safefs.open_dir(root, [fid])) as fd:
                    safefs.chown_fd(fd, self.owner)
        except OSError as err:
            self._remove_dir(fid)
            raise _storage_error(
                f"cannot create vfolder {name!r}: storage root {str(self.root)!r} is not usable "
                f"({err.strerror or err})"
            ) from None
        created_at = time.time()
        try:
            with self.store.tx() as conn:
                conn.execute(
                    "INSERT INTO vfolders(id, name, usage_mode, permission, quota, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (fid, name, req.usage_mode.value, req.permission.value, req.quota, created_at),
                )
        except BaseException as err:
            self._remove_dir(fid)
            if isinstance(err, sqlite3.IntegrityError) and self._find(name) is not None:
                raise Conflict(f"vfolder {name!r} already exists") from None
            raise
        return self.get(name)

    def list(self) -> list[VFolderInfo]:
        """All folders by name, each with its current usage (a walk of each: blocking)."""
        rows = self.store.query("SELECT * FROM vfolders ORDER BY name")
        return [self._info(self._folder(r)) for r in rows]

    def get(self, name: str) -> VFolderInfo:
        """One folder with its current usage, or NotFound."""
        return self._info(self._require(name))

    def lookup(self, name: str) -> FolderRecord:
        """The folder's record without its usage (no walk of its files), or NotFound."""
        return self._require(name)

    def host_path(self, name: str) -> Path:
        """The folder's real directory on this host (what a session mount binds)."""
        folder = self._require(name)
        return Path(os.path.realpath(self.root / folder.id))

    def rename(self, name: str, new_name: str) -> VFolderInfo:
        """Change only the row: the directory is named by id, so nothing moves on disk."""
        folder = self._require(name)
        new_name = validate_vfolder_name(new_name)
        if new_name == name:
            return self._info(folder)
        try:
            with self.store.tx() as conn:
                conn.execute("UPDATE vfolders SET name = ? WHERE id = ?", (new_name, folder.id))
        except sqlite3.IntegrityError:
            raise Conflict(f"vfolder {new_name!r} already exists") from None
        return self.get(new_name)

    def delete(self, name: str) -> None:
        """Retire the directory, then drop the row; if the directory cannot be retired, the
        folder is kept. Retiring is one rename (``.trash-<id>``), cheap on the event loop;
        the files are removed by a background thread (and by :meth:`purge_trash` after a
        crash), so a huge folder never stalls the engine.

        Refusing to delete a folder a live session mounts is the session manager's job.
        """
        folder = self._require(name)
        with self._lock_for(folder.id):
            try:
                trash = self._retire(folder.id)
            except OSError as err:
                raise _storage_error(
                    f"cannot delete vfolder {name!r}: {err.strerror or err}; the folder was kept"
                ) from None
            with self.store.tx() as conn:
                conn.execute("DELETE FROM vfolders WHERE id = ?", (folder.id,))
        if trash:
            threading.Thread(target=self._purge, args=(trash,), daemon=True,
                             name=f"bai-vfolder-purge-{folder.id[:8]}").start()

    def purge_trash(self) -> None:
        """Remove what deletes left behind (the engine stopped before they finished)."""
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.root):
                if entry.name.startswith(TRASH_PREFIX):
                    self._purge(entry.name)

    def _retire(self, fid: str) -> str | None:
        """Rename ``root/<fid>`` out of the way; None if it is already gone."""
        trash = f"{TRASH_PREFIX}{fid}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self.root / fid, self.root / trash)
        except FileNotFoundError:
            return None
        return trash

    def _purge(self, trash: str) -> None:
        with contextlib.suppress(OSError):
            self._remove_dir(trash)

    def usage(self, name: str) -> int:
        """Bytes of regular files in the folder (symlinks not followed, hard links once)."""
        folder = self._require(name)
        with self._open_folder(folder) as fd:
            return self._usage(fd)[0]

    # ------------------------------------------------------------------ files

    def files(self, name: str, path: str = "") -> builtins.list[FileEntry]:
        """A directory's entries, directories first then by name; symlinks shown as such."""
        return [_model(row) for row in self._scan(name, path)]

    def files_json(self, name: str, path: str = "") -> bytes:
        """:meth:`files` as a JSON array, made in a walker process
        (:mod:`~jupyter_bai.engine.fswalker`): 50,000 stats and ~10 MB of JSON there cost the
        server's event loop nothing, while in a thread they hold the GIL it needs."""
        with self._listing_dir(name, path) as (fd, prefix):
            try:
                return self.walkers.listing_json(fd, prefix)
            except WalkerUnavailable as err:
                log.warning("listing in the engine's own process: %s", err)
                return fsscan.rows_json(fsscan.scan(fd, prefix)).encode()

    def _scan(self, name: str, path: str) -> builtins.list[_Row]:
        """The directory's entries as field tuples, in listing order."""
        with self._listing_dir(name, path) as (fd, prefix):
            return fsscan.scan(fd, prefix)

    @contextlib.contextmanager
    def _listing_dir(self, name: str, path: str) -> Iterator[tuple[int, str]]:
        """The directory to list, opened beneath its folder, and its path prefix."""
        t = self._target(name, path, allow_root=True)
        with self._fs("list", t), self._open_folder(t.folder) as root:
            try:
                fd = safefs.open_dir(root, t.parts)
            except NotADirectoryError:
                raise InvalidRequest(
                    f"path {t.rel!r} in vfolder {name!r} is not a directory"
                ) from None
            with closing_fd(fd):
                yield fd, (f"{t.rel}/" if t.parts else "")

    def _usage(self, fd: int) -> tuple[int, int]:
        """(bytes, count) of the folder open at ``fd``, walked in a walker process."""
        try:
            return self.walkers.usage(fd)
        except WalkerUnavailable as err:
            log.warning("usage walk in the engine's own process: %s", err)
            return fsscan.usage(fd)

    def stat(self, name: str, path: str) -> FileEntry:
        """One entry; a symlink is described as itself, not as what it names."""
        t = self._target(name, path, allow_root=True)
        with self._fs("stat", t), self._open_folder(t.folder) as root:
            if not t.parts:
                return _entry(os.fstat(root), name, "")
            with closing_fd(self._parent(root, t)) as parent:
                return _entry(os.stat(t.leaf, dir_fd=parent, follow_symlinks=False), t.leaf, t.rel)

    def mkdir(
        self, name: str, path: str, parents: bool = False, exist_ok: bool = False
    ) -> FileEntry:
        """Make a directory; ``parents`` and ``exist_ok`` as in ``mkdir -p``."""
        t = self._target(name, path)
        with self._fs("mkdir", t), self._open_folder(t.folder) as root:
            if parents:
                parent = safefs.make_dirs(root, t.parts[:-1], self.owner)
            else:
                parent = self._parent(root, t)
            with closing_fd(parent):
                try:
                    os.mkdir(t.leaf, dir_fd=parent)
                except FileExistsError:
                    st = os.stat(t.leaf, dir_fd=parent, follow_symlinks=False)
                    if exist_ok and stat_mod.S_ISDIR(st.st_mode):
                        return _entry(st, t.leaf, t.rel)
                    raise Conflict(f"path {t.rel!r} already exists in vfolder {name!r}") from None
                with closing_fd(safefs.open_dir(parent, [t.leaf])) as fd:
                    safefs.chown_fd(fd, self.owner)
                    return _entry(os.fstat(fd), t.leaf, t.rel)

    def begin_upload(
        self,
        name: str,
        path: str,
        *,
        size_hint: int | None = None,
        overwrite: bool = True,
        parents: bool = True,
        limit: int | None = None,
    ) -> Upload:
        """Check the target, quota and ``limit`` (bytes) and open a hidden temp file in the
        folder; write to it with :meth:`Upload.write`, then ``commit`` or ``abort``. Missing
        parent directories are made on commit when ``parents``, else refused now.

        Uploads are allowed into ``ro`` folders: permission governs how sessions mount a
        folder, while its owner manages the contents here.
        """
        t = self._target(name, path)
        if limit is not None and size_hint is not None and size_hint > limit:
            raise _too_large(limit, _fmt(size_hint))
        up = Upload(self, t, overwrite=overwrite, limit=limit)
        try:
            up._open(size_hint, parents)
        except BaseException:
            up.abort()
            raise
        return up

    def upload(
        self,
        name: str,
        path: str,
        src: bytes | BinaryIO,
        *,
        size_hint: int | None = None,
        overwrite: bool = True,
        limit: int | None = None,
    ) -> FileEntry:
        """Stream ``src`` into ``path`` atomically, within the folder's quota and ``limit``.

        Bytes go to a hidden temp file in the folder while being counted; past a limit the
        temp file is deleted and the folder is left exactly as it was. On success the temp
        file replaces the target in one rename; missing parent directories are made then.
        """
        if isinstance(src, (bytes, bytearray, memoryview)) and size_hint is None:
            size_hint = len(src)
        up = self.begin_upload(name, path, size_hint=size_hint, overwrite=overwrite, limit=limit)
        try:
            for chunk in _chunks(src):
                up.write(chunk)
            return up.commit()
        finally:
            up.abort()

    def open_for_download(self, name: str, path: str) -> Download:
        """An open regular file inside the folder, for the API to stream (caller closes)."""
        t = self._target(name, path)
        with self._fs("download", t), self._open_folder(t.folder) as root:
            # O_NONBLOCK: opening a FIFO a session planted must not hang the engine.
            fd = safefs.open_at(root, t.parts, os.O_RDONLY | os.O_NONBLOCK)
            try:
                st = os.fstat(fd)
                if not stat_mod.S_ISREG(st.st_mode):
                    raise InvalidRequest(f"path {t.rel!r} in vfolder {name!r} is not a file")
                os.set_blocking(fd, True)
                return Download(file=os.fdopen(fd, "rb"), size=st.st_size, name=t.leaf)
            except BaseException:
                os.close(fd)
                raise

    def move(self, name: str, src: str, dst: str) -> FileEntry:
        """Rename within the folder, like ``mv``: into ``dst`` if it is a directory, and
        replacing an existing file. A symlink is moved itself, not what it points to."""
        s = self._target(name, src)
        d = self._target(name, dst, allow_root=True, folder=s.folder)
        with self._open_folder(s.folder) as root, contextlib.ExitStack() as fds:
            with self._fs("move", s):
                sp = fds.enter_context(closing_fd(self._parent(root, s)))
                src_st = os.stat(s.leaf, dir_fd=sp, follow_symlinks=False)
            src_is_dir = stat_mod.S_ISDIR(src_st.st_mode)
            with self._fs("move", d):
                into, t = self._move_target(root, s, d)
                fds.enter_context(closing_fd(into))
            if t.parts == s.parts:
                return _entry(src_st, t.leaf, t.rel)
            if src_is_dir and t.parts[: len(s.parts)] == s.parts:
                raise InvalidRequest(f"cannot move {s.rel!r} into itself in vfolder {name!r}")
            with self._fs("move", t):
                try:
                    st = os.stat(t.leaf, dir_fd=into, follow_symlinks=False)
                except FileNotFoundError:
                    pass
                else:
                    if stat_mod.S_ISDIR(st.st_mode) or src_is_dir:
                        raise Conflict(f"path {t.rel!r} already exists in vfolder {name!r}")
                try:
                    os.rename(s.leaf, t.leaf, src_dir_fd=sp, dst_dir_fd=into)
                except OSError as err:
                    if err.errno == errno.EINVAL:
                        raise InvalidRequest(
                            f"cannot move {s.rel!r} into itself in vfolder {name!r}"
                        ) from None
                    raise
                return _entry(os.stat(t.leaf, dir_fd=into, follow_symlinks=False), t.leaf, t.rel)

    def remove(self, name: str, path: str, recursive: bool = False) -> None:
        """Delete a file, a symlink (not what it points to) or a directory."""
        t = self._target(name, path)
        with self._fs("remove", t), self._open_folder(t.folder) as root:
            with closing_fd(self._parent(root, t)) as parent:
                st = os.stat(t.leaf, dir_fd=parent, follow_symlinks=False)
                if not stat_mod.S_ISDIR(st.st_mode):
                    os.unlink(t.leaf, dir_fd=parent)
                elif recursive:
                    safefs.rmtree_at(parent, t.leaf)
                else:
                    try:
                        os.rmdir(t.leaf, dir_fd=parent)
                    except OSError as err:
                        if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                            raise InvalidRequest(
                                f"directory {t.rel!r} in vfolder {name!r} is not empty;"
                                " remove it recursively"
                            ) from None
                        raise

    # ------------------------------------------------------------------ helpers

    def _target(
        self, name: str, path: str, *, allow_root: bool = False, folder: FolderRecord | None = None
    ) -> _Target:
        """Lexical checks only; the filesystem is consulted through descriptors later."""
        folder = folder or self._require(name)
        if not isinstance(path, str):
            raise InvalidRequest(f"path {path!r} must be a string")
        if "\x00" in path:
            raise InvalidRequest(f"path {path!r} contains a NUL byte")
        parts = tuple(p for p in path.split("/") if p not in ("", "."))
        if path.startswith("/") or ".." in parts:
            raise InvalidRequest(f"path {path!r} escapes vfolder {name!r}")
        if any(_is_temp(p) for p in parts):
            raise InvalidRequest(f"path {path!r} uses a name reserved for uploads in progress")
        if not parts and not allow_root:
            raise InvalidRequest(
                f"path {path!r} is the root of vfolder {name!r}; give a path inside it"
            )
        return _Target(folder, parts)

    def _parent(self, root: int, t: _Target) -> int:
        """The descriptor of the directory holding ``t``'s last component."""
        try:
            return safefs.open_dir(root, t.parts[:-1])
        except FileNotFoundError:
            raise NotFound(
                f"parent directory of {t.rel!r} not found in vfolder {t.folder.name!r}"
            ) from None

    def _move_target(self, root: int, s: _Target, d: _Target) -> tuple[int, _Target]:
        """(directory descriptor, final path) for ``mv s d``: into ``d`` when it is a dir."""
        try:
            fd = safefs.open_dir(root, d.parts)
        except (FileNotFoundError, NotADirectoryError):
            pass
        else:
            return fd, _Target(d.folder, (*d.parts, s.leaf))
        return self._parent(root, d), d

    @contextlib.contextmanager
    def _open_folder(self, folder: FolderRecord) -> Iterator[int]:
        """The folder's directory descriptor; a missing directory is a storage fault."""
        path = self.root / folder.id
        try:
            fd = os.open(path, _FOLDER_FLAGS)
        except OSError as err:
            raise _storage_error(
                f"storage of vfolder {folder.name!r} is missing or unusable ({path}:"
                f" {err.strerror or err})"
            ) from None
        with closing_fd(fd):
            yield fd

    def _remove_dir(self, fid: str) -> None:
        """Delete ``root/<fid>`` through descriptors (symlinks inside removed, not followed)."""
        try:
            root = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        with closing_fd(root), contextlib.suppress(FileNotFoundError):
            safefs.rmtree_at(root, fid)

    def _find(self, name: str) -> FolderRecord | None:
        row = self.store.one("SELECT * FROM vfolders WHERE name = ?", (name,))
        return self._folder(row) if row is not None else None

    def _require(self, name: str) -> FolderRecord:
        folder = self._find(name) if isinstance(name, str) else None
        if folder is None:
            raise NotFound(f"vfolder {name!r} not found")
        return folder

    @staticmethod
    def _folder(row: sqlite3.Row) -> FolderRecord:
        return FolderRecord(
            id=row["id"],
            name=row["name"],
            usage_mode=row["usage_mode"],
            permission=row["permission"],
            quota=row["quota"],
            created_at=row["created_at"],
        )

    def _info(self, folder: FolderRecord) -> VFolderInfo:
        try:
            fd = os.open(self.root / folder.id, _FOLDER_FLAGS)
        except OSError:
            usage, count = 0, 0
        else:
            with closing_fd(fd):
                usage, count = self._usage(fd)
        return VFolderInfo(
            id=folder.id,
            name=folder.name,
            usage_mode=UsageMode(folder.usage_mode),
            permission=Permission(folder.permission),
            quota=folder.quota,
            usage_bytes=usage,
            file_count=count,
            created_at=folder.created_at,
        )

    def _lock_for(self, folder_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(folder_id, threading.Lock())

    @contextlib.contextmanager
    def _fs(self, what: str, t: _Target) -> Iterator[None]:
        """Turn an OSError from a file operation into one readable line."""
        name, rel = t.folder.name, t.rel
        try:
            yield
        except BaiError:
            raise
        except OSError as err:
            raise _fs_error(err, what, name, rel) from None


def _fs_error(err: OSError, what: str, name: str, rel: str) -> BaiError:
    """The user-facing error for ``err`` met while doing ``what`` on ``rel``."""
    code = err.errno
    if code == errno.ELOOP:
        return InvalidRequest(
            f"path {rel!r} in vfolder {name!r} is or goes through a symlink;"
            " symlinks in vfolders are listed but never followed"
        )
    if code == errno.EXDEV:
        return InvalidRequest(f"path {rel!r} escapes vfolder {name!r}")
    if code == errno.ENOENT:
        return NotFound(f"path {rel!r} not found in vfolder {name!r}")
    if code == errno.EEXIST:
        return Conflict(f"path {rel!r} already exists in vfolder {name!r}")
    if code == errno.ENOTDIR:
        return InvalidRequest(f"a parent of path {rel!r} in vfolder {name!r} is not a directory")
    if code == errno.ENAMETOOLONG:
        return InvalidRequest(
            f"path {rel[:80]!r}... in vfolder {name!r} is too long (255 bytes per name, 4096 in all)"
        )
    if code == errno.EISDIR:
        return InvalidRequest(f"path {rel!r} in vfolder {name!r} is a directory")
    if code in (errno.ENOTEMPTY, errno.EBUSY):
        return Conflict(f"cannot {what} {rel!r} in vfolder {name!r}: {err.strerror}")
    if code in (errno.EACCES, errno.EPERM):
        return BaiError(
            f"cannot {what} {rel!r} in vfolder {name!r}: permission denied",
            status=403, code="permission-denied",
        )
    if code in (errno.ENOSPC, errno.EDQUOT):
        return QuotaExceeded(f"cannot {what} {rel!r} in vfolder {name!r}: {err.strerror}")
    return _storage_error(f"cannot {what} {rel!r} in vfolder {name!r}: {err.strerror or err}")


def _model(row: _Row) -> FileEntry:
    name, path, kind, size, mtime, mode = row
    return FileEntry(name=name, path=path, type=kind, size=size, mtime=mtime, mode=mode)


def _entry(st: os.stat_result, name: str, rel: str) -> FileEntry:
    return _model(_row(st, name, rel))


def _quota_error(folder: FolderRecord, used: int, upload: str) -> QuotaExceeded:
    assert folder.quota is not None
    return QuotaExceeded(
        f"quota of vfolder {folder.name!r} exceeded: {_fmt(folder.quota)} limit, "
        f"{_fmt(used)} used, upload is {upload}"
    )


def _too_large(limit: int, upload: str) -> UploadTooLarge:
    return UploadTooLarge(
        f"upload is too large: {upload}, the engine accepts at most {_fmt(limit)} per file"
        " (c.BaiApp.max_upload_size)"
    )


class Upload:
    """One file being streamed into a folder.

    The bytes go to a hidden temp file created through the folder's descriptor in the
    deepest existing directory of the target; ``commit`` makes missing parents, re-checks the
    target and the quota under the folder's lock and renames the temp file into place;
    ``abort`` (also after a commit: a no-op then) removes it. Nothing is left on any failure.
    Calls may come from different threads, one at a time or racing an ``abort``.
    """

    def __init__(self, mgr: VFolderManager, target: _Target, *, overwrite: bool,
                 limit: int | None) -> None:
        self.mgr, self.target, self.overwrite, self.limit = mgr, target, overwrite, limit
        self.written = 0
        self._used = self._old_size = 0
        self._mode = 0o644
        self._root = self._tmp_dir = self._fd = -1
        self._depth = 0
        self._tmp = ""
        self._done = False
        self._guard = threading.RLock()

    @property
    def _folder(self) -> FolderRecord:
        return self.target.folder

    def _open(self, size_hint: int | None, parents: bool) -> None:
        t = self.target
        with self.mgr._fs("upload", t):
            with self.mgr._open_folder(t.folder) as root:
                self._root = os.dup(root)
            self._tmp_dir, self._depth = safefs.deepest_dir(self._root, t.parts[:-1])
            if self._depth == len(t.parts) - 1:
                self._old_size = self._check_target(self._tmp_dir)
            elif not parents:
                raise NotFound(
                    f"parent directory of {t.rel!r} not found in vfolder {t.folder.name!r};"
                    " pass parents=true to make it"
                )
            if self._folder.quota is not None:
                self._used = self.mgr._usage(self._root)[0]
                if size_hint is not None and self._over_quota(size_hint):
                    raise _quota_error(self._folder, self._used, _fmt(size_hint))
            self._tmp = f"{TEMP_PREFIX}{uuid.uuid4().hex}"
            self._fd = os.open(
                self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600, dir_fd=self._tmp_dir,
            )
            safefs.chown_fd(self._fd, self.mgr.owner)

    def _over_quota(self, size: int) -> bool:
        quota = self._folder.quota
        return quota is not None and self._used - self._old_size + size > quota

    def _check_target(self, parent: int) -> int:
        """Size of the file the upload would replace (0 if none); refuse impossible targets."""
        t = self.target
        try:
            st = os.stat(t.leaf, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return 0
        name = t.folder.name
        if stat_mod.S_ISDIR(st.st_mode):
            raise InvalidRequest(f"path {t.rel!r} in vfolder {name!r} is a directory")
        if stat_mod.S_ISLNK(st.st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
        if not stat_mod.S_ISREG(st.st_mode):
            raise InvalidRequest(f"path {t.rel!r} in vfolder {name!r} is not a regular file")
        if not self.overwrite:
            raise Conflict(f"path {t.rel!r} already exists in vfolder {name!r}")
        self._mode = stat_mod.S_IMODE(st.st_mode)
        return st.st_size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``; past the cap or the quota the upload is aborted and refused."""
        n = len(data)
        with self._guard:
            if self._done:
                raise InvalidRequest("the upload was already finished or aborted")
            if self.limit is not None and self.written + n > self.limit:
                self.abort()
                raise _too_large(self.limit, f"more than {_fmt(self.limit)}")
            if self._over_quota(self.written + n):
                self.abort()
                raise _quota_error(self._folder, self._used, f"at least {_fmt(self.written + n)}")
            view = memoryview(data)
            try:
                with self.mgr._fs("upload", self.target):
                    while view:
                        view = view[os.write(self._fd, view):]
            except BaseException:
                self.abort()
                raise
            self.written += n

    def commit(self) -> FileEntry:
        """Put the file in place (atomically replacing an old one) and describe it."""
        t = self.target
        with self._guard:
            if self._done:
                raise InvalidRequest("the upload was already finished or aborted")
            try:
                with self.mgr._lock_for(self._folder.id), self.mgr._fs("upload", t):
                    rest = t.parts[self._depth : -1]
                    if self._folder.quota is not None:
                        # Another upload may have landed while this one streamed.
                        self._used = self.mgr._usage(self._root)[0]
                        if rest and self._over_quota(self.written):  # before making parents
                            raise _quota_error(self._folder, self._used, _fmt(self.written))
                    with closing_fd(safefs.make_dirs(self._tmp_dir, rest, self.mgr.owner)) as parent:
                        self._old_size = self._check_target(parent)
                        if self._over_quota(self.written):
                            raise _quota_error(self._folder, self._used, _fmt(self.written))
                        os.fchmod(self._fd, self._mode)
                        os.rename(self._tmp, t.leaf, src_dir_fd=self._tmp_dir, dst_dir_fd=parent)
                        self._tmp = ""
                        return _entry(os.fstat(self._fd), t.leaf, t.rel)
            finally:
                self.abort()

    def abort(self) -> None:
        """Close everything and remove the temp file if it is still there (idempotent)."""
        with self._guard:
            if self._done:
                return
            self._done = True
            if self._tmp and self._tmp_dir >= 0:
                with contextlib.suppress(OSError):
                    os.unlink(self._tmp, dir_fd=self._tmp_dir)
            for fd in (self._fd, self._tmp_dir, self._root):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._fd = self._tmp_dir = self._root = -1


def _chunks(src: bytes | bytearray | memoryview | BinaryIO) -> Iterator[bytes | memoryview]:
    """Yield ``src`` in bounded pieces, whether it is bytes or a readable binary stream."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        view = memoryview(src)
        for i in range(0, len(view), CHUNK_SIZE):
            yield view[i : i + CHUNK_SIZE]
        return
    while True:
        chunk = src.read(CHUNK_SIZE)
        if not chunk:
            return
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise InvalidRequest("upload source must be bytes or a binary stream")
        yield chunk
