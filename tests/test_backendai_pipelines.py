"""Pipelines on a real Backend.AI 23.09 halfstack: the local engine runs the job, each task is a
batch session on the cluster, the job's folder is a vfolder there.

With CI=true nothing here skips (the ``backendai`` fixture starts the halfstack if none is up).
Every cluster object a test makes carries a random tag and is deleted at the end.
"""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backendai_cluster import IMAGE, Cluster, delete_folder_when_free
from engine_proc import EngineProcess, start_engine
from private_engines import isolate_engines
from jupyter_bai.client import Client
from jupyter_bai.client import engines

pytestmark = pytest.mark.timeout(1200)
ENGINE = "lab"


def _tag() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def lab(backendai: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An engine list with the cluster as ``lab`` and a local engine that reads it: the
    environment a CLI or kernel of this user has (returned as env vars)."""
    base = tmp_path_factory.mktemp("blab")
    cfg = base / "cfg"
    with pytest.MonkeyPatch.context() as mp:
        env = isolate_engines(mp, cfg)
        engines.add_engine(ENGINE, backendai.endpoint, backendai.access_key, backendai.secret_key)
        eng: EngineProcess = start_engine(base / "engine", env)
        try:
            yield {**env, **eng.env}
        finally:
            eng.teardown()


@pytest.fixture()
def on_lab(lab: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """This process on engine ``lab``, the local engine running (as in a kernel)."""
    for key, value in lab.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(engines.ENV_ENGINE, ENGINE)
    client = engines.make_client()
    yield client
    client.close()


def cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jupyter_bai.cli", *argv], capture_output=True,
                          text=True, timeout=900, env={**os.environ, **env})


def _write(tmp: Path, data: dict[str, Any]) -> Path:
    path = tmp / "pipeline.json"
    path.write_text(json.dumps(data))
    return path


def _history(job: dict[str, Any], task: str) -> list[str]:
    return [h["status"] for h in job["status_history"] if h["task"] == task]


DEFAULTS = {"image": IMAGE, "resources": {"cpu": 1, "mem": "512m"}}


def test_two_task_pipeline_runs_on_the_cluster(lab: dict[str, str], on_lab: Client,
                                               tmp_path: Path) -> None:
    """B reads what A wrote, through /pipeline/input1 and /pipeline/inputs/A, as locally."""
    tag = _tag()
    spec = {"name": f"pl{tag}", "defaults": DEFAULTS, "tasks": [
        {"name": "make", "command": "echo \"hello from $BACKENDAI_PIPELINE_TASK_ID\" "
                                    "> /pipeline/outputs/greeting.txt"},
        {"name": "use", "depends_on": ["make"], "command":
            "cmp /pipeline/input1/greeting.txt /pipeline/inputs/make/greeting.txt && "
            "tr a-z A-Z < /pipeline/input1/greeting.txt > /pipeline/outputs/shout.txt && "
            "cat /pipeline/outputs/shout.txt"},
    ]}
    out = cli({**lab, engines.ENV_ENGINE: ENGINE}, "--json", "pipeline", "run",
              str(_write(tmp_path, spec)), "--wait")
    job = json.loads(out.stdout) if out.stdout.strip() else {}
    try:
        assert out.returncode == 0, (out.stdout, out.stderr)
        assert job["status"] == "SUCCEEDED" and job["engine"] == ENGINE
        assert [(t["name"], t["status"], t["attempts"], t["exit_code"]) for t in job["tasks"]] == [
            ("make", "SUCCEEDED", 1, 0), ("use", "SUCCEEDED", 1, 0)]
        # the artifacts are in the job's folder on the cluster, where the local engine keeps them
        on_lab.download(job["folder"], "tasks/use/outputs/shout.txt", tmp_path / "dl")
        data = next((tmp_path / "dl").rglob("shout.txt")).read_bytes()
        assert data == b"HELLO FROM MAKE\n"
        assert "HELLO FROM MAKE" in on_lab.pipeline_task_logs(job["id"], "use")
        # the same job rows as a local job: history, and listed by both engines' views
        full = on_lab.get_pipeline_job(job["id"])
        assert _history(full, "make") == ["WAITING", "RUNNING", "SUCCEEDED"]
        assert _history(full, None) == ["RUNNING", "SUCCEEDED"]
        assert job["id"] in [j["id"] for j in on_lab.list_pipeline_jobs()]
        local = Client(lab["JUPYTER_BAI_URL"], lab["JUPYTER_BAI_TOKEN"])
        try:
            assert local.get_pipeline_job(job["id"])["engine"] == ENGINE
            # the sidebar's event stream carries its changes like a local job's (replayed)
            seen: list[tuple[str | None, str | None]] = []
            for ev in local.events(since=0):
                if ev.kind == "pipeline-task" and ev.name and ev.name.startswith(job["id"] + "/"):
                    seen.append((ev.name.split("/", 1)[1], ev.status))
                if ev.kind == "pipeline-job" and ev.name == job["id"] and ev.status == "SUCCEEDED":
                    break
            assert [st for t, st in seen if t == "use"] == ["RUNNING", "SUCCEEDED"]
        finally:
            local.close()
        # each attempt was a batch session on the cluster, finished and gone from the live list
        sessions = {s.id: s for s in on_lab.list_sessions()}
        for task in full["tasks"]:
            assert sessions[task["session_id"]].status in ("TERMINATED", "TERMINATING")
            assert sessions[task["session_id"]].type == "batch"
    finally:
        if job.get("folder"):
            delete_folder_when_free(on_lab, job["folder"])


def test_a_failed_attempt_is_retried_and_a_failed_job_rerun(on_lab: Client, tmp_path: Path) -> None:
    """Each attempt is a new batch session starting from empty outputs; the attempt count is
    kept in a mounted folder of the user's, so attempts 1 and 2 fail and the rerun's succeeds."""
    tag = _tag()
    state = f"st{tag}"
    on_lab.create_vfolder(state)
    job: dict[str, Any] = {}
    try:
        spec = {"name": f"rt{tag}", "defaults": {**DEFAULTS, "retries": 1, "backoff": 1},
                "mounts": [f"{state}:/home/work/state"], "tasks": [
                    {"name": "flaky", "command":
                        "n=$(cat /home/work/state/n 2>/dev/null || echo 0); n=$((n + 1)); "
                        "echo $n > /home/work/state/n; echo \"attempt $n\" >> /pipeline/outputs/seen.txt; "
                        "[ $n -ge 3 ]"}]}
        job = dict(on_lab.run_pipeline(_write(tmp_path, spec), wait=True, timeout=600))
        assert job["status"] == "FAILED", job
        assert [(t["status"], t["attempts"]) for t in job["tasks"]] == [("FAILED", 2)]
        full = on_lab.get_pipeline_job(job["id"])
        assert _history(full, "flaky") == ["WAITING", "RUNNING", "RETRYING", "RUNNING", "FAILED"]
        retry = [h for h in full["status_history"] if h["status"] == "RETRYING"][0]
        assert retry["info"].startswith("attempt 1 failed")

        on_lab.rerun_pipeline_job(job["id"])
        done = on_lab.wait_pipeline_job(job["id"], timeout=600)
        assert done["status"] == "SUCCEEDED", done
        assert [(t["status"], t["attempts"], t["exit_code"]) for t in done["tasks"]] == [
            ("SUCCEEDED", 1, 0)]
        # the third attempt started from empty outputs: its line only
        on_lab.download(job["folder"], "tasks/flaky/outputs/seen.txt", tmp_path / "dl")
        assert next((tmp_path / "dl").rglob("seen.txt")).read_text() == "attempt 3\n"
    finally:
        if job.get("folder"):
            delete_folder_when_free(on_lab, job["folder"])
        delete_folder_when_free(on_lab, state)


def _containers_of(session_id: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-q", "--filter", f"label=ai.backend.session-id={session_id}"],
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_cancel_destroys_the_cluster_sessions(on_lab: Client, tmp_path: Path) -> None:
    tag = _tag()
    spec = {"name": f"cx{tag}", "defaults": DEFAULTS, "tasks": [
        {"name": "slow", "command": "sleep 600"}, {"name": "after", "depends_on": ["slow"],
                                                    "command": "true"}]}
    job = dict(on_lab.run_pipeline(_write(tmp_path, spec)))
    try:
        deadline = time.monotonic() + 300
        while on_lab.get_pipeline_job(job["id"])["tasks"][0]["status"] != "RUNNING":
            assert time.monotonic() < deadline, on_lab.get_pipeline_job(job["id"])
            time.sleep(1)
        sid = on_lab.get_pipeline_job(job["id"])["tasks"][0]["session_id"]
        on_lab.cancel_pipeline_job(job["id"])
        done = on_lab.wait_pipeline_job(job["id"], timeout=300)
        assert done["status"] == "CANCELLED"
        assert [t["status"] for t in done["tasks"]] == ["CANCELLED", "CANCELLED"]
        assert on_lab.wait_session(sid, {"TERMINATED", "CANCELLED"}, timeout=120).status in (
            "TERMINATED", "CANCELLED")
        # and its container is gone from the agent (23.09 leaves one running, unseen by the
        # manager, when a session is destroyed while the agent is still making it)
        deadline = time.monotonic() + 120
        while _containers_of(sid):
            assert time.monotonic() < deadline, f"session {sid}'s container still runs"
            time.sleep(1)
    finally:
        delete_folder_when_free(on_lab, job["folder"])


def test_a_session_a_killed_engine_asked_for_is_adopted_not_started_twice(
        on_lab: Client, tmp_path: Path) -> None:
    """An engine killed after the cluster made an attempt's session but before recording it
    leaves that session running under the attempt's name; the attempt adopts it. Here the
    orphan is made by hand, under the name the dependent task's first attempt will have."""
    tag = _tag()
    spec = {"name": f"ad{tag}", "defaults": DEFAULTS, "tasks": [
        {"name": "first", "command": "sleep 20"},
        {"name": "second", "depends_on": ["first"], "command": "exit 7"}]}
    job = dict(on_lab.run_pipeline(_write(tmp_path, spec)))
    orphan = on_lab.create_session(IMAGE, name=f"pl-{job['id'][:12]}-second-1", type="batch",
                                   command="sleep 30", resources=["cpu=1", "mem=512m"])
    try:
        done = on_lab.wait_pipeline_job(job["id"], timeout=600)
        second = [t for t in done["tasks"] if t["name"] == "second"][0]
        # the orphan's command (which succeeds), not the task's own `exit 7`, and one attempt
        assert (second["status"], second["attempts"], second["session_id"]) == (
            "SUCCEEDED", 1, orphan.id), done
        named = [s for s in on_lab.list_sessions() if s.name == orphan.name]
        assert [s.id for s in named] == [orphan.id]
    finally:
        delete_folder_when_free(on_lab, job["folder"])


def test_unknown_image_is_one_line_and_makes_nothing(lab: dict[str, str], on_lab: Client,
                                                     tmp_path: Path) -> None:
    tag = _tag()
    folders = {f.name for f in on_lab.list_vfolders()}
    sessions = {s.id for s in on_lab.list_sessions()}
    jobs = {j["id"] for j in on_lab.list_pipeline_jobs()}
    spec = {"name": f"bad{tag}", "defaults": DEFAULTS, "tasks": [
        {"name": "a", "command": "true"}, {"name": "b", "image": f"nope-{tag}", "command": "true"}]}
    out = cli({**lab, engines.ENV_ENGINE: ENGINE}, "pipeline", "run", str(_write(tmp_path, spec)))
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert f"unknown image 'nope-{tag}'" in out.stderr
    assert {f.name for f in on_lab.list_vfolders()} == folders
    assert {s.id for s in on_lab.list_sessions()} == sessions
    assert {j["id"] for j in on_lab.list_pipeline_jobs()} == jobs
    # an engine the local engine's list does not have, and what only the local engine can run
    for active, bad, why in (
            ("local", {"engine": f"nope{tag}"}, f"no engine named 'nope{tag}'"),
            (ENGINE, {"engine": "local"}, "the pipeline names engine 'local', but the active engine is 'lab'"),
            (ENGINE, {"tasks": [{"name": "a", "command": "true", "cache": True}]},
             "cache: true needs the local engine")):
        out = cli({**lab, engines.ENV_ENGINE: active}, "pipeline", "run",
                  str(_write(tmp_path, {**spec, **bad})))
        assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
        assert why in out.stderr, out.stderr
    assert {f.name for f in on_lab.list_vfolders()} == folders
    assert {j["id"] for j in on_lab.list_pipeline_jobs()} == jobs


def test_without_a_local_engine_it_says_so(lab: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in lab.items() if k not in ("JUPYTER_BAI_URL", "JUPYTER_BAI_TOKEN")}
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "no-engine")
    spec = {"name": "x", "defaults": DEFAULTS, "tasks": [{"name": "a", "command": "true"}]}
    run_env = {**env, engines.ENV_ENGINE: ENGINE}
    clean = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_BAI_URL", "JUPYTER_BAI_TOKEN")}
    out = subprocess.run([sys.executable, "-m", "jupyter_bai.cli", "pipeline", "run",
                          str(_write(tmp_path, spec))], capture_output=True, text=True,
                         timeout=120, env={**clean, **run_env})
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "run by the local jupyter-bai engine, and none is running" in out.stderr


