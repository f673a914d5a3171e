"""``jupyter bai kernelspec ...`` (and ``%bai kernelspec ...``: the same click tree).

It imports nothing from ``jupyter_bai.cli`` (which adds this group to its tree): the
per-invocation ``BaiContext`` is the root context's object.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import click

from .. import render


def _bai() -> Any:
    return click.get_current_context().find_root().obj


def pass_bai(f: Callable[..., Any]) -> Callable[..., Any]:
    """Like ``jupyter_bai.cli.pass_bai``: the command gets the invocation's BaiContext."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return f(_bai(), *args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = f.__name__, f.__doc__
    return wrapper


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().obj.json = True


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "json_output", is_flag=True, expose_value=False,
                        callback=_set_json, help="Print JSON instead of a table.")(f)


def _table(items: list[dict[str, Any]]) -> render.Rendered:
    rows = [[s["name"], s["display_name"], s["image"], " ".join(s["resources"]) or "-",
             " ".join(s["mounts"]) or "-", s["path"]] for s in items]
    return render._table(["name", "display name", "image", "resources", "mounts", "path"],
                         rows, items, empty="no bai session kernelspecs")


def _one(spec: dict[str, Any]) -> render.Rendered:
    return render.message(
        f"kernelspec '{spec['name']}' ({spec['display_name']}; {spec['image']}, "
        f"{' '.join(spec['resources']) or 'default resources'}) installed in {spec['path']}", spec,
    )


@click.group()
def kernelspec() -> None:
    """Kernelspecs whose kernels run inside compute sessions (Jupyter's launcher shows them)."""


@kernelspec.command("install")
@click.argument("name")
@click.option("-r", "--resources", "resources", multiple=True, metavar="KEY=VAL",
              help="Resource slot of the kernel's session, e.g. -r cpu=2 -r mem=4g (repeatable).")
@click.option("-v", "--mount", "mounts", multiple=True, metavar="MOUNT",
              help="VFolder mount, as for 'session create' (repeatable).")
@click.option("--image", default="local", show_default=True, help="Image of the kernel's session.")
@click.option("--display-name", help="Name in the launcher (default: from NAME and resources).")
@click.option("--user", is_flag=True, help="Install for this user only.")
@click.option("--sys-prefix", is_flag=True, help="Install into this Python environment.")
@json_option
@pass_bai
def kernelspec_install(bai: Any, name: str, resources: tuple[str, ...],
                       mounts: tuple[str, ...], image: str, display_name: str | None,
                       user: bool, sys_prefix: bool) -> None:
    """Make (or replace) kernelspec NAME whose kernel runs in a session."""
    from . import specs

    spec = specs.install(name, list(resources), list(mounts), image, display_name,
                         user=user, sys_prefix=sys_prefix)
    bai.emit(spec, _one)


@kernelspec.command("ls")
@json_option
@pass_bai
def kernelspec_ls(bai: Any) -> None:
    """List session kernelspecs with their image, resources and mounts."""
    from . import specs

    bai.emit(specs.list_specs(), _table)


@kernelspec.command("rm")
@click.argument("name")
@json_option
@pass_bai
def kernelspec_rm(bai: Any, name: str) -> None:
    """Remove session kernelspec NAME."""
    from . import specs

    path = specs.remove(name)
    bai.emit({"name": name, "path": path},
             lambda d: render.message(f"kernelspec '{name}' removed ({path})", d))


@kernelspec.command("install-shipped", hidden=True)
@click.option("--user", is_flag=True)
@click.option("--sys-prefix", is_flag=True)
@pass_bai
def kernelspec_install_shipped(bai: Any, user: bool, sys_prefix: bool) -> None:
    """``make lab``: the shipped kernelspecs; GPU ones only where this node has GPUs."""
    from ..engine.node import discover
    from . import specs

    raw = os.environ.get("JUPYTER_BAI_FAKE_GPUS", "").strip()
    fake = None
    if raw:
        fake = ([{"name": "Fake GPU", "memory": "80g"}] * int(raw) if raw.isdigit()
                else list(json.loads(raw)))
    gpus = len(discover(fake_gpus=fake).gpus)
    names = specs.install_shipped(gpus, user=user, sys_prefix=sys_prefix)
    note = "" if gpus else " (no GPU on this node: GPU kernelspecs left out)"
    bai.emit(names, lambda d: render.message(f"installed: {', '.join(d)}{note}", d))
