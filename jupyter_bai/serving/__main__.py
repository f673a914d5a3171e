"""``python -m jupyter_bai.serving NOTEBOOK --port N``: run the notebook once, then serve it.

The server listens at once (``/live`` answers; ``/health`` is 503) while the cells and the
``@on_start`` hooks run; ``/health`` turns 200 only when they all succeeded. If one raises,
the process prints the cell number and the exception and exits 1, so the route is marked
FAILED_TO_START with those lines.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import uvicorn

from .app import State, add_endpoints, build_app
from .capture import capture_file
from .runner import StartupFailed, run_cells, run_hooks


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m jupyter_bai.serving",
                                 description="Serve a notebook's @endpoint functions.")
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--host", default="127.0.0.1")
    return ap.parse_args(argv)


async def _serve(args: argparse.Namespace) -> int:
    nb = args.notebook
    try:
        captured = capture_file(nb)
    except OSError as exc:
        print(f"error: cannot read {nb}: {exc}", file=sys.stderr)
        return 2
    for warning in captured.warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if captured.problems:
        for problem in captured.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    state = State()
    app = build_app(nb.stem, state)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port,
                                           log_level="warning", lifespan="off"))
    # uvicorn re-raises the signal that stopped it once it is done; these handlers take it,
    # so the @on_stop hooks still run and the process ends with 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    serving = asyncio.create_task(server.serve())
    state.detail = "running the notebook's cells"
    try:
        reg = await asyncio.to_thread(run_cells, captured, nb)
        state.detail = "running @on_start hooks"
        await asyncio.to_thread(run_hooks, reg.start_hooks, "on_start")
    except StartupFailed as exc:
        if exc.detail:
            print(exc.detail, file=sys.stderr)
        print(f"start-up failed: {exc}", file=sys.stderr, flush=True)
        server.should_exit = True
        await serving
        return 1
    add_endpoints(app, reg)
    state.ready, state.detail = True, "ready"
    paths = ", ".join(f"{m} {p}" for m, p in reg.endpoints)
    print(f"serving {nb.name} ({captured.hash[:19]}) on {args.host}:{args.port}: {paths}",
          flush=True)
    await serving
    try:
        run_hooks(reg.stop_hooks, "on_stop")
    except StartupFailed as exc:
        print(f"warning: {exc}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_serve(_parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
