"""A notebook task: parameters injected after the `parameters` cell, run headless with
nbclient inside the task's session, the executed notebook saved to its outputs."""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import nbformat
import yaml
from nbformat.v4 import new_code_cell, new_notebook

from engine_proc import EngineProcess


def test_notebook_task_runs_with_parameters_and_saves_the_result(
        client: Any, tmp_path: Path) -> None:
    nb = new_notebook(cells=[
        new_code_cell("threshold = 0.1", metadata={"tags": ["parameters"]}),
        new_code_cell("import os\nvalue = float(open('/pipeline/input1/v').read())\n"
                      "print('verdict', 'above' if value > threshold else 'below', threshold,\n"
                      "      os.environ['BACKENDAI_PIPELINE_TASK_ID'])"),
    ])
    nbformat.write(nb, tmp_path / "report.ipynb")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"name": "nb", "tasks": [
        {"name": "prep", "command": "echo 0.3 > /pipeline/outputs/v",
         "resources": {"cpu": "0.25", "mem": "128m"}},
        {"name": "report", "notebook": "report.ipynb", "parameters": {"threshold": 0.5},
         "depends_on": ["prep"], "resources": {"cpu": "0.5", "mem": "1g"}},
    ]}))
    job = client.run_pipeline(tmp_path / "p.yaml", wait=True, timeout=240)
    report = {t["name"]: t for t in job["tasks"]}["report"]
    assert (job["status"], report["status"]) == ("SUCCEEDED", "SUCCEEDED"), (
        job, client.pipeline_task_logs(job["id"], "report"))
    assert "verdict below 0.5 report" in client.pipeline_task_logs(job["id"], "report")
    with tempfile.TemporaryDirectory() as dest:
        [local] = client.download(job["folder"], "tasks/report/outputs/report.ipynb", dest)
        done = json.loads(Path(local).read_text())
    sources = ["".join(c["source"]) for c in done["cells"]]
    assert sources[1].startswith("# Parameters injected") and "threshold = 0.5" in sources[1]
    outputs = "".join("".join(o.get("text", "")) for c in done["cells"]
                      for o in c.get("outputs", []))
    assert "verdict below 0.5" in outputs


def test_failing_notebook_fails_the_task_and_keeps_the_executed_copy(
        engine: EngineProcess, client: Any, tmp_path: Path) -> None:
    nbformat.write(new_notebook(cells=[new_code_cell("raise ValueError('bad data')")]),
                   tmp_path / "bad.ipynb")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"tasks": [
        {"name": "nb", "notebook": "bad.ipynb", "resources": {"cpu": "0.5", "mem": "1g"}}]}))
    job = client.run_pipeline(tmp_path / "p.yaml", wait=True, timeout=240)
    assert job["status"] == "FAILED" and job["tasks"][0]["exit_code"] == 1
    logs = re.sub(r"\x1b\[[0-9;]*m", "", client.pipeline_task_logs(job["id"], "nb"))
    assert "ValueError: bad data" in logs
    files = [f["name"] for f in client.list_files(job["folder"], "tasks/nb/outputs")]
    assert files == ["bad.ipynb"]
