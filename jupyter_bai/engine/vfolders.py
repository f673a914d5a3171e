"""VFolders: named directories under a storage root, with file operations that cannot escape.

Each folder lives at ``root/<id>`` (named by id, not by name, so a rename or a delete never
races with a path someone else holds) and its metadata is a row in the Store. Every file
operation goes through :meth:`VFolderManager.resolve`, which refuses ``..``, absolute paths
and any symlink that leads outside the folder, so a session that plants ``ln -s /etc evil``
in a rw mount cannot make the engine read or write ``/etc`` through it.

The API is synchronous and cheap; the engine calls it from its loop or an executor. A session
writing into a rw mount at the same moment can still swap a directory for a symlink between
the check and the operation; uploads re-check just before the final rename to narrow that.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import stat as stat_mod
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

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

#: Uploads stream into a hidden temp file first; listings and usage skip these names.
TEMP_PREFIX = ".bai-upload-"
CHUNK_SIZE = 1 << 20


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


def _inside(base: str, real: str) -> bool:
    """Whether the real path ``real`` is ``base`` or lies under it."""
    try:
        return os.path.commonpath([base, real]) == base
    except ValueError:
        return False


@dataclass(frozen=True)
class _Folder:
    """One ``vfolders`` row."""

    id: str
    name: str
    usage_mode: str
    permission: str
    quota: int | None
    created_at: float


@dataclass(frozen=True)
class _Resolved:
    """A checked path: ``real`` is absolute and inside ``base``; ``rel`` is what users see."""

    folder: _Folder
    base: str
    real: str
    rel: str


class VFolderManager:
    """Creates, lists and deletes vfolders and runs the file operations inside them."""

    def __init__(self, store: Store, root: Path, owner: tuple[int, int] | None = None):
        self.store = store
        self.root = Path(root)
        # (uid, gid) sessions run as; the vfolders branch gives it what the engine creates.
        self.owner = owner
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # ------------------------------------------------------------------ folders

    def create(self, req: VFolderCreate) -> VFolderInfo:
        """Make the directory and the row together: neither exists without the other."""
        name = validate_vfolder_name(req.name)
        if self._find(name) is not None:
            raise Conflict(f"vfolder {name!r} already exists")
        fid = _new_id()
        path = self.root / fid
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            path.mkdir()
        except OSError as err:
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
            shutil.rmtree(path, ignore_errors=True)
            if isinstance(err, sqlite3.IntegrityError) and self._find(name) is not None:
                raise Conflict(f"vfolder {name!r} already exists") from None
            raise
        return self.get(name)

    def list(self) -> list[VFolderInfo]:
        """All folders by name, each with its current usage."""
        rows = self.store.query("SELECT * FROM vfolders ORDER BY name")
        return [self._info(self._folder(r)) for r in rows]

    def get(self, name: str) -> VFolderInfo:
        """One folder with its current usage, or NotFound."""
        return self._info(self._require(name))

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
        """Remove the files, then the row; if the files cannot all go, the row stays.

        Refusing to delete a folder a live session mounts is the session manager's job.
        """
        folder = self._require(name)
        path = self.root / folder.id
        with self._lock_for(folder.id):
            if os.path.lexists(path):
                try:
                    shutil.rmtree(path)
                except OSError as err:
                    where = f" ({err.filename})" if err.filename else ""
                    raise _storage_error(
                        f"cannot delete vfolder {name!r}: {err.strerror or err}{where};"
                        " the folder was kept"
                    ) from None
            with self.store.tx() as conn:
                conn.execute("DELETE FROM vfolders WHERE id = ?", (folder.id,))

    def usage(self, name: str) -> int:
        """Bytes of regular files in the folder (symlinks not followed, hard links once)."""
        folder = self._require(name)
        return self._walk(self._base(folder))[0]

    # ------------------------------------------------------------------ paths

    def resolve(
        self,
        name: str,
        path: str,
        *,
        must_exist: bool = False,
        allow_root: bool = False,
        follow_symlinks: bool = True,
    ) -> Path:
        """The real host path of ``path`` inside folder ``name``, or InvalidRequest.

        With ``follow_symlinks=False`` the last component is taken literally (so a symlink
        itself can be removed or renamed) while every directory above it is still followed
        and checked.
        """
        return Path(
            self._resolve(
                name, path, must_exist=must_exist, allow_root=allow_root, follow=follow_symlinks
            ).real
        )

    def _resolve(
        self,
        name: str,
        path: str,
        *,
        must_exist: bool = False,
        allow_root: bool = False,
        follow: bool = True,
        folder: _Folder | None = None,
    ) -> _Resolved:
        """Lexical checks first, then realpath containment; see :meth:`resolve`."""
        folder = folder or self._require(name)
        if not isinstance(path, str):
            raise InvalidRequest(f"path {path!r} must be a string")
        if "\x00" in path:
            raise InvalidRequest(f"path {path!r} contains a NUL byte")
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if path.startswith("/") or ".." in parts:
            raise InvalidRequest(f"path {path!r} escapes vfolder {name!r}")
        if any(p.startswith(TEMP_PREFIX) for p in parts):
            raise InvalidRequest(f"path {path!r} uses a name reserved for uploads in progress")
        base = self._base(folder)
        if not parts:
            if not allow_root:
                raise InvalidRequest(
                    f"path {path!r} is the root of vfolder {name!r}; give a path inside it"
                )
            return _Resolved(folder, base, base, "")
        rel = "/".join(parts)
        if follow:
            real = os.path.realpath(os.path.join(base, *parts))
        else:
            parent = os.path.realpath(os.path.join(base, *parts[:-1]))
            if not _inside(base, parent):
                raise InvalidRequest(f"path {path!r} escapes vfolder {name!r}")
            real = os.path.join(parent, parts[-1])
        if not _inside(base, real):
            raise InvalidRequest(f"path {path!r} escapes vfolder {name!r}")
        if must_exist and not os.path.lexists(real):
            raise NotFound(f"path {rel!r} not found in vfolder {name!r}")
        return _Resolved(folder, base, real, rel)

    # ------------------------------------------------------------------ files

    def files(self, name: str, path: str = "") -> list[FileEntry]:
        """A directory's entries, directories first then by name; symlinks shown as such."""
        r = self._resolve(name, path, must_exist=True, allow_root=True)
        if not os.path.isdir(r.real):
            raise InvalidRequest(f"path {r.rel!r} in vfolder {name!r} is not a directory")
        entries: list[FileEntry] = []
        with self._fs("list", name, r.rel), os.scandir(r.real) as it:
            for e in it:
                if e.name.startswith(TEMP_PREFIX):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                rel = f"{r.rel}/{e.name}" if r.rel else e.name
                entries.append(self._entry_from_stat(st, e.name, rel))
        entries.sort(key=lambda f: (f.type != "dir", f.name))
        return entries

    def stat(self, name: str, path: str) -> FileEntry:
        """One entry, following an in-folder symlink to what it names (as a download would)."""
        r = self._resolve(name, path, must_exist=True, allow_root=True)
        with self._fs("stat", name, r.rel):
            st = os.stat(r.real)
        return self._entry_from_stat(st, r.rel.rsplit("/", 1)[-1] if r.rel else name, r.rel)

    def mkdir(
        self, name: str, path: str, parents: bool = False, exist_ok: bool = False
    ) -> FileEntry:
        """Make a directory; ``parents`` and ``exist_ok`` as in ``mkdir -p``."""
        r = self._resolve(name, path)
        if os.path.lexists(r.real):
            if exist_ok and os.path.isdir(r.real):
                return self.stat(name, r.rel)
            raise Conflict(f"path {r.rel!r} already exists in vfolder {name!r}")
        parent = os.path.dirname(r.real)
        if not parents and not os.path.isdir(parent):
            raise NotFound(f"parent directory of {r.rel!r} not found in vfolder {name!r}")
        with self._fs("mkdir", name, r.rel):
            if parents:
                os.makedirs(r.real, exist_ok=exist_ok)
            else:
                os.mkdir(r.real)
        return self.stat(name, r.rel)

    def upload(
        self,
        name: str,
        path: str,
        src: bytes | BinaryIO,
        *,
        size_hint: int | None = None,
        overwrite: bool = True,
    ) -> FileEntry:
        """Stream ``src`` into ``path`` atomically, within the folder's quota.

        Bytes go to a hidden temp file next to the target while being counted; past the quota
        the temp file is deleted and the folder is left exactly as it was. On success the temp
        file replaces the target in one ``os.replace``; missing parent directories are made
        then. Uploads are allowed into ``ro`` folders: permission governs how sessions mount a
        folder, while its owner manages the contents here.
        """
        if isinstance(src, (bytes, bytearray, memoryview)) and size_hint is None:
            size_hint = len(src)
        r = self._resolve(name, path)
        folder = r.folder
        old_size = self._check_upload_target(r, overwrite)
        quota = folder.quota
        used = 0
        if quota is not None:
            used = self._walk(r.base)[0]
            if size_hint is not None and used - old_size + size_hint > quota:
                raise self._quota_error(folder, used, _fmt(size_hint))
        with self._fs("upload", name, r.rel):
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self._nearest_dir(r))
        try:
            written = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(src):
                    written += len(chunk)
                    if quota is not None and used - old_size + written > quota:
                        raise self._quota_error(folder, used, f"at least {_fmt(written)}")
                    out.write(chunk)
            with self._lock_for(folder.id):
                # Re-check everything: another upload may have landed, or a session may have
                # swapped a directory for a symlink while we streamed.
                r = self._resolve(name, r.rel, folder=folder)
                old_size = self._check_upload_target(r, overwrite)
                if quota is not None:
                    used = self._walk(r.base)[0]
                    if used - old_size + written > quota:
                        raise self._quota_error(folder, used, _fmt(written))
                with self._fs("upload", name, r.rel):
                    keep = os.path.isfile(r.real)
                    os.chmod(tmp, stat_mod.S_IMODE(os.stat(r.real).st_mode) if keep else 0o644)
                    os.makedirs(os.path.dirname(r.real), exist_ok=True)
                    r = self._resolve(name, r.rel, folder=folder)
                    os.replace(tmp, r.real)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return self.stat(name, r.rel)

    def open_for_download(self, name: str, path: str) -> Path:
        """The real path of a regular file inside the folder, for the API to stream."""
        r = self._resolve(name, path, must_exist=True)
        if not os.path.isfile(r.real):
            raise InvalidRequest(f"path {r.rel!r} in vfolder {name!r} is not a file")
        return Path(r.real)

    def move(self, name: str, src: str, dst: str) -> FileEntry:
        """Rename within the folder, like ``mv``: into ``dst`` if it is a directory, and
        replacing an existing file. A symlink is moved itself, not what it points to."""
        s = self._resolve(name, src, must_exist=True, follow=False)
        d = self._resolve(name, dst, allow_root=True, folder=s.folder)
        src_is_dir = os.path.isdir(s.real) and not os.path.islink(s.real)
        if os.path.isdir(d.real):
            leaf = os.path.basename(s.real)
            target = os.path.join(d.real, leaf)
            t_rel = f"{d.rel}/{leaf}" if d.rel else leaf
        else:
            d = self._resolve(name, dst, follow=False, folder=s.folder)
            target, t_rel = d.real, d.rel
        if target == s.real:
            return self._entry(target, t_rel)
        if src_is_dir and _inside(s.real, target):
            raise InvalidRequest(f"cannot move {s.rel!r} into itself in vfolder {name!r}")
        if os.path.lexists(target):
            if (os.path.isdir(target) and not os.path.islink(target)) or src_is_dir:
                raise Conflict(f"path {t_rel!r} already exists in vfolder {name!r}")
        if not os.path.isdir(os.path.dirname(target)):
            raise NotFound(f"parent directory of {t_rel!r} not found in vfolder {name!r}")
        with self._fs("move", name, s.rel):
            os.replace(s.real, target)
        return self._entry(target, t_rel)

    def remove(self, name: str, path: str, recursive: bool = False) -> None:
        """Delete a file, a symlink (not what it points to) or a directory."""
        r = self._resolve(name, path, must_exist=True, follow=False)
        with self._fs("remove", name, r.rel):
            if os.path.islink(r.real) or not os.path.isdir(r.real):
                os.unlink(r.real)
            elif recursive:
                shutil.rmtree(r.real)
            else:
                try:
                    os.rmdir(r.real)
                except OSError as err:
                    if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        raise InvalidRequest(
                            f"directory {r.rel!r} in vfolder {name!r} is not empty;"
                            " remove it recursively"
                        ) from None
                    raise

    # ------------------------------------------------------------------ helpers

    def _find(self, name: str) -> _Folder | None:
        row = self.store.one("SELECT * FROM vfolders WHERE name = ?", (name,))
        return self._folder(row) if row is not None else None

    def _require(self, name: str) -> _Folder:
        folder = self._find(name) if isinstance(name, str) else None
        if folder is None:
            raise NotFound(f"vfolder {name!r} not found")
        return folder

    @staticmethod
    def _folder(row: sqlite3.Row) -> _Folder:
        return _Folder(
            id=row["id"],
            name=row["name"],
            usage_mode=row["usage_mode"],
            permission=row["permission"],
            quota=row["quota"],
            created_at=row["created_at"],
        )

    def _base(self, folder: _Folder) -> str:
        """The folder's realpath; a missing directory is a storage fault, said plainly."""
        base = os.path.realpath(self.root / folder.id)
        if not os.path.isdir(base):
            raise _storage_error(f"storage of vfolder {folder.name!r} is missing ({base})")
        return base

    def _info(self, folder: _Folder) -> VFolderInfo:
        path = self.root / folder.id
        usage, count = self._walk(str(path)) if path.is_dir() else (0, 0)
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

    @staticmethod
    def _walk(base: str) -> tuple[int, int]:
        """(bytes, count) of regular files under ``base``, not following symlinks."""
        total = count = 0
        seen: set[tuple[int, int]] = set()
        stack = [base]
        while stack:
            try:
                it = os.scandir(stack.pop())
            except OSError:
                continue
            with it:
                for e in it:
                    if e.name.startswith(TEMP_PREFIX):
                        continue
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat_mod.S_ISDIR(st.st_mode):
                        stack.append(e.path)
                    elif stat_mod.S_ISREG(st.st_mode):
                        key = (st.st_dev, st.st_ino)
                        if st.st_nlink > 1:
                            if key in seen:
                                continue
                            seen.add(key)
                        total += st.st_size
                        count += 1
        return total, count

    def _entry(self, real: str, rel: str) -> FileEntry:
        st = os.lstat(real)
        return self._entry_from_stat(st, rel.rsplit("/", 1)[-1], rel)

    @staticmethod
    def _entry_from_stat(st: os.stat_result, name: str, rel: str) -> FileEntry:
        if stat_mod.S_ISLNK(st.st_mode):
            kind = "symlink"
        elif stat_mod.S_ISDIR(st.st_mode):
            kind = "dir"
        else:
            kind = "file"
        return FileEntry(
            name=name,
            path=rel,
            type=kind,
            size=0 if kind == "dir" else st.st_size,
            mtime=st.st_mtime,
            mode=stat_mod.filemode(st.st_mode),
        )

    def _check_upload_target(self, r: _Resolved, overwrite: bool) -> int:
        """Size of the file an upload would replace (0 if none); refuse impossible targets."""
        name = r.folder.name
        if os.path.isdir(r.real):
            raise InvalidRequest(f"path {r.rel!r} in vfolder {name!r} is a directory")
        if os.path.lexists(r.real):
            if not overwrite:
                raise Conflict(f"path {r.rel!r} already exists in vfolder {name!r}")
            if not os.path.isfile(r.real):
                raise InvalidRequest(f"path {r.rel!r} in vfolder {name!r} is not a regular file")
            return os.stat(r.real).st_size
        ancestor = os.path.dirname(r.real)
        while not os.path.lexists(ancestor):
            ancestor = os.path.dirname(ancestor)
        if not os.path.isdir(ancestor):
            raise InvalidRequest(
                f"a parent of path {r.rel!r} in vfolder {name!r} is not a directory"
            )
        return 0

    @staticmethod
    def _nearest_dir(r: _Resolved) -> str:
        """The deepest existing directory above the target, so the final rename stays on one
        filesystem and the temp file is never visible outside where the file will land."""
        d = os.path.dirname(r.real)
        while not os.path.isdir(d) and _inside(r.base, d) and d != r.base:
            d = os.path.dirname(d)
        return d if _inside(r.base, d) else r.base

    @staticmethod
    def _quota_error(folder: _Folder, used: int, upload: str) -> QuotaExceeded:
        assert folder.quota is not None
        return QuotaExceeded(
            f"quota of vfolder {folder.name!r} exceeded: {_fmt(folder.quota)} limit, "
            f"{_fmt(used)} used, upload is {upload}"
        )

    def _lock_for(self, folder_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(folder_id, threading.Lock())

    @contextlib.contextmanager
    def _fs(self, what: str, name: str, rel: str) -> Iterator[None]:
        """Turn an OSError from a file operation into one readable line."""
        try:
            yield
        except BaiError:
            raise
        except FileNotFoundError:
            raise NotFound(f"path {rel!r} not found in vfolder {name!r}") from None
        except FileExistsError:
            raise Conflict(f"path {rel!r} already exists in vfolder {name!r}") from None
        except NotADirectoryError:
            raise InvalidRequest(
                f"a parent of path {rel!r} in vfolder {name!r} is not a directory"
            ) from None
        except IsADirectoryError:
            raise InvalidRequest(f"path {rel!r} in vfolder {name!r} is a directory") from None
        except OSError as err:
            raise _storage_error(
                f"cannot {what} {rel!r} in vfolder {name!r}: {err.strerror or err}"
            ) from None


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
