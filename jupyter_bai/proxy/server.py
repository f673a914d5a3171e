"""The service endpoint proxy: ``/services/<name>/...`` to a healthy route, in its own process.

Like Backend.AI's AppProxy, it runs apart from the engine and reads its routing table (services,
healthy routes, token hashes) from the engine's store, read-only, so inference traffic neither
waits on the engine nor stops when the engine restarts. Streaming is passed through chunk by
chunk (SSE from ``stream=true``), with no total timeout; a request is retried on another route
only while nothing has been sent to the client.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import os
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

log = logging.getLogger("jupyter_bai.proxy")

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade",
})


@dataclass
class ServiceEntry:
    id: str
    public: bool
    ports: list[int]
    tokens: list[tuple[str, float]]  # (sha-256 hex, expires_at)
    turn: itertools.count = field(default_factory=itertools.count)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def _strip_hop_by_hop(headers: Any, drop: tuple[str, ...] = ()) -> CIMultiDict[str]:
    listed = {h.strip().lower() for v in headers.getall("Connection", []) for h in v.split(",")}
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in headers.items():
        low = key.lower()
        if low in HOP_BY_HOP or low in listed or low in drop:
            continue
        out.add(key, value)
    return out


CHECK_EVERY = 0.005
"""Seconds between two looks at the store's version on the request path."""


class RoutingTable:
    """The services as the store has them; re-read whenever the store changed.

    ``PRAGMA data_version`` changes when another connection (the engine) commits. Requests
    look at it at most every ``CHECK_EVERY`` seconds (under load the pragma was a visible
    share of a request's cost); an answer that would be an error (unknown service, bad token,
    no healthy route) always looks first, so a service, token or route the engine just
    committed is honoured by the very next request.
    """

    def __init__(self, db: Path):
        self.db = db
        self.services: dict[str, ServiceEntry] = {}
        self.loaded_at = 0.0
        self._version = -1
        self._checked = 0.0
        self._conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5,
                                     check_same_thread=False)
        self._conn.row_factory = sqlite3.Row

    def maybe_reload(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < CHECK_EVERY:
            return
        self._checked = now
        try:
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version or time.time() - self.loaded_at > 1.0:
                self.load()
                self._version = version
        except sqlite3.Error as exc:
            log.warning("reading routes: %s", exc)

    def load(self) -> None:
        conn = self._conn
        now = time.time()
        with conn:
            services = conn.execute(
                "SELECT id, name, public FROM services WHERE terminating = 0").fetchall()
            routes = conn.execute(
                "SELECT service_id, port FROM service_routes WHERE status = 'HEALTHY' "
                "ORDER BY created_at").fetchall()
            tokens = conn.execute(
                "SELECT service_id, token_hash, expires_at FROM service_tokens "
                "WHERE expires_at > ?",
                (now,)).fetchall()
        fresh: dict[str, ServiceEntry] = {}
        for s in services:
            old = self.services.get(s["name"])
            fresh[s["name"]] = ServiceEntry(
                s["id"], bool(s["public"]), [r["port"] for r in routes if r["service_id"] == s["id"]],
                [(t["token_hash"], t["expires_at"]) for t in tokens
                 if t["service_id"] == s["id"]],
                old.turn if old else itertools.count())
        self.services = fresh
        self.loaded_at = now


STATS_FILE = "proxy-stats.json"
"""Per-service request counters the proxy writes next to the store once a second, for the
engine's autoscaling (the proxy never writes to the store itself)."""


class Stats:
    """Requests per service, and in-flight requests per service and per route port.

    The per-port count is what lets the engine drain a route on scale-down: it stops the
    route only once a stats file written after the proxy dropped the route from its table
    (``loaded_at``) shows no request still in flight on its port.
    """

    def __init__(self) -> None:
        self.inflight: dict[str, int] = {}
        self.requests: dict[str, int] = {}
        self.ports: dict[int, int] = {}

    def begin(self, name: str) -> None:
        self.inflight[name] = self.inflight.get(name, 0) + 1
        self.requests[name] = self.requests.get(name, 0) + 1

    def end(self, name: str) -> None:
        self.inflight[name] -= 1

    def write(self, path: Path, loaded_at: float) -> None:
        data = {name: {"inflight": self.inflight.get(name, 0), "requests": count}
                for name, count in self.requests.items()}
        routes = {str(port): n for port, n in self.ports.items() if n}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"at": time.time(), "loaded_at": loaded_at, "pid": os.getpid(),
                                   "services": data, "route_inflight": routes}))
        os.replace(tmp, path)


