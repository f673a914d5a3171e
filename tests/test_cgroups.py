"""Cgroup layout on a fake v2 tree: per-engine directories, controllers delegated at each level."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from jupyter_bai.engine.runtimes.cgroups import CgroupLimits


def test_v2_sessions_live_under_their_engine(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    own = tmp_path / "user.slice" / "lab"
    own.mkdir(parents=True)
    limits = CgroupLimits(root=tmp_path, proc_cgroup="0::/user.slice/lab\n", engine_id="e1")
    assert limits.version == "v2", limits.error
    base = own / "jupyter-bai" / "e1"
    assert limits.bases == {"unified": base}
    # Each level above the sessions delegates cpu and memory to its children.
    for level in (own, own / "jupyter-bai", base):
        assert (level / "cgroup.subtree_control").read_text() == "+cpu +memory", level
    procs = limits.create("s1", Decimal("0.5"), 64 << 20)
    assert procs == [str(base / "s1" / "cgroup.procs")]
    assert (base / "s1" / "cpu.max").read_text() == "50000 100000"
    assert (base / "s1" / "memory.max").read_text() == str(64 << 20)
    # Another engine on the same machine gets its own directory: sweeps never cross.
    other = CgroupLimits(root=tmp_path, proc_cgroup="0::/user.slice/lab\n", engine_id="e2")
    (own / "jupyter-bai" / "e2" / "s2").mkdir()
    assert other.sweep(live=set()) == ["s2"]
    assert (base / "s1").is_dir()


def test_old_layout_session_cgroups_are_swept_when_empty(tmp_path: Path) -> None:
    """Before per-engine directories a session's cgroup sat directly under jupyter-bai/:
    empty ones go at the next sweep; one that still has tasks (rmdir refuses) stays."""
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    top = tmp_path / "lab" / "jupyter-bai"
    empty, busy = top / "0006d846-acbd-4193-9dc2-7ac094edde26", top / "9b2e1f4c-31f2-4be9-a507-4169ff3b2f8e"
    empty.mkdir(parents=True)
    busy.mkdir()
    (busy / "cgroup.procs").write_text("4242\n")  # a non-empty directory: rmdir fails like EBUSY
    other_engine = top / "0015ae882e3d4f1d"
    other_engine.mkdir()
    limits = CgroupLimits(root=tmp_path, proc_cgroup="0::/lab\n", engine_id="e1")
    limits.sweep(live=set())
    assert not empty.exists()
    assert busy.is_dir()
    assert other_engine.is_dir(), "another engine's directory is never touched"


def test_a_closed_engine_removes_its_own_directory(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    limits = CgroupLimits(root=tmp_path, proc_cgroup="0::/lab\n", engine_id="e1")
    base = tmp_path / "lab" / "jupyter-bai" / "e1"
    (base / "cgroup.subtree_control").unlink()  # the fake tree's files; a real cgroup has none to remove
    limits.close()
    assert not base.exists()
    # A session started later by an engine of the same state dir still gets its cgroup.
    again = CgroupLimits(root=tmp_path, proc_cgroup="0::/lab\n", engine_id="e1")
    again.bases["unified"].joinpath("cgroup.subtree_control").unlink()
    again.bases["unified"].rmdir()
    assert again.create("s1", Decimal("0.5"), 0) == [str(base / "s1" / "cgroup.procs")]
