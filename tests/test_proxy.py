"""The endpoint proxy's HTTP behaviour against real upstream servers, over a real store."""
from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from jupyter_bai.engine.services import token_hash
from jupyter_bai.engine.store import Store
from jupyter_bai.proxy.server import Endpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _store(db: Path, services: list[tuple[str, bool, list[int], list[str]]]) -> None:
    store = Store(db)
    for i, (name, public, ports, tokens) in enumerate(services):
        store.execute("INSERT INTO services(id, name, spec, replicas, public, status, created_at) "
                      "VALUES (?, ?, '{}', 1, ?, 'HEALTHY', 0)", (f"s{i}", name, int(public)))
        for j, port in enumerate(ports):
            store.execute("INSERT INTO service_routes(id, service_id, port, status, created_at) "
                          "VALUES (?, ?, ?, 'HEALTHY', ?)", (f"r{i}{j}", f"s{i}", port, j))
        for k, tok in enumerate(tokens):
            ttl = 1.0 if tok.startswith("short") else 3600.0
            store.execute("INSERT INTO service_tokens(id, service_id, token_hash, expires_at, "
                          "created_at) VALUES (?, ?, ?, ?, 0)",
                          (f"t{i}{k}", f"s{i}", token_hash(tok), time.time() + ttl))
    store.close()


def test_proxy_behaviour(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))


async def _scenario(tmp_path: Path) -> None:
    seen: list[dict[str, str]] = []
    cancelled = asyncio.Event()

    async def echo(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"path": request.path_qs})

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"first\n")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return resp

    upstream = web.Application()
    upstream.router.add_get("/slow", slow)
    upstream.router.add_route("*", "/{tail:.*}", echo)
    up_runner = web.AppRunner(upstream, handler_cancellation=True)
    await up_runner.setup()
    up_port, dead_port = _free_port(), _free_port()
    await web.TCPSite(up_runner, "127.0.0.1", up_port).start()

    db = tmp_path / "engine.db"
    _store(db, [("pub", True, [dead_port, up_port], []), ("priv", False, [up_port], ["s3cret", "short-lived"]),
                ("down", True, [], [])])
    endpoint = Endpoint(db)
    px = _free_port()
    await endpoint.start("127.0.0.1", px)
    base = f"http://127.0.0.1:{px}/services"
    try:
        async with aiohttp.ClientSession() as http:
            # a route that refuses connections is skipped: nothing had been sent yet
            for _ in range(4):
                async with http.get(f"{base}/pub/v1/models?x=1") as r:
                    assert r.status == 200 and (await r.json())["path"] == "/v1/models?x=1"
            # hop-by-hop headers (and those named in Connection) and the token are not forwarded
            seen.clear()
            async with http.get(f"{base}/priv/a", headers={
                    "Authorization": "Bearer s3cret", "Connection": "keep-alive, X-Hop",
                    "X-Hop": "1", "Keep-Alive": "timeout=5", "X-Kept": "yes"}) as r:
                assert r.status == 200
            forwarded = {k.lower() for k in seen[0]}
            assert "x-kept" in forwarded
            assert not forwarded & {"authorization", "x-hop", "keep-alive"}
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                async with http.get(f"{base}/priv/a", headers=headers) as r:
                    assert r.status == 401 and (await r.json())["error"] == "unauthorized"
            # a token that expires while the proxy has it cached is refused from then on
            short = {"Authorization": "Bearer short-lived"}
            async with http.get(f"{base}/priv/a", headers=short) as r:
                assert r.status == 200
            await asyncio.sleep(1.2)
            async with http.get(f"{base}/priv/a", headers=short) as r:
                assert r.status == 401
            async with http.get(f"{base}/down/a") as r:
                assert r.status == 503 and (await r.json())["error"] == "no-healthy-route"
            async with http.get(f"{base}/ghost/a") as r:
                assert r.status == 404 and "ghost" in (await r.json())["message"]
        # a client that leaves mid-stream: the upstream request is closed too
        async with aiohttp.ClientSession() as http:
            r = await http.get(f"{base}/pub/slow")
            assert await r.content.readline() == b"first\n"
            r.close()
        await asyncio.wait_for(cancelled.wait(), 10)
    finally:
        await endpoint.close()
        await up_runner.cleanup()


def test_in_flight_requests_per_route_cookies_and_raw_paths(tmp_path: Path) -> None:
    asyncio.run(_inflight_scenario(tmp_path))


