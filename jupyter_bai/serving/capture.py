"""The service's code, read statically from the saved ``.ipynb`` (never from a live kernel).

Code cells run in order; a cell tagged ``bai-skip`` is left out, and so are IPython magics and
shell escapes (``%...``, ``%%...``, ``!...``), which mean nothing outside Jupyter, each with a
warning naming the cell. The endpoints are found from the decorators' source, so a notebook is
checked (no endpoint, two on one path, a syntax error) before anything runs.
"""
from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .decorators import METHODS, check_path

__all__ = ["SKIP_TAG", "Cell", "EndpointRef", "Captured", "capture", "capture_file"]

SKIP_TAG = "bai-skip"


@dataclass(frozen=True)
class Cell:
    number: int  # 1-based position among all the notebook's cells, as the user counts them
    source: str


@dataclass(frozen=True)
class EndpointRef:
    path: str
    method: str
    name: str
    cell: int

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "method": self.method, "name": self.name}


@dataclass
class Captured:
    cells: list[Cell] = field(default_factory=list)
    endpoints: list[EndpointRef] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    hash: str = ""

    @property
    def code(self) -> str:
        return "".join(f"# cell {c.number}\n{c.source}\n" for c in self.cells)


def _strip_magics(source: str, number: int, warnings: list[str]) -> str:
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        warnings.append(f"cell {number}: skipped (cell magic {lines[0].split()[0]})")
        return ""
    kept = []
    for line in lines:
        text = line.lstrip()
        magic_assign = ("= !" in line or "= %" in line) and _is_magic_assign(line)
        if text.startswith(("%", "!")) or magic_assign:
            warnings.append(f"cell {number}: skipped {text.split()[0]!r} (magics and shell "
                            "escapes only work in Jupyter)")
            kept.append("")  # keep line numbers as the user sees them
        else:
            kept.append(line)
    return "\n".join(kept)


def _is_magic_assign(line: str) -> bool:
    """``files = !ls`` and ``t = %time f()``: IPython syntax, not Python."""
    try:
        ast.parse(line.strip())
        return False
    except SyntaxError:
        return True


def _const_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _endpoint_refs(tree: ast.Module, number: int, problems: list[str]) -> list[EndpointRef]:
    refs = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for dec in node.decorator_list:
            if not isinstance(dec, ast.Call):
                continue
            fn = dec.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
            if name != "endpoint":
                continue
            path = _const_str(dec.args[0]) if dec.args else _const_str(
                next((k.value for k in dec.keywords if k.arg == "path"), None))
            method = _const_str(dec.args[1]) if len(dec.args) > 1 else _const_str(
                next((k.value for k in dec.keywords if k.arg == "method"), None)) or "POST"
            if path is None:
                problems.append(f"cell {number}: @endpoint on '{node.name}' needs a literal "
                                "path such as \"/predict\"")
                continue
            try:
                check_path(path)
            except ValueError as exc:
                problems.append(f"cell {number}: {exc}")
                continue
            if method.upper() not in METHODS:
                problems.append(f"cell {number}: invalid method {method!r} for {path}: "
                                "use GET or POST")
                continue
            refs.append(EndpointRef(path, method.upper(), node.name, number))
    return refs


def capture(nb_text: str, name: str = "notebook") -> Captured:
    """The notebook's service code, endpoints, warnings and problems (empty: deployable)."""
    out = Captured()
    try:
        nb = nbformat.reads(nb_text, as_version=4)
    except (nbformat.reader.NotJSONError, json.JSONDecodeError, ValueError,
            AttributeError, KeyError, TypeError) as exc:
        out.problems.append(f"{name} is not a readable notebook: {str(exc).splitlines()[0][:200]}")
        return out
    for number, cell in enumerate(nb.cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        if SKIP_TAG in (cell.get("metadata", {}).get("tags") or []):
            continue
        source = _strip_magics(cell.get("source", ""), number, out.warnings)
        if not source.strip():
            continue
        try:
            tree = ast.parse(source, filename=f"<cell {number}>")
        except SyntaxError as exc:
            out.problems.append(f"cell {number}: syntax error at line {exc.lineno}: {exc.msg}")
            continue
        out.cells.append(Cell(number, source))
        out.endpoints += _endpoint_refs(tree, number, out.problems)
    seen: dict[tuple[str, str], EndpointRef] = {}
    for ref in out.endpoints:
        other = seen.get((ref.method, ref.path))
        if other is not None and other.name != ref.name:
            out.problems.append(
                f"two endpoints on {ref.method} {ref.path}: '{other.name}' (cell {other.cell}) "
                f"and '{ref.name}' (cell {ref.cell})")
        seen[(ref.method, ref.path)] = ref
    if not out.endpoints and not any("@endpoint" in p for p in out.problems):
        out.problems.append("no @endpoint in the notebook: decorate a function with "
                            "@endpoint(\"/path\") from jupyter_bai.serving")
    out.hash = "sha256:" + hashlib.sha256(out.code.encode()).hexdigest()
    return out


def capture_file(path: str | Path) -> Captured:
    p = Path(path)
    return capture(p.read_text(encoding="utf-8", errors="replace"), p.name)


def metadata(nb_text: str) -> dict[str, Any]:
    """The notebook's ``metadata.bai`` (e.g. ``{"health_check": {"initial_delay": 120}}``)."""
    try:
        data = json.loads(nb_text).get("metadata", {}).get("bai", {})
    except (ValueError, AttributeError):
        return {}
    return data if isinstance(data, dict) else {}
