"""The endpoint proxy against a direct connection (and nginx, when installed), in one run.

Starts a small aiohttp upstream (its own process), the real proxy process (``python -m
jupyter_bai.proxy``) over a store that routes one public service to it, and, if ``nginx`` is on
PATH, nginx as a plain reverse proxy. For concurrency 1, 16 and 64 it prints requests/s and
p50/p99 latency of each path and the ratios; then the mean inter-event gap of an SSE stream
(50 events, 20 ms apart) direct and through the proxy.

    .venv/bin/python bench/proxy.py [--seconds 5]
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

UPSTREAM = r'''
import asyncio, sys
from aiohttp import web
async def hello(request):
    return web.Response(text="ok")
async def sse(request):
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for i in range(50):
        await resp.write(f"data: {i}\n\n".encode())
        await asyncio.sleep(0.02)
    return resp
app = web.Application()
app.router.add_get("/", hello)
app.router.add_get("/sse", sse)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''

NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
    uwsgi_temp_path {dir}; scgi_temp_path {dir};
    upstream up {{ server 127.0.0.1:{up}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location /services/bench/ {{
            proxy_pass http://up/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def load(url: str, concurrency: int, seconds: float) -> tuple[float, float, float]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async def worker() -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                async with http.get(url) as r:
                    await r.read()
                latencies.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return len(latencies) / elapsed, p(0.5), p(0.99)


async def sse_gap(url: str) -> float:
    stamps: list[float] = []
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            async for _chunk in r.content.iter_any():
                stamps.append(time.perf_counter())
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return statistics.mean(gaps) * 1000


def make_store(dir: Path, up: int) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from jupyter_bai.engine.store import Store

    db = dir / "engine.db"
    store = Store(db)
    store.execute("INSERT INTO services(id, name, spec, replicas, public, status, created_at) "
                  "VALUES ('s', 'bench', '{}', 1, 1, 'HEALTHY', 0)")
    store.execute("INSERT INTO service_routes(id, service_id, port, status, created_at) "
                  "VALUES ('r', 's', ?, 'HEALTHY', 0)", (up,))
    store.close()
    return db


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        up, px = free_port(), free_port()
        procs.append(subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up)]))
        db = make_store(d, up)
        procs.append(subprocess.Popen([sys.executable, "-m", "jupyter_bai.proxy", "--db", str(db),
                                       "--port", str(px)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        paths = {"direct": f"http://127.0.0.1:{up}",
                 "proxy": f"http://127.0.0.1:{px}/services/bench"}
        nginx = shutil.which("nginx")
        if nginx:
            ng = free_port()
            (d / "nginx.conf").write_text(NGINX_CONF.format(dir=d, up=up, port=ng))
            procs.append(subprocess.Popen([nginx, "-c", str(d / "nginx.conf"), "-g",
                                           "daemon off;"], stderr=subprocess.DEVNULL))
            paths["nginx"] = f"http://127.0.0.1:{ng}/services/bench"
        try:
            for base in paths.values():
                await wait_up(base + "/")
            print(f"{'conc':>4} " + " ".join(f"{k:>28}" for k in paths) + "   proxy/direct p50+")
            print(f"{'':>4} " + " ".join(f"{'req/s   p50ms   p99ms':>28}" for _ in paths))
            for conc in (1, 16, 64):
                results = {k: await load(v + "/", conc, args.seconds) for k, v in paths.items()}
                cells = " ".join(f"{r[0]:>10.0f} {r[1]:>7.2f} {r[2]:>7.2f}  " for r in results.values())
                added = results["proxy"][1] - results["direct"][1]
                extra = ""
                if "nginx" in results:
                    extra = f"  throughput proxy/nginx {results['proxy'][0] / results['nginx'][0]:.2f}"
                print(f"{conc:>4} {cells}  +{added:.2f} ms{extra}")
            direct, proxied = await sse_gap(paths["direct"] + "/sse"), await sse_gap(paths["proxy"] + "/sse")
            print(f"SSE mean inter-event gap: direct {direct:.2f} ms, proxy {proxied:.2f} ms "
                  f"(+{proxied - direct:.2f} ms)")
            if not nginx:
                print("nginx is not installed (apt-get install nginx): its column is left out")
        finally:
            for p in procs:
                p.terminate()
                p.wait()


if __name__ == "__main__":
    asyncio.run(main())
