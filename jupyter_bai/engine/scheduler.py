"""Fit checks and GPU packing. Pure functions over the node and current allocations.

Whole GPUs (``cuda.device``) take devices nobody uses; fractional shares
(``cuda.shares``) are packed best-fit onto the fullest device that still has
room, so small jobs leave whole devices free for big ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable

from ..spec.errors import InsufficientResources
from ..spec.resources import ResourceSlots, format_size

ONE = Decimal(1)


@dataclass
class Allocation:
    """What one session holds: host resources plus GPU shares per device index."""

    slots: ResourceSlots
    gpu_shares: dict[int, Decimal] = field(default_factory=dict)
    whole_devices: list[int] = field(default_factory=list)

    @property
    def devices(self) -> list[int]:
        return sorted(set(self.whole_devices) | set(self.gpu_shares))

    def to_json(self) -> dict[str, Any]:
        return {
            "slots": self.slots.to_json(),
            "cuda": {
                "devices": self.devices,
                "whole": sorted(self.whole_devices),
                "shares": {str(k): str(v) for k, v in sorted(self.gpu_shares.items())},
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Allocation":
        cuda = data.get("cuda", {})
        return cls(
            slots=ResourceSlots.from_json(data["slots"]),
            gpu_shares={int(k): Decimal(v) for k, v in cuda.get("shares", {}).items()},
            whole_devices=[int(i) for i in cuda.get("whole", [])],
        )


def _describe(slot: str, value: Decimal) -> str:
    return f"{slot}={format_size(int(value))}" if slot == "mem" else f"{slot}={value.normalize()}"


def check_can_ever_fit(request: ResourceSlots, capacity: ResourceSlots) -> None:
    """Fail at once for a request no amount of waiting can satisfy."""
    too_big = [s for s in request if request[s] > capacity[s]]
    if too_big:
        wanted = ", ".join(_describe(s, request[s]) for s in too_big)
        has = ", ".join(_describe(s, capacity[s]) for s in too_big)
        raise InsufficientResources(
            f"the request ({wanted}) is larger than this whole node ({has})"
        )


def gpu_usage(allocations: Iterable[Allocation]) -> dict[int, Decimal]:
    """Shares in use per device (a whole device counts as 1)."""
    used: dict[int, Decimal] = {}
    for alloc in allocations:
        for idx in alloc.whole_devices:
            used[idx] = used.get(idx, Decimal(0)) + ONE
        for idx, share in alloc.gpu_shares.items():
            used[idx] = used.get(idx, Decimal(0)) + share
    return used


def allocate(
    request: ResourceSlots,
    capacity: ResourceSlots,
    device_indices: list[int],
    current: list[Allocation],
) -> Allocation | None:
    """Return an allocation for ``request`` or None when it must wait."""
    used = ResourceSlots({})
    for alloc in current:
        used = used + alloc.slots
    if not (used + request).fits_in(capacity):
        return None
    usage = gpu_usage(current)
    free = {i: ONE - usage.get(i, Decimal(0)) for i in device_indices}

    whole_wanted = int(request["cuda.device"])
    if whole_wanted:
        idle = [i for i in device_indices if free[i] == ONE]
        if len(idle) < whole_wanted:
            return None
        return Allocation(slots=request, whole_devices=idle[:whole_wanted])

    shares = request["cuda.shares"]
    if not shares:
        return Allocation(slots=request)
    placed: dict[int, Decimal] = {}
    whole_part = int(shares // ONE)
    remainder = shares - whole_part
    idle = [i for i in device_indices if free[i] == ONE]
    if whole_part:
        if len(idle) < whole_part:
            return None
        for i in idle[:whole_part]:
            placed[i] = ONE
    if remainder:
        candidates = [i for i in device_indices if i not in placed and free[i] >= remainder]
        if not candidates:
            return None
        best = min(candidates, key=lambda i: (free[i], i))  # fullest device that still fits
        placed[best] = remainder
    return Allocation(slots=request, gpu_shares=placed)
