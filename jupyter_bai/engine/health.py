"""Route health: one probe, and the rule that turns probe results into a route status.

Backend.AI's semantics: a route gets ``initial_delay`` seconds to load, during which a refused
connection means "still starting"; after that, ``max_retries`` failed probes in a row take it
out of the rotation (UNHEALTHY) and one good probe brings it back (HEALTHY). A 503 while
provisioning is "still loading" too (a deployed notebook listens while its cells run).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from ..spec.model_definition import HealthCheck
from ..spec.service import RouteStatus

__all__ = ["Probe", "probe", "next_status"]


@dataclass(frozen=True)
class Probe:
    ok: bool
    refused: bool  # nothing listens yet (a server that is still loading)
    detail: str
    loading: bool = False  # it answered 503: listening, still loading (a notebook's cells)


async def probe(session: aiohttp.ClientSession, port: int, check: HealthCheck | None) -> Probe:
    """GET the health path (or, without a health check, just connect to the port)."""
    if check is None:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        except (OSError, asyncio.TimeoutError) as exc:
            return Probe(False, isinstance(exc, ConnectionRefusedError), f"port {port}: {exc}")
        writer.close()
        return Probe(True, False, "port open")
    url = f"http://127.0.0.1:{port}{check.path}"
    try:
        timeout = aiohttp.ClientTimeout(total=check.max_wait_time)
        async with session.get(url, timeout=timeout, allow_redirects=False) as resp:
            await resp.read()
            if resp.status == check.expected_status_code:
                return Probe(True, False, f"{check.path}: {resp.status}")
            return Probe(False, False, f"{check.path} answered {resp.status}, "
                                       f"expected {check.expected_status_code}",
                         loading=resp.status == 503)
    except aiohttp.ClientConnectorError as exc:
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        return Probe(False, refused, f"{check.path}: connection refused" if refused else str(exc))
    except asyncio.TimeoutError:
        return Probe(False, False, f"{check.path}: no answer within {check.max_wait_time:g}s")
    except aiohttp.ClientError as exc:
        return Probe(False, False, f"{check.path}: {exc}")


def next_status(
    current: RouteStatus, result: Probe, failures: int, age: float, check: HealthCheck | None
) -> tuple[RouteStatus, int]:
    """The route's status and consecutive-failure count after one probe."""
    if result.ok:
        return RouteStatus.HEALTHY, 0
    grace = check.initial_delay if check else 60.0
    retries = check.max_retries if check else 10
    if current is RouteStatus.PROVISIONING and (result.refused or result.loading) and age < grace:
        return current, 0  # still loading: not a failure
    failures += 1
    if failures >= retries:
        return RouteStatus.UNHEALTHY, failures
    return current, failures