class _Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver on 127.0.0.1 (a real HTTP server; the bodies land in ``got``)."""

    got: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).got.append({"body": json.loads(body), "key": self.headers.get("Idempotency-Key")})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_cluster_job_survives_its_engine_being_killed_and_notifies(
        lab: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 of the local engine mid-task: after a restart the running cluster session is
    followed (not started again), the dependent runs, and the webhook hears of the end."""
    env = {k: lab[k] for k in (engines.ENV_STORE, "JUPYTER_CONFIG_DIR", "JUPYTER_CONFIG_PATH")}
    eng = start_engine(tmp_path / "eng", env)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Receiver.got = []
    for key, value in {**env, **eng.env, engines.ENV_ENGINE: ENGINE}.items():
        monkeypatch.setenv(key, value)
    tag = _tag()
    spec = {"name": f"kr{tag}", "defaults": DEFAULTS,
            "notify": [{"webhook": f"http://127.0.0.1:{srv.server_address[1]}/hook"}],
            "tasks": [{"name": "a", "command": "sleep 8; echo survived > /pipeline/outputs/x"},
                      {"name": "b", "depends_on": ["a"], "command": "cat /pipeline/input1/x"}]}
    client = engines.make_client()
    job: dict[str, Any] = {}
    try:
        job = dict(client.run_pipeline(_write(tmp_path, spec)))
        deadline = time.monotonic() + 300
        while client.get_pipeline_job(job["id"])["tasks"][0]["status"] != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.5)
        client.close()
        eng.kill9()
        eng.start()
        client = engines.make_client()
        done = client.wait_pipeline_job(job["id"], timeout=600)
        assert done["status"] == "SUCCEEDED", done
        assert [(t["name"], t["attempts"]) for t in done["tasks"]] == [("a", 1), ("b", 1)]
        assert "survived" in client.pipeline_task_logs(job["id"], "b")
        deadline = time.monotonic() + 60
        while not _Receiver.got:
            assert time.monotonic() < deadline, client.get_pipeline_job(job["id"])["notifications"]
            time.sleep(0.5)
        text = _Receiver.got[0]["body"]["text"]
        assert text.startswith(f"Pipeline job kr{tag} ({job['id']}) SUCCEEDED")
        assert client.get_pipeline_job(job["id"])["notifications"][0]["status"] == "DELIVERED"
    finally:
        if job.get("folder"):
            delete_folder_when_free(client, job["folder"])
        client.close()
        srv.shutdown()
        eng.teardown()
