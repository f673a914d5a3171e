"""``%bai pipeline ...`` in a real IPython kernel (jupyter_client), as a notebook runs it: the
live view reaches the front end as widget messages and keeps changing after the cell ends."""
from __future__ import annotations

import queue
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import start_new_kernel

from engine_proc import EngineProcess

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CAPTION = re.compile(r"pipeline job (\w+) \((\w[\w.-]*)\): (\w+)")


class Kernel:
    """A kernel client that keeps every iopub message, the widget updates a background
    thread sends after its cell has finished included."""

    def __init__(self, client: BlockingKernelClient) -> None:
        self.client = client
        self.messages: list[dict[str, Any]] = []

    def _next(self, timeout: float) -> dict[str, Any] | None:
        try:
            msg = self.client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return None
        self.messages.append(msg)
        return msg

    def run(self, code: str, timeout: float = 120) -> dict[str, Any]:
        """Run a cell; its stdout, stderr and displayed outputs."""
        msg_id = self.client.execute(code)
        out: dict[str, Any] = {"stdout": "", "stderr": "", "display": [], "error": None}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self._next(1)
            if msg is None or msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out[content["name"]] += content["text"]
            elif kind in ("display_data", "execute_result"):
                out["display"].append(content["data"])
            elif kind == "error":
                out["error"] = content
            elif kind == "status" and content["execution_state"] == "idle":
                self.client.get_shell_msg(timeout=10)
                return out
        raise AssertionError(f"cell did not finish: {code}")

    def table_states(self, since: int = 0) -> list[tuple[int, str, str]]:
        """Each widget HTML value that is a job's task table: (message index, job, status)."""
        found = []
        for i, msg in enumerate(self.messages[since:], since):
            if msg["msg_type"] not in ("comm_open", "comm_msg"):
                continue
            value = (msg["content"].get("data") or {}).get("state", {}).get("value")
            m = CAPTION.search(value or "")
            if m:
                found.append((i, m.group(1), m.group(3)))
        return found

    def wait_table_of_a_job(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while not self.table_states():
            assert time.monotonic() < deadline, "no job table was drawn"
            self._next(1)
        return self.table_states()[0][1]

    def wait_table(self, job: str, status: str, since: int = 0, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(j == job and s == status for _, j, s in self.table_states(since)):
            assert time.monotonic() < deadline, self.table_states()
            self._next(1)


@pytest.fixture()
def kernel(engine_env: dict[str, str], tmp_path: Path) -> Iterator[Kernel]:
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        k = Kernel(kc)
        assert k.run("%load_ext jupyter_bai")["error"] is None
        yield k
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_pipeline_magics_in_a_kernel(engine: EngineProcess, kernel: Kernel, tmp_path: Path
                                     ) -> None:
    small = {"cpu": "0.25", "mem": "128m"}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"name": "inkernel", "tasks": [
        {"name": "one", "command": "sleep 3; echo hello-from-one", "resources": small},
        {"name": "two", "command": "exit 2", "resources": small, "depends_on": ["one"]},
    ]}))
    (tmp_path / "bad.yaml").write_text("tasks: [{name: a, command: x, depends_on: [nope]}]\n")

    bad = kernel.run("%bai pipeline validate bad.yaml")
    assert bad["error"] is None and bad["stderr"].count("\n") == 1
    assert bad["stderr"].startswith("error: ") and "unknown task 'nope'" in bad["stderr"]

    started = kernel.run("%bai pipeline run p.yaml")
    assert started["error"] is None and not started["stderr"], started
    assert any(WIDGET_VIEW in d for d in started["display"]), started  # the live view
    returned_at = len(kernel.messages)
    job = kernel.wait_table_of_a_job()
    kernel.wait_table(job, "FAILED")
    after = [s for i, j, s in kernel.table_states(returned_at) if j == job]
    # The view went on changing after the cell had returned: running, then the end.
    assert after[0] == "RUNNING" and after[-1] == "FAILED", after

    info = kernel.run(f"%bai pipeline info {job}")
    html = "".join(d.get("text/html", "") for d in info["display"])
    assert f"pipeline job {job} (inkernel): FAILED" in html and "two" in html
    logs = kernel.run(f"%bai pipeline logs {job} one")
    assert logs["stdout"] == "hello-from-one\n"
    jobs = kernel.run("%bai pipeline jobs")
    assert job in "".join(d.get("text/html", "") for d in jobs["display"])
    cancel = kernel.run(f"%bai pipeline cancel {job}")
    assert cancel["stderr"].strip() == f"error: pipeline job {job} is already FAILED"

    mark = len(kernel.messages)
    watched = kernel.run(f"%bai pipeline watch {job}")  # re-attached to the ended job
    assert any(WIDGET_VIEW in d for d in watched["display"])
    kernel.wait_table(job, "FAILED", since=mark)

    mark = len(kernel.messages)
    rerun = kernel.run(f"%bai pipeline rerun {job} --wait")  # returns when the job has ended
    assert any(WIDGET_VIEW in d for d in rerun["display"]) and not rerun["stderr"], rerun
    final = kernel.run(f"%bai pipeline info {job} --json")["display"][-1]["text/plain"]
    assert "status='FAILED'" in final and "status_info='failed: two'" in final
    kernel.wait_table(job, "FAILED", since=mark)
    ids = kernel.run(f"info = %bai pipeline info {job} --json\n"
                     "[(t['name'], t['attempts']) for t in info['tasks']]")
    assert ids["display"][-1]["text/plain"] == "[('one', 1), ('two', 1)]", ids  # one: not run again; two: once more
