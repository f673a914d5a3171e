"""Engine-side client of the in-session agent (``runtimes/agent.py``).

One request per connection: send one JSON line, read JSON lines until the
agent closes.  See the agent's module docstring for the protocol.

    async for msg in agent_request(sock, {"op": "run", "code": "1 + 1"}):
        ...   # {"type": "stream", ...}, {"type": "result", ...}, {"type": "done", ...}
"""
from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from typing import AsyncIterator

__all__ = ["AgentUnavailable", "AgentTimeout", "agent_request", "agent_call", "wait_ready",
           "TERMINAL_TYPES", "NO_AGENT_MARKER"]

# Written beside the socket by a session whose image has no Python (no agent will come).
NO_AGENT_MARKER = "no-agent"

# Message types after which the agent closes the connection.
TERMINAL_TYPES = frozenset({"done", "pong", "status"})

# Output chunks are at most 64 KiB of text, but a cell's result repr has no
# bound; the reader buffer only grows as far as a line needs.
_LINE_LIMIT = 512 * 1024 * 1024


class AgentUnavailable(Exception):
    """The agent cannot be reached, or it went away before finishing a request."""


class AgentTimeout(AgentUnavailable):
    """The request did not finish within its timeout."""


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def socket_fd_path(path: str) -> tuple[str, int]:
    """A path to connect to that is the socket at ``path`` itself, never a symlink's target.

    The socket's directory is writable from inside the session: a session could swap
    ``agent.sock`` for a symlink to some other socket on the host and have the engine talk
    to that. The socket is opened ``O_PATH | O_NOFOLLOW`` (checked to be a socket) and
    reached through ``/proc/self/fd``, which also keeps deep paths under the ~107-byte limit.
    The caller closes the returned fd once connected.
    """
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISSOCK(mode):
        os.close(fd)
        raise ConnectionRefusedError(f"{path} is not a socket")
    return f"/proc/self/fd/{fd}", fd


async def agent_request(socket_path: str, request: dict, *,
                        timeout: float | None = None) -> AsyncIterator[dict]:
    """Send ``request`` to the agent at ``socket_path`` and yield its messages.

    ``timeout`` bounds the whole exchange (connecting included); past it,
    :class:`AgentTimeout` is raised.  :class:`AgentUnavailable` is raised when
    the socket is missing or refuses, or when the agent closes the connection
    before its final message (``done``, ``pong`` or ``status``).  Closing the
    generator early (``aclose()``, breaking out of ``async with aclosing``)
    closes the connection, which the agent takes as "client gone" (an exec is
    then killed; a run goes on with its output discarded).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    sock_fd: int | None = None
    try:
        connect_path, sock_fd = socket_fd_path(socket_path)
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(connect_path, limit=_LINE_LIMIT), _remaining(deadline))
    except asyncio.TimeoutError:
        raise AgentTimeout(f"agent at {socket_path}: no connection within {timeout}s") from None
    except FileNotFoundError:
        raise AgentUnavailable(f"agent socket {socket_path} does not exist") from None
    except ConnectionRefusedError as exc:
        why = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "not running?"
        raise AgentUnavailable(f"agent at {socket_path} refused the connection "
                               f"({why})") from None
    except OSError as exc:
        raise AgentUnavailable(f"agent at {socket_path}: cannot connect: "
                               f"{exc.strerror or exc}") from None
    finally:
        if sock_fd is not None:
            os.close(sock_fd)
    try:
        line = json.dumps(request).encode("ascii") + b"\n"
        try:
            writer.write(line)
            await asyncio.wait_for(writer.drain(), _remaining(deadline))
        except asyncio.TimeoutError:
            raise AgentTimeout(f"agent at {socket_path}: request not accepted within "
                               f"{timeout}s") from None
        except OSError as exc:
            raise AgentUnavailable(f"agent at {socket_path}: connection lost while "
                                   f"sending: {exc.strerror or exc}") from None
        finished = False
        while True:
            try:
                raw = await asyncio.wait_for(reader.readline(), _remaining(deadline))
            except asyncio.TimeoutError:
                raise AgentTimeout(f"agent at {socket_path}: {request.get('op')!r} did not "
                                   f"finish within {timeout}s") from None
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ValueError) as exc:
                raise AgentUnavailable(f"agent at {socket_path}: connection lost: "
                                       f"{exc}") from None
            if not raw:
                break
            if not raw.endswith(b"\n"):
                raise AgentUnavailable(f"agent at {socket_path}: connection closed "
                                       "mid-message")
            try:
                msg = json.loads(raw)
            except ValueError as exc:
                raise AgentUnavailable(f"agent at {socket_path}: undecodable message: "
                                       f"{exc}") from None
            if not isinstance(msg, dict):
                raise AgentUnavailable(f"agent at {socket_path}: message is not an object")
            if msg.get("type") in TERMINAL_TYPES:
                finished = True
            yield msg
        if not finished:
            raise AgentUnavailable(f"agent at {socket_path} closed the connection before "
                                   f"finishing {request.get('op')!r}")
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        except Exception:  # includes timeouts: unsent data to a stuck agent
            writer.transport.abort()


async def agent_call(socket_path: str, request: dict, *,
                     timeout: float | None = None) -> list[dict]:
    """All messages of one request, as a list (for short requests)."""
    return [msg async for msg in agent_request(socket_path, request, timeout=timeout)]


async def wait_ready(socket_path: str, timeout: float) -> None:
    """Poll ``ping`` until the agent answers (or the session says it has none, see
    ``NO_AGENT_MARKER``); AgentUnavailable after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    last = "no answer"
    marker = os.path.join(os.path.dirname(socket_path), NO_AGENT_MARKER)
    while True:
        if os.path.exists(marker):
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise AgentUnavailable(f"agent at {socket_path} not ready after {timeout}s: {last}")
        try:
            msgs = await agent_call(socket_path, {"op": "ping"}, timeout=min(left, 2.0))
        except AgentUnavailable as exc:
            last = str(exc)
        else:
            if msgs and msgs[-1].get("type") == "pong":
                return
            last = f"unexpected answer to ping: {msgs!r}"
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.25)
