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
