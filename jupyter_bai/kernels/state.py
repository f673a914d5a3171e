"""Reattach records: one small JSON file per running session kernel, in the engine's state
directory (mode 600: it holds the kernel's connection key). A server that dies without
shutting its kernels down finds them here when it starts again."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SUBDIR = "kernels"


def _dir(state_dir: Path) -> Path:
    return Path(state_dir) / SUBDIR


def write(state_dir: Path, record: dict[str, Any]) -> None:
    directory = _dir(state_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{record['kernel_id']}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)


def remove(state_dir: Path, kernel_id: str) -> None:
    (_dir(state_dir) / f"{kernel_id}.json").unlink(missing_ok=True)


def read_all(state_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(_dir(state_dir).glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
    return out
