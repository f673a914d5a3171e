"""Background work yields the CPU to the event loop: its threads run nicer than the caller."""
from __future__ import annotations

import os
import threading

from jupyter_bai.engine.workers import BACKGROUND_NICE, background


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_background_threads_are_nicer_than_the_event_loop_thread() -> None:
    mine = _own_nice()
    theirs = background().submit(_own_nice).result(timeout=30)
    assert theirs == min(19, mine + BACKGROUND_NICE)
    assert _own_nice() == mine, "only the worker thread changed, not the caller (nor the process)"
