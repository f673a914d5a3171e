"""Kernelspecs whose kernels run in sessions: make, list and remove them.

A kernelspec is local to the Jupyter installation (``jupyter kernelspec`` places), not an
engine object, so this talks to jupyter_client's :class:`KernelSpecManager` only. Requests
are checked with the same rules as a session request, so a typo fails here, not at launch.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from ..spec.errors import InvalidRequest, NotFound
from ..spec.mounts import validate_mounts
from ..spec.resources import ResourceSlots
from ..spec.session import SessionSpec
from .provisioner import kernelspec_json

PROVISIONER = "bai-session-provisioner"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
LOGOS = [Path(__file__).with_name(f"logo-{s}x{s}.png") for s in (32, 64)]
SHIPPED = Path(__file__).resolve().parents[2] / "kernels"


def _ksm() -> KernelSpecManager:
    return KernelSpecManager()


def _bai_config(spec_json: dict[str, Any]) -> dict[str, Any] | None:
    prov = (spec_json.get("metadata") or {}).get("kernel_provisioner") or {}
    if prov.get("provisioner_name") != PROVISIONER:
        return None
    return dict(prov.get("config") or {})


def install(
    name: str,
    resources: list[str] | None = None,
    mounts: list[str] | None = None,
    image: str = "local",
    display_name: str | None = None,
    *,
    user: bool = False,
    sys_prefix: bool = False,
) -> dict[str, Any]:
    """Write a session kernelspec (with the logo); returns what ``ls`` shows for it."""
    if not NAME_RE.match(name):
        raise InvalidRequest(
            f"invalid kernelspec name '{name}': use 1-64 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    if user and sys_prefix:
        raise InvalidRequest("choose one of --user and --sys-prefix")
    resources = [r.strip() for r in resources or [] if r.strip()]
    mounts = list(mounts or [])
    ResourceSlots.parse(resources).check_request()
    validate_mounts(mounts)
    SessionSpec.from_json({"image": image})
    title = display_name or f"Python 3 ({name}: {' '.join(resources) or 'defaults'})"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / name
        src.mkdir()
        (src / "kernel.json").write_text(
            json.dumps(kernelspec_json(title, resources, image, mounts), indent=2) + "\n"
        )
        for logo in LOGOS:
            shutil.copy(logo, src / logo.name)
        prefix = sys.prefix if sys_prefix else None
        try:
            path = _ksm().install_kernel_spec(str(src), name, user=user, replace=True, prefix=prefix)
        except PermissionError as exc:
            raise InvalidRequest(
                f"cannot write the kernelspec ({exc.strerror}: {exc.filename}); "
                "use --user or --sys-prefix"
            ) from None
    return describe(name, path)


def describe(name: str, path: str | None = None) -> dict[str, Any]:
    """One kernelspec as ``ls`` shows it; NotFound when it is not a session kernelspec."""
    try:
        spec_dir = path or _ksm().get_kernel_spec(name).resource_dir
    except NoSuchKernel:
        raise NotFound(f"kernelspec '{name}' not found") from None
    data = json.loads((Path(spec_dir) / "kernel.json").read_text())
    config = _bai_config(data)
    if config is None:
        raise NotFound(f"kernelspec '{name}' is not a bai session kernelspec")
    return {
        "name": name,
        "display_name": data.get("display_name", name),
        "image": config.get("image", "local"),
        "resources": list(config.get("resources") or []),
        "mounts": list(config.get("mounts") or []),
        "path": str(spec_dir),
    }


def list_specs() -> list[dict[str, Any]]:
    """Every session kernelspec Jupyter can see, by name."""
    out = []
    for name, spec_dir in sorted(_ksm().find_kernel_specs().items()):
        try:
            out.append(describe(name, spec_dir))
        except (NotFound, OSError, ValueError):
            continue
    return out


def remove(name: str) -> str:
    """Remove a session kernelspec (never another kind); returns the removed path."""
    path = describe(name)["path"]
    _ksm().remove_kernel_spec(name)
    return path


def install_shipped(gpus: int, *, user: bool = False, sys_prefix: bool = False) -> list[str]:
    """``make lab``: the shipped kernelspecs, the GPU ones only on a node with ``gpus`` > 0."""
    installed = []
    for spec_dir in sorted(SHIPPED.glob("*/kernel.json")):
        data = json.loads(spec_dir.read_text())
        config = _bai_config(data) or {}
        needs_gpu = any(r.startswith("cuda.") for r in config.get("resources") or [])
        name = spec_dir.parent.name
        if needs_gpu and gpus == 0:
            try:
                remove(name)  # an earlier install on this prefix would never start here
            except NotFound:
                pass
            continue
        install(name, config.get("resources"), config.get("mounts"), config.get("image", "local"),
                data.get("display_name"), user=user, sys_prefix=sys_prefix)
        installed.append(name)
    return installed
