"""Pipeline jobs on a real engine: the seed's Slack example, failure, retries, timeout,
cancel, rerun and notifications; tasks are real bubblewrap batch sessions."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from engine_proc import EngineProcess
from jupyter_bai.fakes.slack import FakeSlackWebhook, free_port

# The seed's example ("FastTrack Guide: Receiving Notifications for Model Training Results"):
# both task scripts verbatim. Only Slack's address differs: the alarm task reaches the fake
# Slack through HTTPS_PROXY (which slack_sdk reads) and trusts its test CA (SSL_CERT_FILE).
SEED_TRAINING = """\
# Pause for 3 seconds to increase the execution time.
sleep 3
# Create a `result.txt` file in the pipeline-dedicated folder. Assume this is the accuracy of the trained model.
echo "0.$RANDOM" > /pipeline/outputs/result.txt
"""
SEED_ALARM = """\
pip install slack-sdk
python -c '
import os
from pathlib import Path
from slack_sdk import WebClient
SLACK_BOT_TOKEN = os.environ.get("SLACK_TOKEN")
JOB_ID = os.environ.get("BACKENDAI_PIPELINE_JOB_ID")
def main():
    result = Path("/pipeline/input1/result.txt").read_text()
    client = WebClient(token=SLACK_BOT_TOKEN)
    client.chat_postMessage(
        channel="#notification",
        text="Pipeline job({}) finished with accuracy {}".format(JOB_ID, result),
    )
if __name__ == "__main__":
    main()
'
"""


def seed_pipeline(ca_folder: str) -> str:
    def block(script: str) -> str:
        return "".join(f"      {line}\n" if line else "\n" for line in script.splitlines())

    return f"""\
name: slack-pipeline-0
env: {{PROJECT: demo}}
defaults: {{image: local, resources: {{cpu: 1, mem: 1g}}}}
notify: [{{on: [success, failure], webhook: "${{SLACK_WEBHOOK}}"}}]
tasks:
  - name: model-training-task
    command: |
{block(SEED_TRAINING)}    resources: {{cpu: 1, mem: 2g, cuda.shares: 0.5}}
  - name: slack-alarm-task
    depends_on: [model-training-task]
    env:
      SLACK_TOKEN: xoxb-fake-token
      HTTPS_PROXY: "${{SLACK_PROXY}}"
      SSL_CERT_FILE: /home/work/slack-ca/ca.pem
    mounts: ["{ca_folder}:/home/work/slack-ca:ro"]
    command: |
{block(SEED_ALARM)}"""


@pytest.fixture()
def webhook() -> Iterator[FakeSlackWebhook]:
    hook = FakeSlackWebhook()
    yield hook
    hook.close()


def write(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def read(client: Any, folder: str, path: str) -> bytes:
    """A file of a job's pipeline folder, downloaded as a user would."""
    import tempfile

    with tempfile.TemporaryDirectory() as dest:
        [local] = client.download(folder, path, dest)
        return Path(local).read_bytes()


def tasks_of(job: Any) -> dict[str, Any]:
    return {t["name"]: t for t in job["tasks"]}


def small(**task: Any) -> dict[str, Any]:
    return {"resources": {"cpu": "0.25", "mem": "128m"}, **task}


