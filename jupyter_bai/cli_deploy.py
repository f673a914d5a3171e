"""``jupyter bai deploy``, ``serve-local`` and ``service rollback|versions`` (also ``%bai ...``).

Paths are made absolute here (the engine takes them under the Jupyter root_dir), so a path
means what it means in the shell or the kernel that typed it.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from jupyter_bai import render
from jupyter_bai.cli import BaiContext, cli, json_option, pass_bai, service
from jupyter_bai.spec.errors import InvalidRequest

_LOCAL: dict[str, Any] = {}  # serve-local servers of this process, by notebook path


@cli.command("deploy")
@click.argument("notebook")
@click.argument("more_files", nargs=-1, metavar="")
@click.option("-t", "--name", "name", help="Service name (its endpoint path /services/NAME/).")
@click.option("--replicas", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Number of routes.")
@click.option("--public", is_flag=True, help="Serve without a token.")
@click.option("-r", "--resources", "resources", multiple=True, metavar="KEY=VAL",
              help="Resources per route, e.g. -r cpu=1 -r mem=2g (repeatable).")
@click.option("--files", "files", multiple=True, metavar="F...",
              help="Files or folders packed next to the notebook, at /models/<name>.")
@click.option("--check", is_flag=True, help="Only show the hash, endpoints and problems.")
@click.option("--wait", is_flag=True,
              help="Return once every route runs the new version; exit 1 if it never gets ready.")
@json_option
@pass_bai
def deploy(bai: BaiContext, notebook: str, more_files: tuple[str, ...], name: str | None,
           replicas: int, public: bool, resources: tuple[str, ...], files: tuple[str, ...],
           check: bool, wait: bool) -> None:
    """Deploy NOTEBOOK's @endpoint functions as a replicated model service.

    The saved notebook's code cells run once per route (cells tagged bai-skip, magics and
    shell escapes left out), then its endpoints answer at the printed URL. Deploying to a
    NAME in use makes a new version and rolls routes over one at a time.
    """
    if more_files and not files:
        raise click.UsageError(f"unexpected argument '{more_files[0]}' (list files after --files)")
    path = os.path.abspath(notebook)
    checked = bai.client.check_deploy(path)
    if check:
        bai.emit(checked, render.deploy_check)
        bai.exit_code = 1 if checked["problems"] else 0
        return
    if not name:
        raise click.UsageError("missing option '-t' / '--name'")
    if checked["problems"]:
        raise InvalidRequest(f"cannot deploy {notebook}: " + "; ".join(checked["problems"]))
    listed = (*files, *more_files)
    missing = next((f for f in listed if not os.path.exists(f)), None)
    if missing is not None:
        raise InvalidRequest(f"listed file '{missing}' does not exist")
    if not bai.json:
        for warning in checked.get("warnings") or []:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"deploying {notebook} ({checked['hash']})", file=sys.stderr)
    info = bai.client.deploy(
        path, name=name, replicas=replicas, public=public, resources=list(resources),
        files=[os.path.abspath(f) for f in listed])
    if not bai.json:
        bai.emit(info, render.deploy_result)
    if wait:
        bai.client.wait_deploy(name, info["version"])
    if bai.json:
        bai.emit(info, render.deploy_result)


@cli.command("serve-local")
@click.argument("notebook")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port (default: a free one).")
@click.option("--stop", is_flag=True, help="Stop the one this kernel serves for NOTEBOOK.")
@json_option
@pass_bai
def serve_local(bai: BaiContext, notebook: str, port: int, stop: bool) -> None:
    """Try NOTEBOOK's service in this process on 127.0.0.1 before deploying it.

    In a notebook it serves in the background (--stop ends it); in a terminal until Ctrl-C.
    """
    from jupyter_bai.serving.local import serve_local as start
    from jupyter_bai.serving.runner import StartupFailed

    path = os.path.abspath(notebook)
    old = _LOCAL.pop(path, None)
    if old is not None:
        old.stop()
    if stop:
        bai.emit({"stopped": old is not None},
                 lambda d: render.message(f"{notebook}: {'stopped' if old else 'was not served'}", d))
        return
    try:
        server = start(path, port=port)
    except (StartupFailed, ValueError) as exc:
        raise InvalidRequest(str(exc)) from None
    eps = ", ".join(f"{e.method} {server.url}{e.path}" for e in server.captured.endpoints)
    bai.emit({"url": server.url, "hash": server.captured.hash},
             lambda d: render.message(f"serving {notebook} at {d['url']} ({eps})", d))
    if bai.notebook:
        _LOCAL[path] = server
        return
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@service.command("rollback")
@click.argument("name")
@click.option("--wait", is_flag=True, help="Return once every route runs that version.")
@json_option
@pass_bai
def service_rollback(bai: BaiContext, name: str, wait: bool) -> None:
    """Serve the deployed version before the current one again (routes roll over)."""
    bai.emit(bai.client.rollback_service(name, wait=wait), render.deploy_result)


@service.command("versions")
@click.argument("name")
@json_option
@pass_bai
def service_versions(bai: BaiContext, name: str) -> None:
    """A deployed service's numbered versions (* marks the one served)."""
    bai.emit(bai.client.service_versions(name), render.versions_table)
