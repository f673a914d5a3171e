"""Notebooks for the deploy tests and the runner's unit tests (written with nbformat)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat

TRAINING = """\
# training and plots: not part of the service
raise RuntimeError("the bai-skip cell must not run in the service")
"""

LOAD = """\
%matplotlib inline
import json, os
def load_model(path):
    with open(path) as fh:
        return json.load(fh)
model = load_model(os.environ.get("MODEL_FILE", "/models/model.json"))
VERSION = {version!r}
"""

ENDPOINTS = """\
from jupyter_bai.serving import endpoint, on_start

started = []

@on_start
def warm_up():
    started.append(True)

@endpoint("/predict")
def predict(text: str, top_k: int = 3) -> dict:
    \"\"\"The top labels for a text.\"\"\"
    ranked = sorted(model["labels"], key=lambda label: -text.count(label))
    return {{"labels": ranked[:top_k], "version": VERSION, "warm": bool(started)}}

@endpoint("/version", method="GET")
def version() -> dict:
    return {{"version": VERSION}}

@endpoint("/bad", method="GET")
def bad() -> object:
    return object()
"""


def notebook(cells: list[tuple[str, list[str]]], metadata: dict[str, Any] | None = None) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.metadata.update(metadata or {})
    nb.cells = [nbformat.v4.new_markdown_cell("# classifier")] + [
        nbformat.v4.new_code_cell(src, metadata={"tags": tags} if tags else {})
        for src, tags in cells]
    return nb


def classifier(path: Path, version: str = "v1", extra: str = "",
               metadata: dict[str, Any] | None = None) -> Path:
    """The issue's example: a skipped training cell, a load cell, the endpoints."""
    cells = [(TRAINING, ["bai-skip"]), (LOAD.format(version=version), []),
             (ENDPOINTS.format(), [])]
    if extra:
        cells.append((extra, []))
    nbformat.write(notebook(cells, metadata), str(path))
    return path
