"""The notebooks under notebooks/ run top to bottom under nbclient against a real engine."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from engine_proc import start_engine

ROOT = Path(__file__).resolve().parent.parent


def cell_text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] in ("execute_result", "display_data"):
            parts.append(str(out["data"].get("text/plain", "")))
            parts.append(str(out["data"].get("text/html", "")))
        elif out["output_type"] == "error":
            parts.append("ERROR " + out["ename"] + ": " + out["evalue"])
    return "".join(parts)


def execute(name: str, workdir: Path) -> list[nbformat.NotebookNode]:
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return [c for c in nb.cells if c.cell_type == "code"]


def test_quickstart_runs_top_to_bottom(engine_env: dict[str, str], tmp_path: Path) -> None:
    cells = execute("quickstart.ipynb", tmp_path)
    by_source = {c.source.splitlines()[0] if c.source else "": cell_text(c) for c in cells}
    for cell in cells:
        text = cell_text(cell)
        assert "ERROR" not in text and "error:" not in text and "Traceback" not in text, (
            cell.source, text)
    assert "cpu" in by_source["%bai resources"]
    assert "train.csv" in by_source["%bai vfolder files data"]
    listing = next(cell_text(c) for c in cells if "os.listdir" in c.source)
    assert "['train.csv']" in listing
    assert "100 rows" in next(cell_text(c) for c in cells if "DictReader" in c.source)
    assert "100 2" in next(cell_text(c) for c in cells if "variables survive" in c.source)
    assert "('TERMINATED', 'success', 0)" in next(cell_text(c) for c in cells if "Client()" in c.source)
    assert (tmp_path / "train.csv").exists()


def test_pipelines_notebook_runs_the_seed_example(engine_env: dict[str, str], tmp_path: Path
                                                  ) -> None:
    cells = execute("pipelines.ipynb", tmp_path)
    for cell in cells:
        text = cell_text(cell)
        assert "ERROR" not in text and "error:" not in text and "Traceback" not in text, (
            cell.source, text)
    status = next(cell_text(c) for c in cells if "wait_pipeline_job" in c.source)
    assert "SUCCEEDED [('model-training-task', 'SUCCEEDED', 1), ('slack-alarm-task', " \
           "'SUCCEEDED', 1)]" in status
    assert "result.txt" in next(cell_text(c) for c in cells if "vfolder files" in c.source)
    messages = next(cell_text(c) for c in cells if "for message in slack.messages" in c.source)
    assert "#notification Pipeline job(" in messages and ") finished with accuracy 0." in messages
    assert "slack-alarm-task: SUCCEEDED" in messages


def test_services_notebook_runs_the_seed_flow(engine_env: dict[str, str], tmp_path: Path) -> None:
    cells = execute("services.ipynb", tmp_path)
    for cell in cells:
        text = cell_text(cell)
        assert "ERROR" not in text and "error:" not in text and "Traceback" not in text, (
            cell.source, text)
    calls = next(cell_text(c) for c in cells if "answers = " in c.source)
    assert "annyeong! you said: hi" in calls
    import ast

    used = ast.literal_eval(calls.split("routes used:")[1].strip())
    assert len(used) == 2  # round robin over both routes
    assert "HEALTHY" in next(cell_text(c) for c in cells if "service create" in c.source)
    assert "being removed" in next(cell_text(c) for c in cells if "service rm" in c.source)


def test_deploy_notebook_runs_the_whole_flow(tmp_path: Path, bwrap: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # its own engine: notebooks are deployed from under the server's root_dir
    eng = start_engine(tmp_path / "eng", extra_argv=[f"--ServerApp.root_dir={tmp_path}"])
    try:
        for key, value in eng.env.items():
            monkeypatch.setenv(key, value)
        cells = execute("deploy.ipynb", tmp_path)
    finally:
        eng.stop()
    for cell in cells:
        text = cell_text(cell)
        assert "ERROR" not in text and "error:" not in text and "Traceback" not in text, (
            cell.source, text)

    def out(marker: str) -> str:
        return next(cell_text(c) for c in cells if marker in c.source)

    assert "'STILL CALLABLE'" in out('shout("still callable")')
    assert "POST /predict" in out("--check") and "sha256:" in out("--check")
    local = out("serve-local classifier.ipynb --json")
    assert "{'labels': ['dog', 'cat'], 'version': 'v1'}" in local
    assert "top_k: Input should be a valid integer" in local and "text: Field required" in local
    assert "curl -H 'Authorization: Bearer" in out("--replicas 2 -r cpu=0.5")
    assert "version 2 sha256:" in out("client.deploy(")
    calls = out("without a token")
    assert "200 {'labels': ['bird', 'dog'], 'version': 'v2'}" in calls
    assert "without a token: 401" in calls and "documented: ['/predict']" in calls
    assert "'version': 'v1'" in out("service rollback")
    assert "being removed" in out("service rm")
