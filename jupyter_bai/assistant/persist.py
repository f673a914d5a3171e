"""Signed joblib files: the index is saved with joblib, and loaded only if this engine made it.

joblib (pickle) runs code while it loads, so a file is never unpickled unless its HMAC-SHA256
signature verifies first. The key lives beside the index (``index.key``, mode 0600) and is made
on first save; a file signed with another key, truncated, edited or not made by jupyter-bai at all
is refused with :class:`IndexRefused` and is never passed to ``joblib.load``.
"""
from __future__ import annotations

import hashlib
import hmac
import io
import os
import secrets
from pathlib import Path
from typing import Any

import joblib

MAGIC = b"JUPYTER-BAI-INDEX/1\n"
KEY_FILE = "index.key"


class IndexRefused(Exception):
    """The file is not an index this engine made (or it is damaged); it was not unpickled."""


def _key(directory: Path, create: bool) -> bytes | None:
    path = directory / KEY_FILE
    if not path.exists():
        if not create:
            return None
        directory.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    key = path.read_bytes()
    return key if len(key) >= 32 else None


def save(path: Path, obj: Any) -> None:
    """Write ``obj`` as MAGIC + hex signature + joblib payload, atomically."""
    key = _key(path.parent, create=True)
    assert key is not None
    buf = io.BytesIO()
    joblib.dump(obj, buf, compress=3)
    payload = buf.getvalue()
    sig = hmac.new(key, payload, hashlib.sha256).hexdigest().encode()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + sig + b"\n" + payload)
    os.replace(tmp, path)


def load(path: Path) -> Any:
    """Verify the signature, then unpickle; :class:`IndexRefused` says why a file is refused."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IndexRefused(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data.startswith(MAGIC):
        raise IndexRefused(f"{path} is not a jupyter-bai index file; refusing to load it")
    head, sep, payload = data[len(MAGIC):].partition(b"\n")
    key = _key(path.parent, create=False)
    if not sep or key is None:
        raise IndexRefused(f"{path} cannot be verified (damaged file or missing {KEY_FILE}); refusing to load it")
    expected = hmac.new(key, payload, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(head, expected):
        raise IndexRefused(
            f"{path}: signature does not match (corrupt, or made by another engine); refusing to load it"
        )
    try:
        return joblib.load(io.BytesIO(payload))
    except Exception as exc:  # signed by us but unreadable (e.g. an incompatible version)
        raise IndexRefused(f"{path}: cannot read the index ({type(exc).__name__}: {exc})") from None
