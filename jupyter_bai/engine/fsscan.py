"""What a folder listing and a usage walk compute, as pure functions of a directory descriptor.

Kept apart from :mod:`jupyter_bai.engine.vfolders` (store, models, errors) so the folder
walker process (:mod:`jupyter_bai.engine.fswalker`) can run them without importing the engine.
Every function takes a descriptor the caller resolved safely beneath its folder and never
follows a symlink.
"""
from __future__ import annotations

import json
import os
import stat as stat_mod
from typing import Literal

from jupyter_bai.engine import safefs

#: Uploads stream into a hidden temp file first; listings and usage skip these names.
TEMP_PREFIX = ".bai-upload-"

#: A :class:`~jupyter_bai.spec.vfolder.FileEntry` as a tuple (for listings), in this field order.
FIELDS = ("name", "path", "type", "size", "mtime", "mode")
Kind = Literal["file", "dir", "symlink"]
Row = tuple[str, str, Kind, int, float, str]


def is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX)


def row(st: os.stat_result, name: str, rel: str) -> Row:
    """The fields of a ``FileEntry`` for ``st`` (a symlink described as itself)."""
    kind: Kind
    if stat_mod.S_ISLNK(st.st_mode):
        kind = "symlink"
    elif stat_mod.S_ISDIR(st.st_mode):
        kind = "dir"
    else:
        kind = "file"
    return (name, rel, kind, 0 if kind == "dir" else st.st_size, st.st_mtime,
            stat_mod.filemode(st.st_mode))


def scan(fd: int, prefix: str) -> list[Row]:
    """The entries of the directory ``fd``, directories first, then by name; ``prefix`` is
    the directory's path in its folder (``""`` or ending in ``/``).

    Flat lists of tuples of atoms (which the garbage collector stops tracking), no dicts or
    models: nothing per entry for the collector to walk again and again.
    """
    keys: list[str] = []
    rows: list[Row] = []
    with os.scandir(fd) as it:
        for e in it:
            if is_temp(e.name):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            # A str sort key (dirs first) keeps CPython's fast string sort.
            keys.append(("0" if stat_mod.S_ISDIR(st.st_mode) else "1") + e.name)
            rows.append(row(st, e.name, prefix + e.name))
    return [rows[i] for i in sorted(range(len(keys)), key=keys.__getitem__)]


def rows_json(rows: list[Row]) -> str:
    """``rows`` as a JSON array of objects, encoded in batches: one ``json.dumps`` per entry
    costs twice the time, one for all of them makes one huge list of dicts."""
    parts = [json.dumps([dict(zip(FIELDS, r)) for r in rows[i : i + 512]])[1:-1]
             for i in range(0, len(rows), 512)]
    return "[" + ", ".join(p for p in parts if p) + "]"


def usage(fd: int) -> tuple[int, int]:
    """(bytes, count) of regular files under ``fd``, hard links once, temp files left out."""
    total = count = 0
    seen: set[tuple[int, int]] = set()
    for st in safefs.walk_stats(fd, is_temp):
        if not stat_mod.S_ISREG(st.st_mode):
            continue
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
        total += st.st_size
        count += 1
    return total, count
