"""Event-loop lag of the engine's Jupyter server: idle, then under load.

The server runs in a child process (``--serve``) with a probe task on its own event loop:
sleep 5 ms, record how late it woke up. Anything that blocks the loop (a folder walk, a
Docker call, a big JSON dump) shows up as lag. The parent drives the load over HTTP from
its own process (so its work never holds the server's GIL), in phases:

    idle             nothing
    sessions x20     20 batch sessions created at once, until all succeeded
    list 50k files   a folder of 50,000 files listed, and its usage read
    upload 200 MB    a 200 MB upload, streamed
    all at once      the three together

Each load repeats in rounds (at least 3) until the phase has run ``--secs`` seconds, so every
phase has enough samples for its p99 to mean something (5 s of 5 ms probes: ~1,000).

and prints p50/p99/max per phase with ratios against idle (target: p99 < 20 ms under load).
Usage:
    .venv/bin/python bench/loop_lag.py [--files 50000] [--upload-mb 200] [--sessions 20]
                                       [--only sessions|list|upload|all ...]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

PROBE_INTERVAL = 0.005
TARGET_P99_MS = 20.0
UNFINISHED = "PENDING,SCHEDULED,PREPARING,RUNNING,TERMINATING"


# ---------------------------------------------------------------- child: server + probe


async def _probe(out: Path) -> None:
    """Append ``monotonic lag`` lines: the overshoot of every 5 ms sleep."""
    loop = asyncio.get_running_loop()
    with out.open("a", buffering=1 << 16) as f:
        n = 0
        while True:
            t0 = loop.time()
            await asyncio.sleep(PROBE_INTERVAL)
            lag = loop.time() - t0 - PROBE_INTERVAL
            f.write(f"{time.monotonic():.6f} {max(lag, 0.0):.6f}\n")
            n += 1
            if n % 50 == 0:
                f.flush()


def serve_with_probe(state_dir: str, port: int, out: str) -> None:
    """``jupyter_bai.api.serve`` with the probe scheduled on the loop the server will run.

    The server itself calls ``gc.freeze()`` once the engine has started (BaiApp), so full
    collections skip the ~200,000 objects made at import; before that, each full collection
    of that heap stopped every thread, the event loop's included, for hundreds of ms.
    """
    from jupyter_bai.api.serve import serve

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.create_task(_probe(Path(out)))
    # the token comes from JUPYTER_BAI_TOKEN (never argv)
    serve(state_dir, port, "127.0.0.1", extra_argv=["--BaiApp.docker=False"])


# ---------------------------------------------------------------- parent: load driver


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def read_samples(path: Path, start: float, end: float) -> list[float]:
    out = []
    for line in path.read_text().splitlines():
        try:
            t, lag = line.split()
        except ValueError:
            continue  # a line cut by the last flush
        if start <= float(t) <= end:
            out.append(float(lag) * 1000)
    return out


class Load:
    """The three kinds of load, each a blocking call that returns when it is done."""

    def __init__(self, http: httpx.Client, state_dir: Path, files: int, upload_mb: int,
                 sessions: int, secs: float) -> None:
        self.http = http
        self.secs = secs
        self.state_dir = state_dir
        self.sessions_n = sessions
        self.upload_mb = upload_mb
        self.files_n = files
        self._round = 0

    def setup(self) -> None:
        r = self.http.post("/vfolders", json={"name": "wide"})
        r.raise_for_status()
        d = self.state_dir / "vfolders" / r.json()["id"]
        for i in range(self.files_n):
            os.close(os.open(d / f"file-{i:06d}.txt", os.O_CREAT | os.O_WRONLY, 0o644))
        self.http.post("/vfolders", json={"name": "up"}).raise_for_status()

    def rounds(self) -> Iterator[int]:
        """At least 3 rounds, and more until the phase has lasted ``secs``."""
        t0, n = time.monotonic(), 0
        while n < 3 or time.monotonic() - t0 < self.secs:
            yield n
            n += 1

    def sessions(self) -> None:
        """Rounds of: start N batch sessions at once, wait until all succeeded."""
        body = {"image": "local", "type": "batch", "command": "true",
                "resources": {"cpu": "0.1", "mem": "64m"}}
        for _ in self.rounds():
            self._round += 1
            names = [f"lag-{self._round}-{i}" for i in range(self.sessions_n)]
            with ThreadPoolExecutor(self.sessions_n) as pool:
                list(pool.map(lambda n: self.http.post("/sessions", json={**body, "name": n})
                              .raise_for_status(), names))
            # Poll the unfinished ones only, as a client waiting on its own sessions would: a
            # full listing every 100 ms grows with every round and would be a load of its own.
            deadline = time.monotonic() + 300
            while True:
                live = self.http.get("/sessions", params={"status": UNFINISHED}).json()["sessions"]
                if not {s["name"] for s in live} & set(names):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("sessions did not finish in 300 s")
                time.sleep(0.1)
            for n in names:
                info = self.http.get(f"/sessions/{n}").json()
                if info["result"] != "success":
                    raise RuntimeError(f"session failed: {info}")

    def listing(self) -> None:
        for _ in self.rounds():
            r = self.http.get("/vfolders/wide/files")
            r.raise_for_status()
            assert len(r.content) > self.files_n * 50
            self.http.get("/vfolders/wide").raise_for_status()

    def upload(self) -> None:
        block = b"u" * (1 << 20)

        def body() -> Iterator[bytes]:
            for _ in range(self.upload_mb):
                yield block

        for _ in self.rounds():
            r = self.http.put("/vfolders/up/files", params={"path": "big.bin"}, content=body(),
                              headers={"Content-Length": str(self.upload_mb << 20)})
            r.raise_for_status()
            assert r.json()["size"] == self.upload_mb << 20

    def everything(self) -> None:
        with ThreadPoolExecutor(3) as pool:
            for f in [pool.submit(self.sessions), pool.submit(self.listing),
                      pool.submit(self.upload)]:
                f.result()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--upload-mb", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle baseline")
    parser.add_argument("--secs", type=float, default=5.0,
                        help="each load phase repeats its rounds for at least this long")
    parser.add_argument("--only", choices=("sessions", "list", "upload", "all"), action="append",
                        help="run only these load phases (repeatable; idle always runs)")
    parser.add_argument("--serve", nargs=3, metavar=("STATE", "PORT", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        state, port, out = args.serve
        serve_with_probe(state, int(port), out)
        return

    from engine_proc import free_port

    base = Path(tempfile.mkdtemp(prefix="bai-looplag-"))
    samples, state, port = base / "lag.txt", base / "state", free_port()
    token = "bench-" + os.urandom(6).hex()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(base / "runtime"), "JUPYTER_BAI_TOKEN": token}
    log = (base / "server.log").open("ab")
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(state), str(port), str(samples)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=f"{url}/bai/api/v1", timeout=httpx.Timeout(600.0),
                        headers={"Authorization": f"token {token}"})
    deadline = time.monotonic() + 60
    while True:
        try:
            if http.get("/resources").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"server did not start: {(base / 'server.log').read_text()[-2000:]}")
        time.sleep(0.2)
    rows: list[tuple[str, list[float], float]] = []
    try:
        load = Load(http, state, args.files, args.upload_mb, args.sessions, args.secs)
        load.setup()
        phases: list[tuple[str, Callable[[], None]]] = [
            ("idle", lambda: time.sleep(args.idle)),
            (f"sessions x{args.sessions}", load.sessions),
            (f"list {args.files // 1000}k files", load.listing),
            (f"upload {args.upload_mb} MB", load.upload),
            ("all at once", load.everything),
        ]
        if args.only:
            keys = ("idle", "sessions", "list", "upload", "all")
            phases = [p for k, p in zip(keys, phases) if k == "idle" or k in args.only]
        time.sleep(3.0)  # let start-up work settle
        for label, run in phases:
            t0 = time.monotonic()
            run()
            t1 = time.monotonic()
            time.sleep(0.2)  # the probe flushes every 50 samples
            rows.append((label, read_samples(samples, t0, t1), t1 - t0))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    idle = rows[0][1]
    i50, i99 = statistics.median(idle), pct(idle, 99)
    print(f"event-loop lag of the engine's server (probe: {PROBE_INTERVAL * 1000:.0f} ms sleeps; "
          f"ms late; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"  {'phase':<18} {'secs':>6} {'samples':>8} {'p50':>7} {'p99':>7} {'max':>8}"
          f" {'p50/idle':>9} {'p99/idle':>9}")
    worst = 0.0
    for label, lags, secs in rows:
        p50, p99, mx = statistics.median(lags), pct(lags, 99), max(lags)
        if label != "idle":
            worst = max(worst, p99)
        print(f"  {label:<18} {secs:6.1f} {len(lags):8d} {p50:7.2f} {p99:7.2f} {mx:8.2f}"
              f" {p50 / max(i50, 1e-3):8.1f}x {p99 / max(i99, 1e-3):8.1f}x")
    verdict = "met" if worst < TARGET_P99_MS else "MISSED"
    print(f"  worst p99 under load {worst:.2f} ms: target p99 < {TARGET_P99_MS:.0f} ms {verdict}")


if __name__ == "__main__":
    main()
