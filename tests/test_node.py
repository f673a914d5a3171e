"""Node discovery on this machine (no GPU expected here) and with fake GPUs."""
from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from jupyter_bai.engine import node as node_mod
from jupyter_bai.engine.node import GPUDevice, NodeInfo, discover, gpu_usage, make_fake_gpus
from jupyter_bai.spec.errors import InvalidRequest


def test_discover_on_this_machine() -> None:
    info = discover()
    assert info.hostname
    assert 1 <= info.cpu_count <= (os.cpu_count() or 1)
    meminfo_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    assert 64 * 2**20 <= info.mem_total <= meminfo_kb * 1024
    if info.gpus:  # a GPU machine: NVML must have answered
        assert info.nvml_error is None and all(g.source == "nvml" for g in info.gpus)
        assert all(g.memory > 0 and g.uuid for g in info.gpus)
    else:
        assert info.nvml_error is None or (info.nvml_error and "\n" not in info.nvml_error)
        assert gpu_usage() == []
    cap = info.capacity()
    assert cap["cpu"] == info.cpu_count and cap["mem"] == info.mem_total
    assert cap["cuda.device"] == cap["cuda.shares"] == len(info.gpus)
    json.dumps(info.to_json())


def test_nvml_missing_gives_reason_not_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    pynvml = node_mod._import_pynvml()

    def fail() -> None:
        raise pynvml.NVMLError_LibraryNotFound()

    monkeypatch.setattr(pynvml, "nvmlInit", fail)
    info = discover()
    assert info.gpus == [] and info.nvml_error and info.nvml_error.startswith("NVML: ")
    assert gpu_usage() == []


def test_nvml_shutdown_always_called(monkeypatch: pytest.MonkeyPatch) -> None:
    pynvml = node_mod._import_pynvml()
    calls: list[str] = []

    def count() -> int:
        raise pynvml.NVMLError_Unknown()

    monkeypatch.setattr(pynvml, "nvmlInit", lambda: calls.append("init"))
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: calls.append("shutdown"))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", count)
    info = discover()
    assert info.gpus == [] and info.nvml_error and calls == ["init", "shutdown"]


def test_fake_gpus_replace_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_mod, "_nvml_gpus", lambda: pytest.fail("NVML consulted"))
    info = discover(
        fake_gpus=[{"name": "FakeGPU H100", "memory": "80g"}, {"memory": 2**30}, {"name": "A100"}],
        cpu_override=8,
        mem_override=32 * 2**30,
    )
    assert info.nvml_error is None
    assert [g.name for g in info.gpus] == ["FakeGPU H100", "Fake GPU", "Fake A100"]
    assert [g.memory for g in info.gpus] == [80 * 2**30, 2**30, 16 * 2**30]
    assert [g.index for g in info.gpus] == [0, 1, 2]
    assert all(g.source == "fake" for g in info.gpus)
    assert len({g.uuid for g in info.gpus}) == 3
    cap = info.capacity()
    assert cap.to_json() == {
        "cpu": "8", "mem": str(32 * 2**30), "cuda.device": "3", "cuda.shares": "3"
    }
    data = info.to_json()
    assert data["gpus"][0] == {
        "index": 0, "name": "FakeGPU H100", "memory": 80 * 2**30, "uuid": "GPU-fake-0000",
        "source": "fake",
    }
    assert data["capacity"]["cuda.shares"] == "3"
    assert discover(fake_gpus=[]).gpus == []


@pytest.mark.parametrize(
    "bad, match",
    [
        ([{"memory": "lots"}], r"fake_gpus\[0\]: invalid size 'lots'"),
        ([{"memory": 0}], "positive"),
        ([{"memory": "1g", "cores": 5}], "unknown keys: cores"),
        (["H100"], r"fake_gpus\[0\] must be an object"),
    ],
)
def test_fake_gpu_errors(bad: list, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        make_fake_gpus(bad)


def test_fake_gpu_utilization_file_stays_internal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    util = tmp_path / "util"
    (gpu,) = make_fake_gpus([{"memory": "1g", "utilization_file": str(util)}])
    assert gpu.fake_utilization_file == str(util)
    info = discover(fake_gpus=[{"memory": "1g", "utilization_file": str(util)}])
    assert "fake_utilization_file" not in info.to_json()["gpus"][0]  # not shown as hardware


def test_capacity_without_gpus() -> None:
    info = NodeInfo(
        hostname="h", cpu_count=4, mem_total=2**30, gpus=[], mps_available=False, nvml_error="x"
    )
    cap = info.capacity()
    assert cap["cpu"] == 4 and cap["mem"] == 2**30
    assert cap["cuda.device"] == Decimal(0) and cap["cuda.shares"] == Decimal(0)
    gpu = GPUDevice(index=0, name="Fake GPU", memory=1, uuid="u", source="fake")
    assert NodeInfo("h", 1, 1, [gpu, gpu]).capacity()["cuda.shares"] == 2


# ------------------------------------------------------------ cgroup limits on a fake tree


def write(p: Path, text: str) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_cgroup_v2_limit_lower_than_meminfo(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    root = tmp_path / "sys"
    meminfo = tmp_path / "meminfo"
    write(meminfo, "MemTotal:       16384000 kB\nMemFree: 1 kB\n")
    write(proc, "0::/user.slice/job\n")
    write(root / "cgroup.controllers", "cpu memory")
    write(root / "user.slice" / "job" / "memory.max", "max\n")
    write(root / "user.slice" / "memory.max", str(2 * 2**30))
    write(root / "user.slice" / "job" / "cpu.max", "150000 100000\n")
    assert node_mod.cgroup_memory_limit(proc, root) == 2 * 2**30
    assert node_mod.mem_total(meminfo, proc, root) == 2 * 2**30
    assert node_mod.cgroup_cpu_limit(proc, root) == 1.5
    assert node_mod.cpu_count(proc, root) == 1
    # A limit above the machine's memory changes nothing.
    write(root / "user.slice" / "memory.max", str(2**40))
    assert node_mod.mem_total(meminfo, proc, root) == 16384000 * 1024


def test_cgroup_v1_and_unlimited(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    root = tmp_path / "sys"
    meminfo = tmp_path / "meminfo"
    write(meminfo, "MemTotal: 1000 kB\n")
    write(proc, "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n")
    write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712")  # "unlimited"
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1")
    write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000")
    assert node_mod.cgroup_memory_limit(proc, root) is None
    assert node_mod.cgroup_cpu_limit(proc, root) is None
    assert node_mod.mem_total(meminfo, proc, root) == 1000 * 1024
    # The process's own cgroup is missing from this mount: the mount root still counts.
    write(root / "memory" / "memory.limit_in_bytes", str(512 * 1024))
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "200000")
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000")
    assert node_mod.mem_total(meminfo, proc, root) == 512 * 1024
    assert node_mod.cgroup_cpu_limit(proc, root) == 2.0


def test_missing_proc_files(tmp_path: Path) -> None:
    assert node_mod.cgroup_memory_limit(tmp_path / "nope", tmp_path) is None
    assert node_mod.mem_total(tmp_path / "nope", tmp_path / "nope", tmp_path) > 0
