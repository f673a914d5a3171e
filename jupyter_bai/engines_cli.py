"""``jupyter bai engine add|ls|use|rm`` (and ``%bai engine ...``): which backend to talk to.

Secret keys never travel in argv (``ps`` shows it to every user): they come from
``$BACKEND_SECRET_KEY``, else stdin when it is not a terminal, else a hidden prompt.
"""
from __future__ import annotations

import getpass
import os
import sys
from typing import Any

import click

from jupyter_bai import render
from jupyter_bai.client import engines
from jupyter_bai.kernels.cli import pass_bai


def _read_secret(notebook: bool) -> str:
    secret = os.environ.get("BACKEND_SECRET_KEY", "")
    if secret:
        return secret
    if notebook:
        return getpass.getpass("Backend.AI secret key: ").strip()
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    return str(click.prompt("Backend.AI secret key", hide_input=True)).strip()


def _check(engine: engines.Engine) -> None:
    """One signed request, so a wrong key or URL fails here and nothing is stored."""
    from jupyter_bai.client.client import Client

    with Client(driver=engines.make_driver(engine)) as client:
        client.resources()


@click.group("engine")
def engine_group() -> None:
    """Engines: this machine ('local') and Backend.AI clusters; pick the one to talk to."""


@engine_group.command("add")
@click.argument("name")
@click.option("--backendai", "url", metavar="URL", help="The manager's endpoint (default: $BACKEND_ENDPOINT).")
@click.option("--access-key", metavar="AK", help="Keypair access key (default: $BACKEND_ACCESS_KEY).")
@click.option("--secret-key", hidden=True, help="Refused: argv is visible to every user (ps).")
@click.option("--vfolder-host", default="", help="Storage host for new folders (default: the cluster's).")
@click.option("--group", default="", help="Project (group) for sessions and folders.")
@click.option("--replace", is_flag=True, help="Overwrite an engine of the same name.")
@click.option("--no-check", is_flag=True, help="Store without trying the keypair.")
@click.option("--json", "json_output", is_flag=True, expose_value=False,
              callback=lambda ctx, _p, v: setattr(ctx.find_root().obj, "json", True) if v else None)
@pass_bai
def engine_add(bai: Any, name: str, url: str | None, access_key: str | None, secret_key: str | None,
               vfolder_host: str, group: str, replace: bool, no_check: bool) -> None:
    """Add a Backend.AI cluster as engine NAME (the secret key is read from $BACKEND_SECRET_KEY,
    stdin or a prompt, never from the command line)."""
    if secret_key is not None:
        raise click.UsageError("--secret-key would show the key to every user of this machine "
                               "(ps, /proc); set BACKEND_SECRET_KEY or type it at the prompt")
    url = url or os.environ.get("BACKEND_ENDPOINT", "")
    access_key = access_key or os.environ.get("BACKEND_ACCESS_KEY", "")
    if not url:
        raise click.UsageError("give the manager's endpoint: --backendai URL (or set BACKEND_ENDPOINT)")
    if not access_key:
        raise click.UsageError("give the keypair's access key: --access-key AK (or set BACKEND_ACCESS_KEY)")
    secret = _read_secret(bai.notebook)
    if not secret:
        raise click.UsageError("no secret key given (set BACKEND_SECRET_KEY, pipe it on stdin, or type it)")
    candidate = engines.Engine(name=name, kind="backendai", url=url.rstrip("/"), access_key=access_key,
                               secret_key=secret, vfolder_host=vfolder_host, group=group)
    if not no_check:
        _check(candidate)
    added = engines.add_engine(name, url, access_key, secret, vfolder_host=vfolder_host,
                               group=group, replace=replace)
    bai.emit(added.public(active=engines.active_name() == name), lambda d: render.message(
        f"engine {d['name']} added ({d['url']}); `engine use {d['name']}` to talk to it", d))


@engine_group.command("ls")
@click.option("--json", "json_output", is_flag=True, expose_value=False,
              callback=lambda ctx, _p, v: setattr(ctx.find_root().obj, "json", True) if v else None)
@pass_bai
def engine_ls(bai: Any) -> None:
    """List engines; the active one is marked (secret keys are never shown)."""
    active = engines.active_name(bai.engine)
    rows = [e.public(active=e.name == active) for e in engines.all_engines().values()]

    def view(items: list[dict[str, Any]]) -> render.Rendered:
        return render._table(
            ["", "name", "kind", "url", "access key", "from"],
            [["*" if e["active"] else "", e["name"], e["kind"], e["url"] or "-",
              e.get("access_key") or "-", e["source"]] for e in items], items)

    bai.emit(rows, view)


@engine_group.command("use")
@click.argument("name")
@click.option("--json", "json_output", is_flag=True, expose_value=False,
              callback=lambda ctx, _p, v: setattr(ctx.find_root().obj, "json", True) if v else None)
@pass_bai
def engine_use(bai: Any, name: str) -> None:
    """Talk to engine NAME from now on ('local' goes back). In a notebook: this kernel only."""
    engine = engines.use_engine(name, persist=not bai.notebook)
    scope = "this kernel" if bai.notebook else "jupyter bai and new kernels"
    bai.emit(engine.public(active=True), lambda d: render.message(
        f"engine {d['name']} is active for {scope}" + (f" ({d['url']})" if d["url"] else ""), d))


@engine_group.command("rm")
@click.argument("name")
@click.option("--json", "json_output", is_flag=True, expose_value=False,
              callback=lambda ctx, _p, v: setattr(ctx.find_root().obj, "json", True) if v else None)
@pass_bai
def engine_rm(bai: Any, name: str) -> None:
    """Forget engine NAME (its stored keys with it)."""
    engines.remove_engine(name)
    bai.emit({"removed": name}, lambda d: render.message(f"engine {name} removed", d))
