"""Folder listings and usage walks in helper processes, so they never hold the server's GIL.

Listing a folder of 50,000 files means 50,000 ``stat`` calls and encoding ~10 MB of JSON. In
a thread, that work holds the GIL in 5 ms slices and the event loop waits for each of them
(``bench/loop_lag.py`` measured 23 ms p99 lag); in a process of its own it costs the server
only reading the finished bytes from a socket.

The engine resolves and opens the directory itself (beneath its folder, no symlink followed,
:mod:`jupyter_bai.engine.safefs`) and passes the open descriptor over a UNIX socket
(``SCM_RIGHTS``); the walker never resolves a path, so it cannot be led outside the folder.
A walker that dies is replaced on the next call; one request at a time per walker, and up to
``size`` walkers, started on first use.

Protocol, per request: the engine sends one JSON header (``{"op": "list"|"usage",
"prefix": ...}``) with the descriptor attached; the walker answers a 9-byte frame header
(``b"0"`` ok or ``b"1"`` error, then the payload length as 8 bytes big-endian) and the payload:
the listing's JSON, ``[bytes, count]`` for usage, or ``{"errno": n, "message": ...}``.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import weakref
from contextlib import suppress

from jupyter_bai.engine import fsscan

log = logging.getLogger(__name__)

_HEADER = 9
#: ``-P``: the working directory is not put on ``sys.path`` (a ``jupyter_bai/`` there is ignored).
_SAFE_PATH = ["-P"] if sys.version_info >= (3, 11) else []
_MAX_REQUEST = 1 << 16


class WalkerUnavailable(RuntimeError):
    """No walker process could be started or kept alive for this request."""


class _Walker:
    """One walker process and the engine's end of its socket."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, *_SAFE_PATH, "-m", "jupyter_bai.engine.fswalker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        #: True while a request is unanswered: a call cut short leaves the stream mid-frame.
        self.busy = False

    def call(self, op: str, fd: int, prefix: str) -> bytes:
        header = json.dumps({"op": op, "prefix": prefix}).encode()
        self.busy = True
        try:
            socket.send_fds(self.sock, [header], [fd])
            head = self._read(_HEADER)
            body = self._read(int.from_bytes(head[1:], "big"))
        except ConnectionError:
            raise
        except OSError as err:  # e.g. the socket was closed under us by close()
            raise ConnectionError(f"the folder walker's socket failed: {err}") from None
        self.busy = False
        if head[:1] == b"0":
            return body
        err = json.loads(body)
        raise OSError(err["errno"], err["message"])

    def _read(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        while view:
            got = self.sock.recv_into(view)  # releases the GIL while it waits
            if not got:
                raise ConnectionError("the folder walker process ended")
            view = view[got:]
        return bytes(buf)

    def close(self) -> None:
        self.sock.close()  # the walker reads EOF and exits
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class FsWalkers:
    """A small pool of walker processes; thread-safe, blocking (call from executor threads)."""

    def __init__(self, size: int = 2) -> None:
        # Last in, first out: a serial caller reuses the walker that is already running.
        self._slots: queue.LifoQueue[_Walker | None] = queue.LifoQueue()
        for _ in range(size):
            self._slots.put(None)  # a free slot with no process yet
        self._live: set[_Walker] = set()
        self._lock = threading.Lock()
        self._closed = False
        # A manager dropped without close() (tests, scripts) still ends its walkers.
        weakref.finalize(self, _close_all, self._live)

    def listing_json(self, fd: int, prefix: str) -> bytes:
        """:func:`fsscan.scan` of ``fd`` as :func:`fsscan.rows_json` bytes."""
        return self._call("list", fd, prefix)

    def usage(self, fd: int) -> tuple[int, int]:
        """:func:`fsscan.usage` of ``fd``."""
        total, count = json.loads(self._call("usage", fd, ""))
        return int(total), int(count)

    def _call(self, op: str, fd: int, prefix: str) -> bytes:
        if self._closed:
            raise WalkerUnavailable("the engine is stopping")
        walker = self._slots.get()
        try:
            for attempt in (1, 2):  # a walker that died (killed, OOM) is replaced once
                if walker is None:
                    walker = self._start()
                try:
                    return walker.call(op, fd, prefix)
                except ConnectionError as err:
                    self._drop(walker)
                    walker = None
                    if attempt == 2:
                        raise WalkerUnavailable(str(err)) from None
            raise AssertionError("unreachable")
        finally:
            if walker is not None and walker.busy:  # interrupted mid-answer: not reusable
                self._drop(walker)
                walker = None
            self._slots.put(walker)

    def _start(self) -> _Walker:
        with self._lock:
            if self._closed:
                raise WalkerUnavailable("the engine is stopping")
            try:
                walker = _Walker()
            except OSError as err:
                raise WalkerUnavailable(f"cannot start the folder walker: {err}") from None
            self._live.add(walker)
            return walker

    def _drop(self, walker: _Walker) -> None:
        with self._lock:
            self._live.discard(walker)
        with suppress(OSError):
            walker.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            live = set(self._live)
            self._live.clear()
        _close_all(live)


def _close_all(walkers: set[_Walker]) -> None:
    for walker in list(walkers):
        with suppress(OSError):
            walker.close()


# ---------------------------------------------------------------- the walker process


def _serve(sock: socket.socket) -> None:
    while True:
        msg, fds, _flags, _addr = socket.recv_fds(sock, _MAX_REQUEST, 1)
        if not msg:
            return  # the engine closed its end
        try:
            if len(fds) != 1:
                raise OSError(errno.EINVAL, "a request must carry exactly one directory descriptor")
            req = json.loads(msg)
            if req["op"] == "list":
                body = fsscan.rows_json(fsscan.scan(fds[0], req["prefix"])).encode()
            elif req["op"] == "usage":
                body = json.dumps(fsscan.usage(fds[0])).encode()
            else:
                raise OSError(errno.EINVAL, f"unknown walker operation {req['op']!r}")
            status = b"0"
        except OSError as err:
            body = json.dumps({"errno": err.errno or errno.EIO, "message": err.strerror or str(err)}).encode()
            status = b"1"
        finally:
            for fd in fds:
                os.close(fd)
        sock.sendall(status + len(body).to_bytes(8, "big") + body)


def main(argv: list[str]) -> None:
    # Lower priority: on a busy machine the server's own threads come first.
    with suppress(OSError):
        os.nice(5)
    sock = socket.socket(fileno=int(argv[0]))
    with suppress(KeyboardInterrupt, BrokenPipeError, ConnectionError):
        _serve(sock)


if __name__ == "__main__":
    main(sys.argv[1:])
