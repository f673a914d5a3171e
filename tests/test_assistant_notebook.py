"""notebooks/assistant.ipynb runs top to bottom under nbclient against a real engine."""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def outputs_text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] in ("execute_result", "display_data", "update_display_data"):
            for mime in ("text/markdown", "text/plain", "text/html"):
                parts.append(str(out["data"].get(mime, "")))
        elif out["output_type"] == "error":
            parts.append(f"ERROR {out['ename']}: {out['evalue']}")
    return "\n".join(parts)


def test_assistant_notebook_answers_with_sources(engine_env: dict[str, str], tmp_path: Path) -> None:
    nb = nbformat.read(ROOT / "notebooks" / "assistant.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    cells = {c.source.splitlines()[-1] if c.source.startswith("%%") else c.source.splitlines()[0]: outputs_text(c)
             for c in nb.cells if c.cell_type == "code"}
    for source, text in cells.items():
        assert "ERROR" not in text and "error:" not in text and "Traceback" not in text, (source, text)
    half = cells["%bai ask how do I give my session half a GPU?"]
    assert "POST /bai/api/v1/sessions" in half and "cuda.shares" in half and "Sources" in half
    assert "%bai session create" in half and "create_session" in half and "curl -X POST" in half
    logs = cells["%bai ask what's the way to see the output my training job printed?"]
    assert "/logs" in logs
    assert "POST /bai/api/v1/vfolders`" in cells["How do I create a new storage folder with a quota?"]
    assert "DELETE /bai/api/v1/vfolders/{name}" in cells["and how do I delete it?"]
    assert "Example:\n%bai vfolder " in cells["and how do I delete it?"]  # the answer bundle's text
    py = next(t for s, t in cells.items() if s.startswith("from jupyter_bai import Client"))
    assert "PUT /bai/api/v1/vfolders/{name}/files uploadFile" in py
    learned = next(t for s, t in cells.items() if s.startswith("import time"))
    assert "learned 108 operations" in learned and "vectors: ready" in learned
    logs = cells["%bai ask how can I see what my container printed to stdout?"]
    assert "GET /containers/{id}/logs` (swagger.yaml)" in logs
    scoped = cells["%bai ask --in swagger.yaml which volumes exist?"]
    assert "GET /volumes` (swagger.yaml)" in scoped and "this workbench" not in scoped
    own = cells["%bai ask --in workbench which volumes exist?"]
    assert "/bai/api/v1/vfolders" in own and "swagger.yaml" not in own
    assert "forgot" in cells['print("forgot", Client().assistant_forget(docker_api)["forgotten"])']
    assert "couldn't find anything" in cells["%bai ask how do I book a meeting room for Friday?"]
    assert "learned " in cells["%bai ask --learn team-docs"] and "1 documents" in cells["%bai ask --learn team-docs"]
    assert "datasets.md" in cells["%bai ask where is the shared imagenet dataset?"]
    assert "team-docs" in cells["%bai ask --sources"] and "forgot" in cells["%bai ask --forget team-docs"]
