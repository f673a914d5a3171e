"""Scale-down drain: when a route that left the rotation may be stopped.

The endpoint proxy writes its in-flight request count per route port to ``proxy-stats.json``
about once a second, with the time it last re-read its routing table (``loaded_at``). A route
retired at ``since`` is drained once a stats file shows a table read after ``since`` (so the
proxy no longer picks it) and nothing in flight on its port; or when no proxy is running (a
stale or missing file: nothing can be in flight). The caller bounds the wait by a timeout.
"""
from __future__ import annotations

from typing import Any

STALE = 5.0
"""Seconds after which stats mean the proxy is gone (it writes them every second)."""


def drained(stats: dict[str, Any], port: int, since: float, now: float) -> bool:
    """True when no request through the proxy can still be using the route on ``port``."""
    if not stats or now - float(stats.get("at", 0)) > STALE:
        return True
    if float(stats.get("loaded_at", 0)) <= since:
        return False  # the proxy may not have seen the route leave yet
    return not int((stats.get("route_inflight") or {}).get(str(port), 0))
