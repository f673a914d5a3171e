"""VFolderManager on a real filesystem and a real SQLite store.

Most of this file is about escapes: every file operation is tried through ``..``, absolute
paths and symlinks planted inside the folder, and the outside directory must stay untouched.
"""
from __future__ import annotations

import io
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from conftest import require

from jupyter_bai.engine import safefs
from jupyter_bai.engine import vfolders as vf_mod
from jupyter_bai.engine.store import Store
from jupyter_bai.engine.vfolders import TEMP_PREFIX, VFolderManager
from jupyter_bai.spec.errors import BaiError, Conflict, InvalidRequest, NotFound, QuotaExceeded
from jupyter_bai.spec.vfolder import Permission, UsageMode, VFolderCreate


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "state" / "bai.db")
    yield s
    s.close()


@pytest.fixture(params=["openat2", "walk"])
def mgr(
    request: pytest.FixtureRequest, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> VFolderManager:
    """Every test runs with the kernel's resolver and with the component-by-component walk."""
    if request.param == "walk":
        monkeypatch.setattr(safefs, "_openat2", None)
    else:
        require(safefs.uses_openat2(), "a kernel with openat2 (Linux 5.6+)")
    m = VFolderManager(store, tmp_path / "storage")
    yield m
    m.close()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the storage root that nothing may reach."""
    d = tmp_path / "outside"
    (d / "sub").mkdir(parents=True)
    (d / "secret").write_text("top secret")
    (d / "sub" / "x").write_text("x")
    return d


def snapshot(d: Path) -> dict[str, bytes | None]:
    """Every path under ``d`` with its content, to prove nothing changed."""
    out: dict[str, bytes | None] = {}
    for root, dirs, files in os.walk(d):
        for n in dirs:
            out[os.path.relpath(os.path.join(root, n), d)] = None
        for n in files:
            p = os.path.join(root, n)
            out[os.path.relpath(p, d)] = Path(p).read_bytes() if not os.path.islink(p) else b"@"
    return out


def make(mgr: VFolderManager, name: str = "data", **kw: object) -> Path:
    mgr.create(VFolderCreate(name=name, **kw))
    return mgr.host_path(name)


# ---------------------------------------------------------------- folders


def test_create_list_get_delete(mgr: VFolderManager, tmp_path: Path) -> None:
    info = mgr.create(VFolderCreate(name="data", usage_mode="model", permission="ro", quota="10m"))
    assert info.name == "data"
    assert info.usage_mode is UsageMode.model and info.permission is Permission.ro
    assert info.quota == 10 * 2**20 and info.usage_bytes == 0 and info.file_count == 0
    assert info.host == "local"
    path = mgr.host_path("data")
    assert path == (tmp_path / "storage" / info.id).resolve() and path.is_dir()
    mgr.create(VFolderCreate(name="another"))
    assert [f.name for f in mgr.list()] == ["another", "data"]
    mgr.upload("data", "f.txt", b"hello")
    got = mgr.get("data")
    assert (got.usage_bytes, got.file_count) == (5, 1)
    mgr.delete("data")
    assert not path.exists()
    assert [f.name for f in mgr.list()] == ["another"]
    with pytest.raises(NotFound, match="vfolder 'data' not found"):
        mgr.get("data")


def test_duplicate_name_conflicts_and_leaves_no_dir(mgr: VFolderManager, tmp_path: Path) -> None:
    make(mgr)
    with pytest.raises(Conflict, match="vfolder 'data' already exists"):
        mgr.create(VFolderCreate(name="data"))
    assert len(list((tmp_path / "storage").iterdir())) == 1


def test_unknown_folder(mgr: VFolderManager) -> None:
    for call in (
        lambda: mgr.get("nope"),
        lambda: mgr.delete("nope"),
        lambda: mgr.files("nope"),
        lambda: mgr.upload("nope", "f", b"x"),
        lambda: mgr.host_path("nope"),
        lambda: mgr.usage("nope"),
    ):
        with pytest.raises(NotFound, match="vfolder 'nope' not found"):
            call()


@pytest.mark.parametrize(
    "name", ["", ".hidden", "-x", "_x", "a/b", "a b", "x" * 65, "é", "..", "a\x00"]
)
def test_bad_names(name: str) -> None:
    with pytest.raises(ValidationError, match="invalid vfolder name"):
        VFolderCreate(name=name)


@pytest.mark.parametrize("name", ["a", "A.b_c-1", "9", "x" * 64, "data.v2"])
def test_good_names(name: str) -> None:
    assert VFolderCreate(name=name).name == name


def test_quota_parsing() -> None:
    assert VFolderCreate(name="a", quota="10m").quota == 10 * 2**20
    assert VFolderCreate(name="a", quota=1234).quota == 1234
    assert VFolderCreate(name="a").quota is None
    for bad in (0, -1, "0", "abc", True, 1.5):
        with pytest.raises(ValidationError):
            VFolderCreate(name="a", quota=bad)
    with pytest.raises(ValidationError):
        VFolderCreate(name="a", color="red")


def test_rename_keeps_directory(mgr: VFolderManager) -> None:
    path = make(mgr)
    make(mgr, "taken")
    mgr.upload("data", "f", b"1")
    assert mgr.rename("data", "renamed").name == "renamed"
    assert mgr.host_path("renamed") == path and (path / "f").exists()
    with pytest.raises(Conflict):
        mgr.rename("renamed", "taken")
    with pytest.raises(InvalidRequest, match="invalid vfolder name"):
        mgr.rename("renamed", ".bad")


def test_create_is_atomic_when_root_is_unusable(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "rootfile"
    root.write_text("not a directory")
    mgr = VFolderManager(store, root)
    with pytest.raises(BaiError, match="cannot create vfolder 'data'"):
        mgr.create(VFolderCreate(name="data"))
    assert mgr.list() == []
    assert store.query("SELECT * FROM vfolders") == []


def test_create_removes_dir_when_insert_fails(
    mgr: VFolderManager, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.execute(
        "INSERT INTO vfolders(id, name, usage_mode, permission, quota, created_at)"
        " VALUES ('fixed', 'other', 'general', 'rw', NULL, 0)"
    )
    monkeypatch.setattr(vf_mod, "_new_id", lambda: "fixed")
    (tmp_path / "storage").mkdir()
    with pytest.raises(sqlite3.IntegrityError):
        mgr.create(VFolderCreate(name="data"))
    assert not (tmp_path / "storage" / "fixed").exists()
    assert [r["name"] for r in store.query("SELECT name FROM vfolders")] == ["other"]


def test_delete_failure_keeps_row(mgr: VFolderManager, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make(mgr)

    def refuse(fid: str) -> None:
        raise PermissionError(13, "Permission denied", fid)

    monkeypatch.setattr(mgr, "_retire", refuse)
    with pytest.raises(BaiError, match="cannot delete vfolder 'data'.*kept") as err:
        mgr.delete("data")
    assert "\n" not in str(err.value)
    assert mgr.get("data").name == "data" and path.is_dir()


def test_delete_retires_at_once_and_trash_is_purged(mgr: VFolderManager, tmp_path: Path) -> None:
    path = make(mgr)
    mgr.upload("data", "d/f", b"x")
    (path / "d" / "out").symlink_to(tmp_path)  # removed itself, never followed
    mgr.delete("data")
    assert not path.exists() and mgr.list() == []
    for t in threading.enumerate():
        if t.name.startswith("bai-vfolder-purge"):
            t.join()
    # A delete the engine did not finish (killed) is finished by the next purge.
    left = tmp_path / "storage" / f"{vf_mod.TRASH_PREFIX}abc"
    (left / "x" / "y").mkdir(parents=True)
    (left / "x" / "y" / "f").write_bytes(b"1")
    mgr.purge_trash()
    assert sorted(os.listdir(tmp_path / "storage")) == []
    assert tmp_path.is_dir() and (tmp_path / "state").is_dir()


def test_delete_when_directory_already_gone(mgr: VFolderManager) -> None:
    path = make(mgr)
    path.rmdir()
    mgr.delete("data")
    assert mgr.list() == []


# ---------------------------------------------------------------- escapes

ESCAPES = ["..", "../x", "../../etc/passwd", "/etc/passwd", "/", "a/../../x", "a/..", "sub/../../x"]


@pytest.mark.parametrize("path", ESCAPES)
def test_lexical_escapes_refused_everywhere(
    mgr: VFolderManager, outside: Path, path: str
) -> None:
    make(mgr)
    mgr.mkdir("data", "sub")
    mgr.upload("data", "a.txt", b"a")
    before = snapshot(outside)
    calls = [
        lambda: mgr.files("data", path),
        lambda: mgr.stat("data", path),
        lambda: mgr.mkdir("data", path),
        lambda: mgr.mkdir("data", path, parents=True, exist_ok=True),
        lambda: mgr.upload("data", path, b"pwned"),
        lambda: mgr.open_for_download("data", path),
        lambda: mgr.move("data", path, "moved"),
        lambda: mgr.move("data", "a.txt", path),
        lambda: mgr.remove("data", path, recursive=True),
    ]
    for call in calls:
        with pytest.raises(InvalidRequest, match=r"escapes vfolder 'data'"):
            call()
    assert snapshot(outside) == before
    assert (mgr.host_path("data") / "a.txt").read_bytes() == b"a"


def test_nul_byte_and_reserved_names(mgr: VFolderManager) -> None:
    make(mgr)
    with pytest.raises(InvalidRequest, match="NUL"):
        mgr.upload("data", "a\x00b", b"x")
    with pytest.raises(InvalidRequest, match="reserved"):
        mgr.stat("data", f"{TEMP_PREFIX}abc")
    with pytest.raises(InvalidRequest, match="root of vfolder 'data'"):
        mgr.remove("data", "", recursive=True)
    with pytest.raises(InvalidRequest, match="root of vfolder 'data'"):
        mgr.move("data", ".", "x")


def test_backslash_is_a_literal_character(mgr: VFolderManager) -> None:
    path = make(mgr)
    mgr.upload("data", "..\\x", b"1")
    assert (path / "..\\x").read_bytes() == b"1"
    assert not (path.parent / "x").exists()


SYMLINK = "is or goes through a symlink"


def test_symlink_to_outside_dir_refused_everywhere(mgr: VFolderManager, outside: Path) -> None:
    path = make(mgr)
    mgr.upload("data", "a.txt", b"a")
    (path / "evil").symlink_to(outside)
    (path / "evil_rel").symlink_to(os.path.relpath(outside, path))
    before = snapshot(outside)
    for link in ("evil", "evil_rel"):
        calls = [
            lambda: mgr.files("data", link),
            lambda: mgr.files("data", f"{link}/sub"),
            lambda: mgr.stat("data", f"{link}/secret"),
            lambda: mgr.open_for_download("data", f"{link}/secret"),
            lambda: mgr.upload("data", f"{link}/new", b"pwned"),
            lambda: mgr.upload("data", f"{link}/secret", b"pwned"),
            lambda: mgr.upload("data", f"{link}/deep/new", b"pwned"),
            lambda: mgr.mkdir("data", f"{link}/d"),
            lambda: mgr.mkdir("data", f"{link}/d/e", parents=True),
            lambda: mgr.move("data", "a.txt", f"{link}/stolen"),
            lambda: mgr.move("data", "a.txt", link),
            lambda: mgr.move("data", f"{link}/secret", "stolen"),
            lambda: mgr.remove("data", f"{link}/secret"),
            lambda: mgr.remove("data", f"{link}/sub", recursive=True),
        ]
        for call in calls:
            with pytest.raises(InvalidRequest, match=rf"path '{link}.*' in vfolder 'data' {SYMLINK}"):
                call()
        # The link itself is described, not followed.
        assert mgr.stat("data", link).type == "symlink"
    assert snapshot(outside) == before
    assert (path / "a.txt").read_bytes() == b"a"
    assert mgr.usage("data") == 1
    listing = {e.name: e.type for e in mgr.files("data")}
    assert listing == {"a.txt": "file", "evil": "symlink", "evil_rel": "symlink"}
    # The link itself may be removed; what it points to stays.
    mgr.remove("data", "evil")
    mgr.remove("data", "evil_rel", recursive=True)
    assert not os.path.lexists(path / "evil")
    assert snapshot(outside) == before


def test_symlink_to_outside_file_refused(mgr: VFolderManager, outside: Path) -> None:
    path = make(mgr)
    (path / "pw").symlink_to(outside / "secret")
    (path / "dangling").symlink_to(outside / "not-yet")
    before = snapshot(outside)
    for call in (
        lambda: mgr.open_for_download("data", "pw"),
        lambda: mgr.upload("data", "pw", b"pwned"),
        lambda: mgr.upload("data", "dangling", b"pwned"),
        lambda: mgr.mkdir("data", "dangling/x", parents=True),
    ):
        with pytest.raises(InvalidRequest, match=SYMLINK):
            call()
    with pytest.raises(Conflict, match="'dangling' already exists"):
        mgr.mkdir("data", "dangling")
    assert mgr.stat("data", "pw").type == "symlink"
    assert snapshot(outside) == before
    assert not (outside / "not-yet").exists()
    assert mgr.usage("data") == 0
    # Renaming the link itself moves only the link.
    mgr.move("data", "pw", "pw2")
    assert os.path.islink(path / "pw2") and snapshot(outside) == before


def test_symlinks_inside_the_folder_are_listed_but_never_followed(mgr: VFolderManager) -> None:
    """A link that stays inside is refused too: between the check and the use a session could
    point it elsewhere, so the engine never follows one."""
    path = make(mgr)
    mgr.mkdir("data", "sub")
    mgr.upload("data", "sub/a.txt", b"abc")
    (path / "link").symlink_to("sub/a.txt")
    (path / "dlink").symlink_to("sub")
    for call in (
        lambda: mgr.open_for_download("data", "link"),
        lambda: mgr.upload("data", "link", b"new content"),
        lambda: mgr.files("data", "dlink"),
        lambda: mgr.upload("data", "dlink/b.txt", b"b"),
        lambda: mgr.open_for_download("data", "dlink/a.txt"),
    ):
        with pytest.raises(InvalidRequest, match=SYMLINK) as err:
            call()
        assert "\n" not in str(err.value)
    assert (path / "sub" / "a.txt").read_bytes() == b"abc"
    assert sorted(os.listdir(path / "sub")) == ["a.txt"]
    st = mgr.stat("data", "link")
    assert (st.type, st.size, st.path) == ("symlink", len("sub/a.txt"), "link")
    listing = {e.name: e.type for e in mgr.files("data")}
    assert listing == {"sub": "dir", "link": "symlink", "dlink": "symlink"}
    assert mgr.usage("data") == 3


# ---------------------------------------------------------------- files


def test_files_sorted_dirs_first_and_hide_temp(mgr: VFolderManager) -> None:
    path = make(mgr)
    mgr.upload("data", "b.txt", b"bb")
    mgr.upload("data", "a.txt", b"a")
    mgr.mkdir("data", "zdir")
    mgr.mkdir("data", "adir")
    (path / f"{TEMP_PREFIX}stale").write_bytes(b"x" * 100)
    entries = mgr.files("data")
    assert [e.name for e in entries] == ["adir", "zdir", "a.txt", "b.txt"]
    b = entries[-1]
    assert (b.type, b.size, b.path, b.mode) == ("file", 2, "b.txt", "-rw-r--r--")
    assert entries[0].mode.startswith("d") and entries[0].type == "dir"
    assert mgr.usage("data") == 3
    assert mgr.get("data").file_count == 2
    with pytest.raises(InvalidRequest, match="not a directory"):
        mgr.files("data", "a.txt")
    with pytest.raises(NotFound, match="path 'missing' not found in vfolder 'data'"):
        mgr.files("data", "missing")
    assert mgr.stat("data", "").type == "dir"


def test_mkdir(mgr: VFolderManager) -> None:
    path = make(mgr)
    assert mgr.mkdir("data", "d").type == "dir"
    with pytest.raises(Conflict):
        mgr.mkdir("data", "d")
    mgr.mkdir("data", "d", exist_ok=True)
    with pytest.raises(NotFound, match="parent directory of 'x/y'"):
        mgr.mkdir("data", "x/y")
    assert mgr.mkdir("data", "x/y/z", parents=True).path == "x/y/z"
    assert (path / "x" / "y" / "z").is_dir()
    mgr.upload("data", "f", b"1")
    with pytest.raises(Conflict):
        mgr.mkdir("data", "f", exist_ok=True)
    with pytest.raises((InvalidRequest, NotFound)):
        mgr.mkdir("data", "f/g", parents=True)


def test_upload_streams_from_file_object(mgr: VFolderManager, tmp_path: Path) -> None:
    path = make(mgr, quota="10m")
    data = os.urandom(3 * vf_mod.CHUNK_SIZE + 17)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    with src.open("rb") as fh:
        entry = mgr.upload("data", "in/deep/big.bin", fh)
    assert (entry.size, entry.path, entry.type) == (len(data), "in/deep/big.bin", "file")
    assert (path / "in" / "deep" / "big.bin").read_bytes() == data
    assert mgr.usage("data") == len(data)
    assert not [n for n in os.listdir(path / "in" / "deep") if n.startswith(TEMP_PREFIX)]


def test_upload_overwrite_flag_and_targets(mgr: VFolderManager) -> None:
    path = make(mgr)
    mgr.upload("data", "f", b"one")
    os.chmod(path / "f", 0o600)
    mgr.upload("data", "f", b"two")
    assert (path / "f").read_bytes() == b"two"
    assert mgr.stat("data", "f").mode == "-rw-------"  # an overwrite keeps the mode
    with pytest.raises(Conflict, match="'f' already exists"):
        mgr.upload("data", "f", b"three", overwrite=False)
    assert (path / "f").read_bytes() == b"two"
    mgr.mkdir("data", "d")
    with pytest.raises(InvalidRequest, match="is a directory"):
        mgr.upload("data", "d", b"x")
    with pytest.raises(InvalidRequest, match="not a directory"):
        mgr.upload("data", "f/x", b"x")


def test_upload_allowed_into_ro_folder(mgr: VFolderManager) -> None:
    path = make(mgr, permission="ro")
    mgr.upload("data", "model.bin", b"weights")
    assert (path / "model.bin").read_bytes() == b"weights"


class Stream(io.RawIOBase):
    """A non-seekable stream of ``n`` bytes, like a request body."""

    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        k = self.left if size < 0 else min(size, self.left)
        self.left -= k
        return b"z" * k


def test_quota_exceeded_leaves_folder_unchanged(mgr: VFolderManager) -> None:
    path = make(mgr, quota=10 * 2**20)
    mgr.upload("data", "keep.bin", b"k" * (9 * 2**20 + 2**19))  # 9.5m
    before_files = mgr.files("data")
    before = snapshot(path)
    attempts = [
        lambda: mgr.upload("data", "big.bin", b"b" * 2**20),  # size known: refused up front
        lambda: mgr.upload("data", "big.bin", Stream(2**20)),  # streamed: refused mid-way
        lambda: mgr.upload("data", "new/dir/big.bin", Stream(2**20)),
        lambda: mgr.upload("data", "big.bin", Stream(2**20), size_hint=2**20),
    ]
    for attempt in attempts:
        with pytest.raises(QuotaExceeded, match=r"quota of vfolder 'data' exceeded: 10") as err:
            attempt()
        assert "used, upload is" in str(err.value) and "\n" not in str(err.value)
        assert snapshot(path) == before
        assert mgr.files("data") == before_files
        assert mgr.usage("data") == 9 * 2**20 + 2**19
    assert not (path / "new").exists()
    # What still fits does fit.
    mgr.upload("data", "small.bin", Stream(2**19))
    assert mgr.usage("data") == 10 * 2**20


def test_overwrite_within_quota_counts_the_replaced_file(mgr: VFolderManager) -> None:
    make(mgr, quota=1000)
    mgr.upload("data", "f", b"x" * 800)
    mgr.upload("data", "f", b"y" * 900)  # 900 - 800 replaced: fits
    mgr.upload("data", "f", Stream(1000))
    assert mgr.usage("data") == 1000
    with pytest.raises(QuotaExceeded):
        mgr.upload("data", "f", Stream(1001))
    with pytest.raises(QuotaExceeded):
        mgr.upload("data", "g", b"1")
    assert mgr.usage("data") == 1000


def test_open_for_download(mgr: VFolderManager) -> None:
    make(mgr)
    mgr.upload("data", "d/f.txt", b"hi")
    dl = mgr.open_for_download("data", "d/f.txt")
    with dl.file:
        assert (dl.name, dl.size, dl.file.read()) == ("f.txt", 2, b"hi")
    with pytest.raises(InvalidRequest, match="not a file"):
        mgr.open_for_download("data", "d")
    with pytest.raises(NotFound):
        mgr.open_for_download("data", "d/missing")


def test_move(mgr: VFolderManager) -> None:
    path = make(mgr)
    mgr.upload("data", "a.txt", b"a")
    mgr.upload("data", "b.txt", b"b")
    mgr.mkdir("data", "dir/inner", parents=True)
    assert mgr.move("data", "a.txt", "renamed.txt").path == "renamed.txt"
    assert mgr.move("data", "renamed.txt", "dir").path == "dir/renamed.txt"  # into a directory
    assert (path / "dir" / "renamed.txt").read_bytes() == b"a"
    mgr.move("data", "b.txt", "dir/renamed.txt")  # replaces a file, like mv
    assert (path / "dir" / "renamed.txt").read_bytes() == b"b" and not (path / "b.txt").exists()
    with pytest.raises(InvalidRequest, match="into itself"):
        mgr.move("data", "dir", "dir/inner")
    mgr.mkdir("data", "other/dir", parents=True)
    with pytest.raises(Conflict):
        mgr.move("data", "dir", "other")  # other/dir exists
    with pytest.raises(NotFound):
        mgr.move("data", "missing", "x")
    with pytest.raises(NotFound, match="parent directory of 'no/such'"):
        mgr.move("data", "dir", "no/such")
    assert mgr.move("data", "dir", "").path == "dir"  # already at the root: nothing to do
    mgr.move("data", "dir", "moved")
    assert (path / "moved" / "inner").is_dir() and (path / "moved" / "renamed.txt").exists()


def test_remove(mgr: VFolderManager) -> None:
    path = make(mgr)
    mgr.upload("data", "d/f.txt", b"1")
    mgr.mkdir("data", "empty")
    with pytest.raises(InvalidRequest, match="directory 'd' in vfolder 'data' is not empty"):
        mgr.remove("data", "d")
    assert (path / "d" / "f.txt").exists()
    mgr.remove("data", "empty")
    mgr.remove("data", "d/f.txt")
    mgr.upload("data", "d/g.txt", b"1")
    mgr.remove("data", "d", recursive=True)
    assert os.listdir(path) == []
    with pytest.raises(NotFound, match="path 'd' not found"):
        mgr.remove("data", "d")


def test_usage_ignores_symlinks_and_counts_hard_links_once(mgr: VFolderManager) -> None:
    path = make(mgr)
    mgr.upload("data", "f", b"x" * 100)
    os.link(path / "f", path / "hard")
    (path / "soft").symlink_to("f")
    assert mgr.usage("data") == 100
    assert mgr.get("data").file_count == 1


def test_from_json_gives_one_line() -> None:
    req = VFolderCreate.from_json({"name": "m", "usage_mode": "model"})
    assert req.usage_mode is UsageMode.model
    with pytest.raises(InvalidRequest) as err:
        VFolderCreate.from_json({"name": ".x", "quota": "0", "mode": "x"})
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("invalid vfolder request: ")
    assert "invalid vfolder name '.x'" in msg and "quota" in msg and "unknown field 'mode'" in msg
    with pytest.raises(InvalidRequest, match="missing field 'name'"):
        VFolderCreate.from_json({})


def test_owner_gets_what_the_engine_makes(store: Store, tmp_path: Path) -> None:
    """Sessions run as an unprivileged uid: folder roots, uploads and new directories are
    theirs, while what existed before keeps its owner."""
    require(os.geteuid() == 0, "root (to give files to another uid)")
    owner = (65534, 65534)
    mgr = VFolderManager(store, tmp_path / "storage", owner=owner)
    path = make(mgr)
    mgr.upload("data", "a/b/f.bin", b"1", size_hint=1)
    mgr.mkdir("data", "m/n", parents=True)
    mgr.upload("data", "plain", io.BytesIO(b"22"))
    for rel in ("", "a", "a/b", "a/b/f.bin", "m", "m/n", "plain"):
        st = os.lstat(path / rel)
        assert (st.st_uid, st.st_gid) == owner, rel
    os.chown(path / "plain", 0, 0)
    mgr.upload("data", "plain", b"333")  # an overwrite is a new file: the owner's
    assert os.stat(path / "plain").st_uid == 65534
    mine = VFolderManager(store, tmp_path / "storage")
    mine.upload("data", "root-owned", b"x")
    assert os.stat(path / "root-owned").st_uid == 0


def test_many_uploads_leave_no_descriptors(mgr: VFolderManager) -> None:
    """Every path above opens descriptors; none may leak, even on refusals."""
    make(mgr, quota=100)
    mgr.files_json("data")  # the walker process's socket stays open between calls
    before = len(os.listdir("/proc/self/fd"))
    for i in range(200):
        mgr.upload("data", f"d/f{i % 5}", b"x", size_hint=1)
        with pytest.raises(QuotaExceeded):
            mgr.upload("data", "big", Stream(1000))
        with pytest.raises(InvalidRequest):
            mgr.files("data", "d/f0")
        dl = mgr.open_for_download("data", "d/f0")
        dl.close()
        mgr.files("data", "d")
    assert len(os.listdir("/proc/self/fd")) == before