IDLE_EXIT = 30.0
"""Seconds with no service in the store after which the proxy exits (the engine starts it
again when a service is created), so no proxy outlives the services it was for."""


async def housekeeping(db: Path, stats: Stats, table: RoutingTable) -> None:
    idle_since = time.monotonic()
    while True:
        if not db.exists():  # the state directory is gone: nothing to serve
            os._exit(0)
        table.maybe_reload(force=True)  # the stats below describe this table (see Stats)
        if table.services:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > IDLE_EXIT:
            log.info("no services for %gs: exiting", IDLE_EXIT)
            os._exit(0)
        try:
            stats.write(db.parent / STATS_FILE, table.loaded_at)
        except OSError as exc:
            log.warning("writing stats: %s", exc)
        await asyncio.sleep(1.0)


def authorized(entry: ServiceEntry, header: str | None) -> bool:
    """Bearer token check against stored hashes, in constant time per candidate."""
    if entry.public:
        return True
    if not header or not header.lower().startswith("bearer "):
        return False
    presented = hashlib.sha256(header[7:].strip().encode()).hexdigest()
    now = time.time()  # expiry is checked per request, not when the table was read
    ok = False
    for stored, expires_at in entry.tokens:
        ok |= hmac.compare_digest(presented, stored) and expires_at > now
    return ok


class Proxy:
    def __init__(self, table: RoutingTable):
        self.table = table
        self.stats = Stats()
        self.client: aiohttp.ClientSession | None = None

    async def startup(self) -> None:
        # One pooled keep-alive session for every route; no cookie jar (a shared jar would
        # hand one client's cookies to the next) and no default headers added.
        self.client = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            connector=aiohttp.TCPConnector(limit=0, force_close=False, keepalive_timeout=60),
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        )

    async def cleanup(self) -> None:
        if self.client:
            await self.client.close()

    async def health(self, request: web.BaseRequest) -> web.Response:
        return web.json_response({"ok": True, "services": len(self.table.services),
                                  "pid": os.getpid()})

    async def serve(self, request: web.BaseRequest, name: str) -> web.StreamResponse:
        table = self.table
        table.maybe_reload()
        entry = table.services.get(name)
        auth = request.headers.get("Authorization")
        if entry is None or not entry.ports or not authorized(entry, auth):
            table.maybe_reload(force=True)  # an error is answered from the newest table
            entry = table.services.get(name)
        if entry is None:
            return _error(404, "not-found", f"service '{name}' not found")
        if not authorized(entry, auth):
            return _error(401, "unauthorized", f"service '{name}' needs a valid token: "
                          "Authorization: Bearer <token from `service token`>")
        body = None
        if request.body_exists:
            body = await request.read()
            # the table may have changed while the body arrived: choose from the current one
            # (a chosen route is counted in flight before the next await; see Stats)
            table.maybe_reload()
            entry = table.services.get(name)
            if entry is None:
                return _error(404, "not-found", f"service '{name}' not found")
        if not entry.ports:
            return _error(503, "no-healthy-route", f"service '{name}' has no healthy route now")
        self.stats.begin(name)
        try:
            return await self._balance(request, name, entry, body)
        finally:
            self.stats.end(name)

    async def _balance(self, request: web.BaseRequest, name: str, entry: ServiceEntry,
                       body: bytes | None) -> web.StreamResponse:
        headers = _strip_hop_by_hop(request.headers, ("authorization", "host", "content-length"))
        # the raw path after /services/<name> (names need no escaping), query included
        rest = request.raw_path[10 + len(name):]
        if not rest.startswith("/"):
            rest = "/" + rest
        ports = entry.ports
        first = next(entry.turn) % len(ports)
        last_error = ""
        for i in range(len(ports)):
            port = ports[(first + i) % len(ports)]
            if i and port not in self._live_ports(name):
                continue  # left the rotation while an earlier try failed (it may be draining)
            try:
                return await self._forward(request, port, rest, headers, body)
            except _NothingSent as exc:
                last_error = str(exc)
        return _error(502, "upstream-unreachable",
                      f"no route of '{name}' answered: {last_error}")

    def _live_ports(self, name: str) -> list[int]:
        self.table.maybe_reload()
        entry = self.table.services.get(name)
        return entry.ports if entry else []

    async def _forward(self, request: web.BaseRequest, port: int, rest: str,
                       headers: CIMultiDict[str], body: bytes | None) -> web.StreamResponse:
        assert self.client is not None
        inflight = self.stats.ports
        inflight[port] = inflight.get(port, 0) + 1
        try:
            url = URL(f"http://127.0.0.1:{port}{rest}", encoded=True)
            try:
                upstream = await self.client.request(
                    request.method, url, headers=headers, data=body or None,
                    allow_redirects=False)
            except (aiohttp.ClientError, OSError) as exc:
                raise _NothingSent(f"127.0.0.1:{port}: {exc}") from None
            async with upstream:
                out_headers = _strip_hop_by_hop(upstream.headers)
                if upstream.content.is_eof():
                    # the whole body has already arrived (a small answer): one write, no
                    # chunking; a body still arriving is streamed below as it comes
                    return web.Response(status=upstream.status, reason=upstream.reason,
                                        headers=out_headers, body=await upstream.read())
                # The head is held back until the first body byte (for at most HEAD_HOLD): a
                # route that dies between its head and its body has then sent nothing to the
                # client, and the request can still go to another route.
                try:
                    first: bytes | None = await asyncio.wait_for(upstream.content.readany(),
                                                                 HEAD_HOLD)
                except asyncio.TimeoutError:
                    first = None  # a slow stream (a model thinking): the head goes now
                except (aiohttp.ClientError, OSError) as exc:
                    raise _NothingSent(f"127.0.0.1:{port}: {exc}") from None
                if first is not None and upstream.content.is_eof():
                    return web.Response(status=upstream.status, reason=upstream.reason,
                                        headers=out_headers, body=first)
                out = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                         headers=out_headers)
                if upstream.headers.get("Content-Length") is None:
                    out.enable_chunked_encoding()
                await out.prepare(request)
                if first:
                    await out.write(first)
                async for chunk in upstream.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
                return out
        finally:
            inflight[port] -= 1


