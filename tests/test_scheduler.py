"""Fit checks and GPU packing (pure functions)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from jupyter_bai.engine.scheduler import Allocation, allocate, check_can_ever_fit
from jupyter_bai.spec.errors import InsufficientResources
from jupyter_bai.spec.resources import ResourceSlots

CAP = ResourceSlots({"cpu": 8, "mem": 32 << 30, "cuda.device": 2, "cuda.shares": 2})
GPUS = [0, 1]


def req(**kw: str) -> ResourceSlots:
    return ResourceSlots.parse({k.replace("_", "."): v for k, v in kw.items()} | {"cpu": "1", "mem": "1g"})


def test_request_larger_than_node_fails_with_the_slot_named() -> None:
    with pytest.raises(InsufficientResources, match="cpu=16"):
        check_can_ever_fit(ResourceSlots.parse(["cpu=16"]), CAP)
    with pytest.raises(InsufficientResources, match="mem=64g"):
        check_can_ever_fit(ResourceSlots.parse(["mem=64g"]), CAP)
    check_can_ever_fit(ResourceSlots.parse(["cpu=8", "mem=32g"]), CAP)


def test_fractional_shares_pack_best_fit() -> None:
    a = allocate(req(cuda_shares="0.5"), CAP, GPUS, [])
    assert a is not None and a.gpu_shares == {0: Decimal("0.5")}
    b = allocate(req(cuda_shares="0.3"), CAP, GPUS, [a])
    assert b is not None and b.gpu_shares == {0: Decimal("0.3")}  # fullest device that fits
    c = allocate(req(cuda_shares="0.5"), CAP, GPUS, [a, b])
    assert c is not None and c.gpu_shares == {1: Decimal("0.5")}
    d = allocate(req(cuda_shares="0.2"), CAP, GPUS, [a, b, c])
    assert d is not None and d.gpu_shares == {0: Decimal("0.2")}


def test_whole_devices_need_idle_devices() -> None:
    half = allocate(req(cuda_shares="0.5"), CAP, GPUS, [])
    assert half is not None
    one = allocate(req(cuda_device="1"), CAP, GPUS, [half])
    assert one is not None and one.whole_devices == [1]
    assert allocate(req(cuda_device="1"), CAP, GPUS, [half, one]) is None
    assert allocate(req(cuda_shares="0.6"), CAP, GPUS, [half, one]) is None
    assert allocate(req(cuda_shares="0.5"), CAP, GPUS, [half, one]) is not None


def test_shares_above_one_span_devices() -> None:
    a = allocate(req(cuda_shares="1.5"), CAP, GPUS, [])
    assert a is not None and sum(a.gpu_shares.values()) == Decimal("1.5")
    assert len(a.gpu_shares) == 2


def test_cpu_and_memory_wait_when_full() -> None:
    big = ResourceSlots.parse(["cpu=6", "mem=1g"])
    a = allocate(big, CAP, GPUS, [])
    assert a is not None
    assert allocate(big, CAP, GPUS, [a]) is None
    assert allocate(ResourceSlots.parse(["cpu=2", "mem=1g"]), CAP, GPUS, [a]) is not None


def test_allocation_round_trips_through_json() -> None:
    a = allocate(req(cuda_shares="0.25"), CAP, GPUS, [])
    assert a is not None
    b = Allocation.from_json(a.to_json())
    assert (b.gpu_shares, b.whole_devices, b.slots) == (a.gpu_shares, a.whole_devices, a.slots)
