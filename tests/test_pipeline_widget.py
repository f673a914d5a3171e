"""The notebook's live pipeline view: drawn from the event stream until the job ends."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from IPython.utils.capture import capture_output

from engine_proc import EngineProcess
from jupyter_bai.cli import BaiContext, run
from jupyter_bai.widgets.pipeline import dag_svg


def test_dag_has_an_edge_per_dependency_and_layers_left_to_right() -> None:
    job = {"id": "j", "tasks": [
        {"name": "c", "status": "WAITING", "depends_on": ["a", "b"]},
        {"name": "a", "status": "SUCCEEDED", "depends_on": []},
        {"name": "b", "status": "FAILED", "depends_on": ["a"]},
    ]}
    svg = dag_svg(job)
    edges = set(re.findall(r'data-from="(\w+)" data-to="(\w+)"', svg))
    assert edges == {("a", "c"), ("b", "c"), ("a", "b")}
    xs = {m[0]: int(m[1]) for m in re.findall(r'data-task="(\w+)"><rect x="(\d+)"', svg)}
    assert xs["a"] < xs["b"] < xs["c"]


def test_magic_run_shows_a_view_that_follows_the_job_to_its_end(
        engine: EngineProcess, engine_env: dict[str, str], tmp_path: Path) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from jupyter_bai.client import Client

    InteractiveShell.instance()  # display() goes through a shell, as in a kernel
    path = tmp_path / "p.yaml"
    small = {"cpu": "0.25", "mem": "128m"}
    path.write_text(yaml.safe_dump({"name": "watched", "tasks": [
        {"name": "one", "command": "sleep 1", "resources": small},
        {"name": "two", "command": "exit 2", "resources": small, "depends_on": ["one"]},
    ]}))
    bai = BaiContext(notebook=True, client_factory=lambda: Client(engine.url, engine.token))
    with capture_output() as cap:
        assert run(["pipeline", "run", str(path)], bai=bai) == 0
    assert cap.outputs, "the widget was displayed"
    watch: Any = bai.result
    watch.join(timeout=120)
    assert not watch._thread.is_alive()
    assert watch.job["status"] == "FAILED"
    table = watch.table.value
    assert "SUCCEEDED" in table and "FAILED" in table and f"pipeline logs {watch.job_id} two" in table
    [href] = re.findall(r'href="([^"]+/tasks/two/logs)"', table)
    assert href == f"/bai/api/v1/pipelines/jobs/{watch.job_id}/tasks/two/logs"
    logs = Client(engine.url, engine.token).pipeline_task_logs(watch.job_id, "one")
    import httpx  # the link serves the task's logs (the token stands in for a login)

    served = httpx.get(engine.url.rstrip("/") + href.replace("two", "one"),
                       headers={"Authorization": f"token {engine.token}"}).json()
    assert served == {"logs": logs}
    assert 'data-from="one" data-to="two"' in watch.dag.value
    assert watch.updates >= 3  # it changed while running, not only at the end
    # Re-attached later: the ended job is shown at once.
    again = BaiContext(notebook=True, client_factory=lambda: Client(engine.url, engine.token))
    with capture_output():
        assert run(["pipeline", "watch", watch.job_id], bai=again) == 0
    again.result.join(timeout=30)
    assert again.result.job["status"] == "FAILED"