HEAD_HOLD = 1.0
"""Seconds an answer's head waits for its first body byte (see ``_forward``)."""


class _NothingSent(Exception):
    """The upstream failed before any byte reached the client: another route may try."""


MAX_BODY = 1 << 30
"""Largest request body the endpoint accepts (aiohttp's default is 1 MiB)."""


class Endpoint:
    """The proxy's HTTP server: aiohttp's low-level server with one dispatching handler.

    No application router or middleware chain in front of the proxy: at high concurrency their
    per-request cost was a measurable share of the proxy's CPU (``bench/proxy.py``).
    """

    def __init__(self, db: Path):
        self.db = db
        self.table = RoutingTable(db)
        self.table.load()
        self.proxy = Proxy(self.table)
        self._runner: web.ServerRunner | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        await self.proxy.startup()
        loop = asyncio.get_running_loop()

        def make_request(message: Any, payload: Any, protocol: Any, writer: Any,
                         task: Any) -> web.BaseRequest:
            return web.BaseRequest(message, payload, protocol, writer, task, loop,
                                   client_max_size=MAX_BODY)

        server = web.Server(self.dispatch, request_factory=make_request,
                            handler_cancellation=True, access_log=None)
        self._runner = web.ServerRunner(server)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, reuse_address=True).start()
        self._task = asyncio.create_task(housekeeping(self.db, self.proxy.stats, self.table))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.proxy.cleanup()

    async def dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        raw = request.raw_path
        if raw.startswith("/services/"):
            name = raw[10:].split("/", 1)[0].split("?", 1)[0]
            if name:
                return await self.proxy.serve(request, name)
        if request.path == "/_bai/health":
            return await self.proxy.health(request)
        return _error(404, "not-found", "services are under /services/<name>/")


async def _serve(db: Path, host: str, port: int) -> None:
    endpoint = Endpoint(db)
    await endpoint.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await endpoint.close()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jupyter_bai.proxy")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s proxy %(message)s")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(args.db, args.host, args.port))
