"""What the one-implementation client costs: the sync ``Client`` (AsyncClient on a private loop
thread, answers validated into models) against a bare ``httpx.Client`` GET of the same route,
and ``AsyncClient`` against a bare ``httpx.AsyncClient``, in the same run, on one engine.

Prints medians (ms) and ratios. Usage: .venv/bin/python bench/client_overhead.py [--runs 300]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from engine_proc import start_engine  # noqa: E402

from jupyter_bai.client import AsyncClient, Client  # noqa: E402


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        eng = start_engine(Path(tmp))
        try:
            client = Client(eng.url, eng.token)
            client.create_session("local", name="bench-oh", wait=True, timeout=60)
            headers = {"Authorization": f"token {eng.token}"}
            url = f"{eng.url}/bai/api/v1/sessions/bench-oh"
            with httpx.Client(headers=headers) as raw:
                rows = [
                    ("sync: httpx.Client GET (baseline)", timed(lambda: raw.get(url).json(), args.runs)),
                    ("sync: Client.get_session", timed(lambda: client.get_session("bench-oh"), args.runs)),
                ]

            async def async_rows() -> list[tuple[str, list[float]]]:
                async with httpx.AsyncClient(headers=headers) as araw, AsyncClient(eng.url, eng.token) as ac:
                    async def t(coro_fn: Callable[[], object]) -> list[float]:
                        out = []
                        for _ in range(args.runs):
                            t0 = time.perf_counter()
                            await coro_fn()  # type: ignore[misc]
                            out.append((time.perf_counter() - t0) * 1000)
                        return out
                    base = await t(lambda: araw.get(url))
                    mine = await t(lambda: ac.get_session("bench-oh"))
                    return [("async: httpx.AsyncClient GET (baseline)", base), ("async: AsyncClient.get_session", mine)]

            rows += asyncio.run(async_rows())
            client.destroy_session("bench-oh", forced=True)
            client.close()
        finally:
            eng.stop()
    print(f"{'call':42} {'median ms':>10} {'p90 ms':>8}")
    med = {}
    for name, xs in rows:
        med[name] = statistics.median(xs)
        print(f"{name:42} {med[name]:10.2f} {statistics.quantiles(xs, n=10)[-1]:8.2f}")
    print(f"sync ratio  Client / httpx:       {med[rows[1][0]] / med[rows[0][0]]:.2f}x")
    print(f"async ratio AsyncClient / httpx:  {med[rows[3][0]] / med[rows[2][0]]:.2f}x")


if __name__ == "__main__":
    main()