def test_seed_slack_example_runs_and_notifies(client: Any, webhook: FakeSlackWebhook,
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    ca_folder = f"slack-ca-{tmp_path.name[-24:]}".replace("_", "-")
    client.create_vfolder(ca_folder)
    (tmp_path / "ca.pem").write_bytes(webhook.ca_pem)
    client.upload(ca_folder, [tmp_path / "ca.pem"])
    monkeypatch.setenv("SLACK_WEBHOOK", webhook.url)
    monkeypatch.setenv("SLACK_PROXY", webhook.proxy_url)
    text = seed_pipeline(ca_folder)
    assert SEED_ALARM in yaml.safe_load(text)["tasks"][1]["command"]
    job = client.run_pipeline(write(tmp_path, text), wait=True, timeout=180)
    tasks = tasks_of(job)
    alarm_logs = client.pipeline_task_logs(job["id"], "slack-alarm-task")
    assert job["status"] == "SUCCEEDED", (job, alarm_logs)
    assert [tasks[n]["status"] for n in ("model-training-task", "slack-alarm-task")] == \
        ["SUCCEEDED", "SUCCEEDED"]
    assert all(t["attempts"] == 1 and t["exit_code"] == 0 for t in tasks.values())
    assert "Requirement already satisfied: slack-sdk" in alarm_logs  # its pip line ran
    accuracy = read(client, job["folder"], "tasks/model-training-task/outputs/"
                                                          "result.txt").decode()
    assert re.fullmatch(r"0\.\d+\n", accuracy)
    # The task's WebClient reached "slack.com" (over TLS, through the proxy) with its token.
    assert webhook.messages == [{
        "channel": "#notification", "token": "xoxb-fake-token", "host": "slack.com",
        "text": f"Pipeline job({job['id']}) finished with accuracy {accuracy}"}]
    [post] = webhook.wait_for(1)  # and the engine's own notification, at the webhook
    text = post["text"]
    assert job["id"] in text and "SUCCEEDED" in text
    assert "model-training-task: SUCCEEDED" in text and "slack-alarm-task: SUCCEEDED" in text
    [header] = webhook.headers
    [note] = client.get_pipeline_job(job["id"])["notifications"]
    assert header["Idempotency-Key"] == note["dedupe_key"] and note["status"] == "DELIVERED"
    assert note["webhook"] == webhook.url.split("/services")[0]  # the secret path is not shown


def test_failure_skips_dependents_while_other_branches_finish(client: Any, tmp_path: Path
                                                              ) -> None:
    spec = {"name": "branches", "env": {"STAGE": "test"}, "tasks": [
        small(name="bad", command="echo partial > /pipeline/outputs/x; exit 3"),
        small(name="after-bad", command="true", depends_on=["bad"]),
        small(name="left", command="echo L > /pipeline/outputs/v"),
        small(name="right", command="echo R > /pipeline/outputs/v"),
        small(name="join", depends_on=["right", "left"], command=(
            "set -e; echo \"$(cat /pipeline/input1/v)$(cat /pipeline/input2/v)"
            "$(cat /pipeline/inputs/left/v) $BACKENDAI_PIPELINE_TASK_ID $STAGE\" "
            "> /pipeline/outputs/joined; "
            "if echo no > /pipeline/input1/v; then exit 9; fi")),
    ]}
    job = client.run_pipeline(write(tmp_path, spec), wait=True, timeout=120)
    tasks = tasks_of(job)
    assert job["status"] == "FAILED" and "bad" in job["status_info"]
    assert (tasks["bad"]["status"], tasks["bad"]["exit_code"]) == ("FAILED", 3)
    assert tasks["after-bad"]["status"] == "SKIPPED"
    assert tasks["after-bad"]["attempts"] == 0
    assert {tasks[n]["status"] for n in ("left", "right", "join")} == {"SUCCEEDED"}
    joined = read(client, job["folder"], "tasks/join/outputs/joined")
    assert joined == b"RLL join test\n"  # input1..N in depends_on order; inputs read-only
    history = client.get_pipeline_job(job["id"])["status_history"]
    assert [h["status"] for h in history if h["task"] == "bad"] == ["WAITING", "RUNNING", "FAILED"]
    assert all(h["at"] for h in history)


def test_retries_back_off_then_rerun_reuses_successful_outputs(client: Any, tmp_path: Path
                                                               ) -> None:
    client.create_vfolder("pl-flag")
    spec = {"name": "flaky", "tasks": [
        small(name="up", command="echo $RANDOM$RANDOM > /pipeline/outputs/n"),
        small(name="flaky", depends_on=["up"], retries=2, backoff=0.2,
              mounts=["pl-flag:/home/work/flag:ro"],
              command="cp /pipeline/input1/n /pipeline/outputs/n; test -f /home/work/flag/ok"),
    ]}
    job = client.run_pipeline(write(tmp_path, spec), wait=True, timeout=120)
    flaky = tasks_of(job)["flaky"]
    assert job["status"] == "FAILED"
    assert (flaky["status"], flaky["attempts"], flaky["exit_code"]) == ("FAILED", 3, 1)
    infos = [h["info"] for h in client.get_pipeline_job(job["id"])["status_history"]
             if h["task"] == "flaky" and h["status"] == "RETRYING"]
    assert [re.search(r"retry in ([\d.]+)s", i).group(1) for i in infos] == ["0.2", "0.4"]
    up_before = tasks_of(job)["up"]
    n_before = read(client, job["folder"], "tasks/up/outputs/n")

    (tmp_path / "ok").write_bytes(b"")
    client.upload("pl-flag", [tmp_path / "ok"])
    with pytest.raises(Exception, match="still RUNNING|nothing to rerun|is RUNNING"):
        client.rerun_pipeline_job(client.rerun_pipeline_job(job["id"])["id"])
    job = client.wait_pipeline_job(job["id"], timeout=120)
    tasks = tasks_of(job)
    assert job["status"] == "SUCCEEDED"
    assert tasks["up"]["session_id"] == up_before["session_id"]  # not run again
    assert tasks["up"]["attempts"] == 1
    assert read(client, job["folder"], "tasks/up/outputs/n") == n_before
    assert read(client, job["folder"], "tasks/flaky/outputs/n") == n_before
    assert tasks["flaky"]["attempts"] == 1


def test_independent_tasks_queue_when_the_node_cannot_hold_both(client: Any, tmp_path: Path
                                                                ) -> None:
    cpu = str(client.resources()["capacity"]["cpu"])  # each task takes the whole node
    spec = {"name": "queued", "tasks": [
        {"name": n, "resources": {"cpu": cpu, "mem": "128m"},
         "command": "date +%s.%N > /pipeline/outputs/t0; sleep 2; date +%s.%N > /pipeline/outputs/t1"}
        for n in ("a", "b")]}
    job = client.run_pipeline(write(tmp_path, spec))
    deadline = time.monotonic() + 60
    infos: set[str] = set()
    while (job := client.get_pipeline_job(job["id"]))["status"] == "RUNNING":
        infos |= {t["status_info"] or "" for t in job["tasks"]}
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["status"] == "SUCCEEDED", job
    assert any(i.endswith("queued: waiting for resources") for i in infos), infos
    spans = sorted(tuple(float(read(client, job["folder"], f"tasks/{n}/outputs/{f}"))
                         for f in ("t0", "t1")) for n in ("a", "b"))
    assert spans[0][1] <= spans[1][0]  # one after the other, never both at once


def test_timeout_fails_the_task(client: Any, tmp_path: Path) -> None:
    spec = {"tasks": [small(name="slow", command="sleep 60", timeout=1)]}
    job = client.run_pipeline(write(tmp_path, spec), wait=True, timeout=120)
    slow = tasks_of(job)["slow"]
    assert (job["status"], slow["status"]) == ("FAILED", "FAILED")
    assert slow["status_info"] == "timed out after 1s"
    assert client.get_session(slow["session_id"])["status"] == "TERMINATED"


def test_cancel_sends_sigterm_and_cancels_the_rest(client: Any, webhook: FakeSlackWebhook,
                                                   tmp_path: Path) -> None:
    spec = {"notify": [{"on": ["cancelled"], "webhook": webhook.url}], "tasks": [
        small(name="long", command="trap 'echo got-TERM > /pipeline/outputs/t; exit 0' TERM; "
                                    "touch /pipeline/outputs/started; sleep 60 & wait"),
        small(name="next", depends_on=["long"], command="true"),
    ]}
    job = client.run_pipeline(write(tmp_path, spec))
    deadline = time.monotonic() + 60
    while not any(f["name"] == "started" for f in client.list_files(
            job["folder"], "tasks/long/outputs")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    client.cancel_pipeline_job(job["id"])
    job = client.wait_pipeline_job(job["id"], timeout=60)
    tasks = tasks_of(job)
    assert job["status"] == "CANCELLED"
    assert (tasks["long"]["status"], tasks["next"]["status"]) == ("CANCELLED", "CANCELLED")
    assert read(client, job["folder"], "tasks/long/outputs/t") == b"got-TERM\n"
    assert client.get_session(tasks["long"]["session_id"])["status"] == "TERMINATED"
    with pytest.raises(Exception, match="already CANCELLED"):
        client.cancel_pipeline_job(job["id"])
    [post] = webhook.wait_for(1)  # the engine reports the killed job itself
    assert f"({job['id']}) CANCELLED" in post["text"] and "long: CANCELLED" in post["text"]


def test_bad_pipeline_is_refused_and_leaves_nothing(client: Any, tmp_path: Path) -> None:
    folders = {v["name"] for v in client.list_vfolders()}
    jobs = len(client.list_pipeline_jobs())
    for spec, reason in [
        ({"tasks": [small(name="a", command="true", image="no-such-image:1")]}, "no-such-image"),
        ({"tasks": [{"name": "a", "command": "true", "resources": {"cpu": 999}}]}, "cpu"),
        ({"tasks": [small(name="a", command="true", mounts=["missing-folder"])]},
         "missing-folder"),
    ]:
        with pytest.raises(Exception, match=reason):
            client.run_pipeline(write(tmp_path, spec))
    assert {v["name"] for v in client.list_vfolders()} == folders
    assert len(client.list_pipeline_jobs()) == jobs


def test_undelivered_notification_is_retried_and_never_fails_the_job(
        client: Any, tmp_path: Path) -> None:
    hook = FakeSlackWebhook(fail_first=2)
    try:
        spec = {"notify": [{"on": ["failure"], "webhook": hook.url},
                           {"webhook": "http://127.0.0.1:9/nobody-listens"}],
                "tasks": [small(name="a", command="exit 1")]}
        job = client.run_pipeline(write(tmp_path, spec), wait=True, timeout=60)
        assert job["status"] == "FAILED"
        posts = hook.wait_for(1)
        assert hook.attempts == 3 and len(posts) == 1
        [note, nobody] = client.get_pipeline_job(job["id"])["notifications"]
        assert hook.keys == [note["dedupe_key"]] * 3  # receivers can drop duplicates
        assert (note["status"], note["attempts"]) == ("DELIVERED", 3)
        assert nobody["status"] == "PENDING" and nobody["last_error"]
        assert f"({job['id']}) FAILED" in posts[0]["text"]
        assert "a: FAILED (attempts 1, exit code 1" in posts[0]["text"]
        assert client.get_pipeline_job(job["id"])["status"] == "FAILED"
    finally:
        hook.close()


def wait_notification(client: Any, job_id: str, attempts: int) -> dict[str, Any]:
    """The job's one notification, once it has been tried ``attempts`` times."""
    deadline = time.monotonic() + 60
    while True:
        [note] = client.get_pipeline_job(job_id)["notifications"]
        if note["attempts"] >= attempts or note["status"] != "PENDING":
            return note
        assert time.monotonic() < deadline, note
        time.sleep(0.2)


def test_notification_waits_for_a_receiver_that_is_down(client: Any, tmp_path: Path) -> None:
    port = free_port()
    spec = {"notify": [{"webhook": f"http://127.0.0.1:{port}/hook"}],
            "tasks": [small(name="a", command="true")]}
    job = client.run_pipeline(write(tmp_path, spec), wait=True, timeout=60)
    note = wait_notification(client, job["id"], attempts=2)
    assert note["status"] == "PENDING" and "Connect" in note["last_error"]
    hook = FakeSlackWebhook(port=port)  # the receiver comes up
    try:
        [post] = hook.wait_for(1)
        assert f"({job['id']}) SUCCEEDED" in post["text"]
        note = wait_notification(client, job["id"], attempts=99)
        assert note["status"] == "DELIVERED" and note["attempts"] >= 3
        assert hook.keys == [note["dedupe_key"]]
    finally:
        hook.close()


def test_notification_pending_when_the_engine_is_killed_is_sent_after_restart(
        fresh_engine: EngineProcess, tmp_path: Path) -> None:
    from engine_proc import free_port as engine_port
    from jupyter_bai.client import Client

    port = free_port()
    client = Client(fresh_engine.url, fresh_engine.token)
    spec = {"notify": [{"on": ["failure"], "webhook": f"http://127.0.0.1:{port}/hook"}],
            "tasks": [small(name="a", command="exit 4")]}
    job = client.run_pipeline(write(tmp_path, spec), wait=True, timeout=60)
    assert wait_notification(client, job["id"], attempts=1)["status"] == "PENDING"
    client.close()
    fresh_engine.kill9()  # the job has ended; its notification is not delivered yet
    hook = FakeSlackWebhook(port=port)
    try:
        fresh_engine.port = engine_port()
        fresh_engine.start()
        client = Client(fresh_engine.url, fresh_engine.token)
        [post] = hook.wait_for(1)
        assert f"({job['id']}) FAILED" in post["text"] and "a: FAILED" in post["text"]
        note = wait_notification(client, job["id"], attempts=99)
        assert note["status"] == "DELIVERED" and hook.keys == [note["dedupe_key"]]
        assert client.get_pipeline_job(job["id"])["status"] == "FAILED"
        client.close()
    finally:
        hook.close()


def test_pipeline_events_are_in_the_stream(client: Any, tmp_path: Path) -> None:
    since = max((e["seq"] for e in []), default=None)
    job = client.run_pipeline(write(tmp_path, {"tasks": [small(name="one", command="true")]}),
                              wait=True, timeout=60)
    seen = []
    for event in client.events(since=0):
        if event.get("kind", "").startswith("pipeline") and job["id"] in event["name"]:
            seen.append((event["kind"], event["status"]))
        if ("pipeline-job", "SUCCEEDED") in seen:
            break
    assert ("pipeline-task", "RUNNING") in seen and ("pipeline-task", "SUCCEEDED") in seen
    assert seen[0] == ("pipeline-job", "RUNNING") and seen[-1] == ("pipeline-job", "SUCCEEDED")
    del since


def test_kill9_mid_job_resumes_without_rerunning_finished_tasks(
        fresh_engine: EngineProcess, tmp_path: Path) -> None:
    from engine_proc import free_port
    from jupyter_bai.client import Client

    client = Client(fresh_engine.url, fresh_engine.token)
    spec = {"tasks": [
        small(name="first", command="echo $RANDOM$RANDOM > /pipeline/outputs/n"),
        small(name="middle", depends_on=["first"],
              command="touch /pipeline/outputs/started; sleep 4; cp /pipeline/input1/n "
                      "/pipeline/outputs/n"),
        small(name="last", depends_on=["middle"], command="cp /pipeline/input1/n /pipeline/outputs/n"),
    ]}
    job = client.run_pipeline(write(tmp_path, spec))
    deadline = time.monotonic() + 60
    while not any(f["name"] == "started" for f in client.list_files(
            job["folder"], "tasks/middle/outputs")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    before = tasks_of(client.get_pipeline_job(job["id"]))
    client.close()
    fresh_engine.kill9()
    fresh_engine.port = free_port()
    fresh_engine.start()
    client = Client(fresh_engine.url, fresh_engine.token)
    try:
        job = client.wait_pipeline_job(job["id"], timeout=120)
        tasks = tasks_of(job)
        assert job["status"] == "SUCCEEDED", job
        assert tasks["first"]["session_id"] == before["first"]["session_id"]
        assert tasks["first"]["attempts"] == 1
        # The running task's session was re-adopted, not started again.
        assert tasks["middle"]["session_id"] == before["middle"]["session_id"]
        assert tasks["middle"]["attempts"] == 1
        first = read(client, job["folder"], "tasks/first/outputs/n")
        assert read(client, job["folder"], "tasks/last/outputs/n") == first
    finally:
        client.close()


def test_cache_reuses_outputs_of_an_identical_task_and_says_so(client: Any, tmp_path: Path
                                                                ) -> None:
    def spec(seed: str) -> dict[str, Any]:
        return {"name": "cached", "tasks": [
            small(name="src", command=f"echo {seed} > /pipeline/outputs/seed"),
            small(name="slow", cache=True, depends_on=["src"],
                  command="cat /pipeline/input1/seed > /pipeline/outputs/out; "
                          "echo $RANDOM$RANDOM >> /pipeline/outputs/out"),
        ]}
    first = client.run_pipeline(write(tmp_path, spec("a")), wait=True, timeout=120)
    second = client.run_pipeline(write(tmp_path, spec("a")), wait=True, timeout=120)
    third = client.run_pipeline(write(tmp_path, spec("b")), wait=True, timeout=120)
    assert [j["status"] for j in (first, second, third)] == ["SUCCEEDED"] * 3
    s1, s2, s3 = (tasks_of(j)["slow"] for j in (first, second, third))
    assert (s1["cached"], s2["cached"], s3["cached"]) == (False, True, False)
    assert s2["session_id"] is None and s2["attempts"] == 0
    assert s2["status_info"] == f"cached: outputs of job {first['id']} task slow"
    out1 = read(client, first["folder"], "tasks/slow/outputs/out")
    assert read(client, second["folder"], "tasks/slow/outputs/out") == out1
    assert read(client, third["folder"], "tasks/slow/outputs/out").startswith(b"b\n")
    assert tasks_of(second)["src"]["cached"] is False  # not opted in: it ran again
