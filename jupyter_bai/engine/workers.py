"""Threads for the engine's heavy background work, at a lower CPU priority than the event loop.

Listing a folder of 50,000 files, encoding a long answer or building a resync snapshot is
throughput work; the event loop's next wake-up is latency work. On a busy machine with few
cores the scheduler otherwise treats them alike, and the loop waits in the run queue behind
its own helpers. These threads raise their own nice value (per thread on Linux; unprivileged),
so the loop thread wins a contended CPU. Never used for what starts processes: a child would
inherit the lower priority (session starts have their own pool in ``sessions.py``).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

#: How much nicer than the event loop the background threads run (CFS weight about 1/3 at 5).
BACKGROUND_NICE = 5
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def lower_priority() -> None:
    """Make the calling thread nicer by ``BACKGROUND_NICE`` (an executor's initializer)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE))
    except (AttributeError, OSError):  # not Linux, or not allowed: run at the loop's priority
        pass


def background() -> ThreadPoolExecutor:
    """The shared pool (made on first use; its threads are daemons of the interpreter)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                min(8, (os.cpu_count() or 1) + 2), thread_name_prefix="bai-background",
                initializer=lower_priority,
            )
        return _pool