async def _inflight_scenario(tmp_path: Path) -> None:
    import json

    release = asyncio.Event()
    cookies_seen: list[str | None] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"first\n")
        await release.wait()
        await resp.write(b"last\n")
        return resp

    async def other(request: web.Request) -> web.Response:
        cookies_seen.append(request.headers.get("Cookie"))
        resp = web.json_response({"raw": request.raw_path})
        resp.set_cookie("session", "alice")
        return resp

    upstream = web.Application()
    upstream.router.add_get("/stream", stream)
    upstream.router.add_route("*", "/{tail:.*}", other)
    up_runner = web.AppRunner(upstream)
    await up_runner.setup()
    up_port = _free_port()
    await web.TCPSite(up_runner, "127.0.0.1", up_port).start()
    db = tmp_path / "engine.db"
    _store(db, [("svc", True, [up_port], [])])
    endpoint = Endpoint(db)
    px = _free_port()
    await endpoint.start("127.0.0.1", px)
    base = f"http://127.0.0.1:{px}/services/svc"
    stats_file = tmp_path / "proxy-stats.json"

    async def inflight_now() -> int:
        """The per-route count from a stats file written after this call began."""
        t0 = time.time()
        while True:
            try:
                data = json.loads(stats_file.read_text())
                if data["at"] > t0:
                    return int(data["route_inflight"].get(str(up_port), 0))
            except (OSError, ValueError, KeyError):
                pass
            await asyncio.sleep(0.1)

    try:
        async with aiohttp.ClientSession() as http:
            r = await http.get(f"{base}/stream")
            assert await r.content.readline() == b"first\n"
            assert await asyncio.wait_for(inflight_now(), 10) == 1  # the stream is counted
            release.set()
            assert await r.content.read() == b"last\n"
            r.close()
            assert await asyncio.wait_for(inflight_now(), 10) == 0
        # cookies an upstream sets are the client's, never replayed to another client
        for _ in range(2):
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/a") as r:
                    assert r.cookies["session"].value == "alice"
        assert cookies_seen == [None, None]
        # the path is forwarded as the client sent it (an encoded slash stays encoded)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{px}/services/svc/a%2Fb?q=1%202") as r:
                assert (await r.json())["raw"] == "/a%2Fb?q=1%202"
            async with http.get(f"http://127.0.0.1:{px}/services/svc?x=1") as r:
                assert (await r.json())["raw"] == "/?x=1"
            big = b"x" * (3 << 20)  # bodies above aiohttp's 1 MiB default pass
            async with http.post(f"{base}/upload", data=big) as r:
                assert r.status == 200 and (await r.json())["raw"] == "/upload"
            async with http.get(f"http://127.0.0.1:{px}/elsewhere") as r:
                assert r.status == 404 and (await r.json())["error"] == "not-found"
    finally:
        await endpoint.close()
        await up_runner.cleanup()


def test_a_leaving_route_is_drained_only_when_the_proxy_says_so() -> None:
    from jupyter_bai.engine.drain import STALE, drained

    now = 1000.0
    fresh = {"at": now - 0.5, "loaded_at": now - 0.5, "route_inflight": {"4000": 2}}
    assert not drained(fresh, 4000, since=now - 2, now=now)  # two requests still on it
    assert drained(fresh, 4001, since=now - 2, now=now)  # nothing on this one
    # stats from before the proxy re-read its table: it may still pick the route
    assert not drained({**fresh, "route_inflight": {}}, 4001, since=now - 0.2, now=now)
    # no proxy running (no stats, or stale ones): nothing can be in flight through it
    assert drained({}, 4000, since=now - 2, now=now)
    assert drained({**fresh, "at": now - STALE - 1}, 4000, since=now - 2, now=now)


def test_a_route_that_dies_between_head_and_body_is_retried_on_another(tmp_path: Path) -> None:
    """Nothing had reached the client (its head is held for the first body byte): retried."""

    async def scenario() -> None:
        async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")  # then it dies
            await writer.drain()
            writer.close()

        async def whole(request: web.Request) -> web.Response:
            return web.Response(text="whole")

        half_server = await asyncio.start_server(half, "127.0.0.1", 0)
        half_port = half_server.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_get("/{tail:.*}", whole)
        runner = web.AppRunner(app)
        await runner.setup()
        up_port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", up_port).start()
        db = tmp_path / "engine.db"
        _store(db, [("svc", True, [half_port, up_port], [])])
        endpoint = Endpoint(db)
        px = _free_port()
        await endpoint.start("127.0.0.1", px)
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(6):  # round robin: every other request meets the dying route first
                    async with http.get(f"http://127.0.0.1:{px}/services/svc/x") as r:
                        assert (r.status, await r.text()) == (200, "whole")
        finally:
            await endpoint.close()
            await runner.cleanup()
            half_server.close()

    asyncio.run(scenario())
