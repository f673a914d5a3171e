"""``Client``: the synchronous face of :class:`~jupyter_bai.client.aio.AsyncClient`.

There is one implementation of every operation, the async one. ``Client`` runs it on a private
event-loop thread (shared by all sync clients of the process) and waits in the caller's thread,
so it works where the caller's thread already runs a loop (a Jupyter kernel). Callbacks
(``on_output``, ``on_result``, ``on_delta``, ``progress``) are run in the caller's thread as
the messages arrive, so output streams live into the right notebook cell; streaming methods
(``follow_logs``, ``events``, ``iter_run``, ``ask_stream``) are ordinary generators.
Ctrl-C cancels the call (``run_code``: the first one interrupts the remote code, the second
stops waiting).
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import httpx

from jupyter_bai.client.aio import AsyncClient
from jupyter_bai.client.connection import EngineConnection
from jupyter_bai.client.driver import Driver
from jupyter_bai.client.operations import DEFAULT_TIMEOUT
from jupyter_bai.spec.models import RunDone

T = TypeVar("T")
_DONE = object()


class _LoopThread:
    """One event loop on a daemon thread per process (re-made after a fork)."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _pid = 0

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._pid != os.getpid() or not cls._thread or not cls._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="bai-client-loop", daemon=True)
                thread.start()
                cls._loop, cls._thread, cls._pid = loop, thread, os.getpid()
            return cls._loop

    @classmethod
    def is_current(cls) -> bool:
        return cls._thread is threading.current_thread()


def _wait(
    fut: Any, calls: queue.SimpleQueue[Any], on_interrupt: Callable[[], bool] | None = None
) -> Any:
    """Run relayed callbacks here until ``fut`` is done; Ctrl-C (or a failing callback) cancels it.

    ``on_interrupt`` may absorb a Ctrl-C (return True) to keep waiting.
    """
    fut.add_done_callback(lambda _f: calls.put(_DONE))
    try:
        while True:
            try:
                item = calls.get(timeout=0.5)
            except queue.Empty:
                continue
            except KeyboardInterrupt:
                if on_interrupt is not None and on_interrupt():
                    on_interrupt = None
                    continue
                raise
            if item is _DONE:
                break
            fn, args = item
            fn(*args)
    except BaseException:
        fut.cancel()
        raise
    return fut.result()


class Client:
    """Synchronous client of a jupyter-bai engine (``find_engine()`` when no URL is given).

    Same methods, arguments and typed answers as :class:`AsyncClient`, not awaitable. Every
    method raises :class:`~jupyter_bai.spec.errors.BaiError` with a one-line message on failure.
    ``driver`` plugs in another backend: a :class:`~jupyter_bai.client.driver.Driver`, or an
    async factory of one (run on the client's loop, for drivers that start things there).
    """

    def __init__(
        self,
        url: str | EngineConnection | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        driver: Driver | Callable[[], Awaitable[Driver]] | None = None,
    ) -> None:
        self._loop = _LoopThread.get()
        if driver is not None and not isinstance(driver, Driver):
            factory = driver
            driver = self._submit(_awaited(factory))
        self._async = AsyncClient(url, token, timeout=timeout, transport=transport, driver=driver)

    @property
    def connection(self) -> EngineConnection | None:
        """The engine's URL and token (None for a driver without one)."""
        return self._async.connection

    @property
    def driver(self) -> Driver:
        return self._async.driver

    def __repr__(self) -> str:
        return f"Client({self.driver.where!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the backend's connections."""
        self._call(self._async.aclose)

    # -- running the async client

    def _submit(self, coro: Coroutine[Any, Any, T]) -> T:
        if _LoopThread.is_current():
            coro.close()
            raise RuntimeError("a sync Client cannot be used from its own event loop; use AsyncClient")
        return _wait(asyncio.run_coroutine_threadsafe(coro, self._loop), queue.SimpleQueue())

    def _relay(self, kwargs: dict[str, Any], calls: queue.SimpleQueue[Any]) -> dict[str, Any]:
        """Callbacks run in the caller's thread: the loop thread only queues their arguments."""
        out = dict(kwargs)
        for key, value in kwargs.items():
            if callable(value):
                out[key] = functools.partial(lambda fn, *a: calls.put((fn, a)), value)
        return out

    def _call(self, method: Callable[..., Coroutine[Any, Any, T]], *args: Any,
              _on_interrupt: Callable[[], bool] | None = None, **kwargs: Any) -> T:
        if _LoopThread.is_current():
            raise RuntimeError("a sync Client cannot be used from its own event loop; use AsyncClient")
        calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        fut = asyncio.run_coroutine_threadsafe(method(*args, **self._relay(kwargs, calls)), self._loop)
        return _wait(fut, calls, _on_interrupt)

    def _iterate(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
        calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        agen = method(*args, **self._relay(kwargs, calls))

        async def step() -> Any:
            try:
                return await agen.__anext__()
            except StopAsyncIteration:
                return _DONE

        try:
            while True:
                item = _wait(asyncio.run_coroutine_threadsafe(step(), self._loop), calls)
                if item is _DONE:
                    return
                yield item
        finally:
            closing = asyncio.run_coroutine_threadsafe(agen.aclose(), self._loop)
            if not _LoopThread.is_current():
                try:
                    closing.result(timeout=30)
                except BaseException:  # noqa: BLE001 - the stream is being abandoned anyway
                    pass

    def run_code(
        self,
        name: str,
        code: str,
        *,
        on_output: Callable[[str, str], None] | None = None,
        on_result: Callable[[str], None] | None = None,
        interrupt_on_ctrl_c: bool = True,
    ) -> RunDone:
        """Run Python code in the session's persistent interpreter; return the ``done`` message.

        Output streams to ``on_output`` as it is printed; the last expression's repr goes to
        ``on_result`` and into the answer as ``result``.  Ctrl-C while waiting interrupts the
        remote code (the answer is then its ``KeyboardInterrupt``); a second Ctrl-C stops waiting.
        """

        def interrupt() -> bool:
            if not interrupt_on_ctrl_c:
                return False
            asyncio.run_coroutine_threadsafe(self._async.interrupt(name), self._loop)
            return True

        return self._call(self._async.run_code, name, code, on_output=on_output,
                          on_result=on_result, interrupt_on_ctrl_c=interrupt_on_ctrl_c,
                          _on_interrupt=interrupt)


async def _awaited(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


def _sync_method(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        def gen(self: Client, *args: Any, **kwargs: Any) -> Iterator[Any]:
            return self._iterate(getattr(self._async, name), *args, **kwargs)
        return gen

    @functools.wraps(fn)
    def call(self: Client, *args: Any, **kwargs: Any) -> Any:
        return self._call(getattr(self._async, name), *args, **kwargs)
    return call


# Every public coroutine and async generator of AsyncClient, derived (not rewritten) here.
for _name, _fn in vars(AsyncClient).items():
    if _name.startswith("_") or _name in vars(Client) or _name in ("aclose",):
        continue
    if inspect.iscoroutinefunction(_fn) or inspect.isasyncgenfunction(_fn):
        setattr(Client, _name, _sync_method(_name, _fn))
del _name, _fn
