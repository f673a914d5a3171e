"""Folder listings and usage walks run in walker processes (jupyter_bai/engine/fswalker.py).

The server relies on them for three things: the answer is exactly what an in-process walk gives
(order, symlinks as themselves, upload temp files hidden), a walker that dies is replaced
without the user seeing an error, and a walker that cannot start never breaks a listing.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import psutil
import pytest

from jupyter_bai.engine import fsscan, fswalker
from jupyter_bai.engine.store import Store
from jupyter_bai.engine.vfolders import TEMP_PREFIX, VFolderManager
from jupyter_bai.spec.errors import InvalidRequest
from jupyter_bai.spec.vfolder import VFolderCreate


@pytest.fixture
def mgr(tmp_path: Path) -> VFolderManager:
    store = Store(tmp_path / "state" / "bai.db")
    m = VFolderManager(store, tmp_path / "storage")
    m.create(VFolderCreate(name="data", quota=10 << 20))
    yield m
    m.close()
    store.close()


def fill(root: Path, outside: Path) -> None:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "sub" / "deep" / "z.bin").write_bytes(b"z" * 300)
    (root / "b.txt").write_bytes(b"bb")
    (root / "a.txt").write_bytes(b"a")
    (root / "Zdir").mkdir()
    (root / f"{TEMP_PREFIX}half").write_bytes(b"x" * 1000)  # an upload in progress
    os.link(root / "a.txt", root / "sub" / "a-again.txt")  # hard link: counted once
    (outside / "secret").write_bytes(b"s" * 5000)
    os.symlink(outside, root / "escape")
    os.symlink(outside / "secret", root / "sub" / "secret-link")


def walkers_of(mgr: VFolderManager) -> set[int]:
    return {w.proc.pid for w in mgr.walkers._live}


def test_listing_and_usage_match_an_in_process_walk(mgr: VFolderManager, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = mgr.host_path("data")
    fill(root, outside)

    listed = json.loads(mgr.files_json("data"))
    assert [f["name"] for f in listed] == ["Zdir", "sub", "a.txt", "b.txt", "escape"]
    assert {f["name"]: f["type"] for f in listed}["escape"] == "symlink"
    assert [e.model_dump() for e in mgr.files("data")] == listed
    sub = json.loads(mgr.files_json("data", "sub"))
    assert [(f["path"], f["type"]) for f in sub] == [
        ("sub/deep", "dir"), ("sub/a-again.txt", "file"), ("sub/secret-link", "symlink")]
    # usage: a.txt once (hard link), b.txt, z.bin; the temp file and what symlinks name are not
    assert mgr.get("data").usage_bytes == 1 + 2 + 300
    assert mgr.get("data").file_count == 3
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert mgr.walkers.usage(fd) == fsscan.usage(fd)
    finally:
        os.close(fd)
    # all of it happened in a child process of this one, not in this process
    pids = walkers_of(mgr)
    assert pids and all(psutil.Process(p).ppid() == os.getpid() for p in pids)


def test_a_file_or_a_symlink_is_refused_as_before(mgr: VFolderManager, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    fill(mgr.host_path("data"), outside)
    with pytest.raises(InvalidRequest, match="not a directory"):
        mgr.files_json("data", "a.txt")
    with pytest.raises(InvalidRequest, match="symlink"):
        mgr.files_json("data", "escape")


def test_a_killed_walker_is_replaced(mgr: VFolderManager) -> None:
    (mgr.host_path("data") / "f").write_bytes(b"1")
    assert len(json.loads(mgr.files_json("data"))) == 1
    (old,) = walkers_of(mgr)
    os.kill(old, signal.SIGKILL)
    assert [f["name"] for f in json.loads(mgr.files_json("data"))] == ["f"]
    (new,) = walkers_of(mgr)
    assert new != old
    assert not psutil.pid_exists(old) or psutil.Process(old).status() != psutil.STATUS_ZOMBIE


def test_concurrent_listings_each_get_their_own_answer(mgr: VFolderManager) -> None:
    root = mgr.host_path("data")
    for d in range(6):
        (root / f"d{d}").mkdir()
        for i in range(d * 50):
            (root / f"d{d}" / f"f{i}").touch()
    results: dict[int, int] = {}

    def list_dir(d: int) -> None:
        for _ in range(5):
            results[d] = len(json.loads(mgr.files_json("data", f"d{d}")))

    threads = [threading.Thread(target=list_dir, args=(d,)) for d in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {d: d * 50 for d in range(6)}
    assert 1 <= len(walkers_of(mgr)) <= 2  # the pool's size, however many callers


def test_no_walker_still_lists_in_process(
    mgr: VFolderManager, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (mgr.host_path("data") / "f").write_bytes(b"12")
    for w in list(mgr.walkers._live):  # the walker that created the folder dies...
        w.proc.kill()
        w.proc.wait()
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")  # ...and none can start
    with caplog.at_level(logging.WARNING):
        assert [f["name"] for f in json.loads(mgr.files_json("data"))] == ["f"]
        assert mgr.get("data").usage_bytes == 2
    assert "cannot start the folder walker" in caplog.text
    assert not walkers_of(mgr)


def test_close_ends_the_walkers(tmp_path: Path) -> None:
    store = Store(tmp_path / "bai.db")
    m = VFolderManager(store, tmp_path / "storage")
    m.create(VFolderCreate(name="data"))
    m.files_json("data")
    procs = [w.proc for w in m.walkers._live]
    assert procs
    m.close()
    assert all(p.poll() is not None for p in procs)
    assert json.loads(m.files_json("data")) == []  # after close: in this process
    store.close()


def test_a_walker_refuses_a_request_without_a_descriptor() -> None:
    import socket

    ours, theirs = socket.socketpair()
    t = threading.Thread(target=fswalker._serve, args=(theirs,))
    t.start()
    ours.sendall(json.dumps({"op": "list", "prefix": ""}).encode())
    head = ours.recv(9)
    body = json.loads(ours.recv(int.from_bytes(head[1:], "big")))
    assert head[:1] == b"1" and "exactly one directory descriptor" in body["message"]
    ours.close()
    t.join(5)
    assert not t.is_alive()
    theirs.close()
