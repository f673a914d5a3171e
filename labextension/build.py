"""Build the prebuilt JupyterLab extension into ``jupyter_bai/labextension/``, only when needed.

One build path for ``make`` and for the package build (``setup.py``'s ``build_py``): ``npm ci``
when ``package-lock.json`` changed, then ``npm run build:prod`` when any source changed. Changes
are detected by content digests (not mtimes, which a fresh clone scrambles). A missing Node or a
failing npm stops the build with the reason; it never falls back to a stale or empty extension.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "jupyter_bai" / "labextension"
NAME = "jupyter-bai"
SOURCES = ("package.json", "package-lock.json", "tsconfig.json", "src", "style", "schema")
STAMP = HERE / ".build-stamp"
MODULES_STAMP = HERE / "node_modules" / ".bai-lock-digest"


def _files() -> list[Path]:
    out: list[Path] = []
    for name in SOURCES:
        path = HERE / name
        out.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return out


def digest(files: list[Path] | None = None) -> str:
    h = hashlib.sha256()
    for path in files if files is not None else _files():
        h.update(str(path.relative_to(HERE)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def up_to_date() -> bool:
    return (OUT / "package.json").is_file() and STAMP.is_file() and STAMP.read_text() == digest()


def _run(args: list[str]) -> None:
    # The builder is a Python console script (jupyter-builder): find the one beside this Python.
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    print(f"[labextension] {' '.join(args)}", flush=True)
    result = subprocess.run(args, cwd=HERE, env=env)
    if result.returncode != 0:
        raise SystemExit(f"[labextension] '{' '.join(args)}' failed with exit code {result.returncode}")


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(
            "[labextension] building the JupyterLab extension needs Node.js 20 and npm "
            "(Debian: apt-get install nodejs npm); none found on PATH"
        )
    return npm


def ensure_node_modules() -> None:
    """``npm ci`` unless node_modules already matches ``package-lock.json``."""
    lock_digest = digest([HERE / "package-lock.json"])
    if not (MODULES_STAMP.is_file() and MODULES_STAMP.read_text() == lock_digest):
        _run([_npm(), "ci", "--no-audit", "--no-fund"])
        MODULES_STAMP.write_text(lock_digest)


def build(force: bool = False) -> bool:
    """Build if the sources changed (or ``force``); returns whether it built."""
    if not force and up_to_date():
        return False
    ensure_node_modules()
    _run([_npm(), "run", "build:prod"])
    if not (OUT / "package.json").is_file():
        raise SystemExit(f"[labextension] the build finished but wrote no {OUT / 'package.json'}")
    STAMP.write_text(digest())
    return True


def data_files(prefix: str = f"share/jupyter/labextensions/{NAME}") -> list[tuple[str, list[str]]]:
    """``data_files`` entries that install the built extension where JupyterLab looks."""
    root = HERE.parent
    entries: dict[str, list[str]] = {}
    for path in sorted(p for p in OUT.rglob("*") if p.is_file()):
        rel = path.parent.relative_to(OUT)
        target = prefix if str(rel) == "." else f"{prefix}/{rel.as_posix()}"
        entries.setdefault(target, []).append(path.relative_to(root).as_posix())
    return list(entries.items())


if __name__ == "__main__":
    ensure_node_modules()  # `make test` also runs the unit tests from node_modules
    built = build(force="--force" in sys.argv)
    print(f"[labextension] {'built' if built else 'up to date'}: {OUT}")
