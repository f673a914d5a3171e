"""The sidebar's Pipelines and Services sections in a real JupyterLab, through Debian's Chromium.

A pipeline started from Python shows as a DAG whose task colours follow the job live; cancel and
rerun act on the engine. A model service (the `custom` variant, as tests/test_services.py sets
one up) shows its routes' health; its endpoint and a fresh token are copied to the clipboard and
work against the real endpoint proxy; scaling adds a route.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from ui.conftest import artifact
from ui.lab import Lab
from ui.test_sidebar import open_sidebar

pytestmark = pytest.mark.timeout(600)
SIDEBAR = "#jp-bai-sidebar"


def focus_section(page: Any, section: str) -> Any:
    """Collapse the other sections so this one has the panel's height (for whole screenshots)."""
    expanded = page.eval_on_selector_all(
        f'{SIDEBAR} [aria-controls^="jp-bai-section-"][aria-expanded="true"]',
        "titles => titles.map(t => t.getAttribute('aria-controls'))")
    for controls in expanded:
        if controls != f"jp-bai-section-{section}":
            page.locator(f'{SIDEBAR} [aria-controls="{controls}"]').click()
    return page.locator(f"#jp-bai-section-{section}")


def small(**task: Any) -> dict[str, Any]:
    return {"resources": {"cpu": "0.25", "mem": "128m"}, **task}


def wait_job(client: Any, job: str, statuses: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cur = client.get_pipeline_job(job)
        if cur["status"] in statuses:
            return cur
        time.sleep(0.1)
    raise AssertionError(f"job {job} is {cur['status']}, not one of {statuses}")


def test_pipeline_dag_and_task_status_update_live(page: Any, lab: Lab) -> None:
    page.set_viewport_size({"width": 1280, "height": 1100})
    sidebar = open_sidebar(page)
    pipelines = sidebar.locator("#jp-bai-section-pipelines")
    spec = {"name": "ui-dag", "tasks": [
        small(name="prepare", command="echo prepared; sleep 3; echo 1 > /pipeline/outputs/n"),
        small(name="train-a", command="echo training-a; sleep 1", depends_on=["prepare"]),
        small(name="train-b", command="echo training-b; sleep 1", depends_on=["prepare"]),
        small(name="report", command="echo report-done", depends_on=["train-a", "train-b"]),
    ]}
    with lab.client() as c:
        job = c.run_pipeline(spec)
        row = pipelines.locator(f'li.jp-bai-job[data-job="{job["id"]}"]')
        dag = row.locator(f'svg.jp-bai-dag[data-job="{job["id"]}"]')

        def node(name: str) -> Any:
            return dag.locator(f'g.jp-bai-dag-node[data-task="{name}"]')

        # The newest job opens with its DAG: four tasks, four edges, prepare above the rest.
        node("prepare").wait_for(timeout=60_000)
        expect(dag.locator("g.jp-bai-dag-node")).to_have_count(4)
        expect(dag.locator("path.jp-bai-dag-edge")).to_have_count(4)
        y = {n: node(n).bounding_box()["y"] for n in ("prepare", "train-a", "train-b", "report")}
        assert y["prepare"] < y["train-a"] == y["train-b"] < y["report"]
        # Live: prepare runs while the others wait, then everything succeeds, without a reload.
        dag.locator('g[data-task="prepare"][data-status="RUNNING"]').wait_for(timeout=60_000)
        assert node("report").get_attribute("data-status") == "WAITING"
        assert "jp-bai-dag-busy" in (node("report").get_attribute("class") or "")
        row.screenshot(path=str(artifact("pipeline-running")))
        dag.locator('g[data-task="report"][data-status="SUCCEEDED"]').wait_for(timeout=120_000)
        row.locator(".jp-bai-status", has_text="SUCCEEDED").wait_for(timeout=60_000)
        assert wait_job(c, job["id"], {"SUCCEEDED"})["status"] == "SUCCEEDED"
        for name in ("prepare", "train-a", "train-b", "report"):
            assert "jp-bai-dag-ok" in (node(name).get_attribute("class") or "")
        focus_section(page, "pipelines").screenshot(path=str(artifact("pipelines")))
        # A task's logs open in the main area.
        node("train-b").click()
        log = page.locator("#jp-main-dock-panel .jp-bai-log")
        log.locator("pre", has_text="training-b").wait_for(timeout=60_000)


def test_cancel_and_rerun_a_job_from_the_sidebar(page: Any, lab: Lab) -> None:
    sidebar = open_sidebar(page)
    pipelines = sidebar.locator("#jp-bai-section-pipelines")
    spec = {"name": "ui-cancel", "tasks": [
        small(name="first", command="echo ok > /pipeline/outputs/x"),
        small(name="slow", command="sleep 300", depends_on=["first"]),
    ]}
    with lab.client() as c:
        job = c.run_pipeline(spec)
        row = pipelines.locator(f'li.jp-bai-job[data-job="{job["id"]}"]')
        row.locator('g[data-task="slow"][data-status="RUNNING"]').wait_for(timeout=60_000)
        row.locator('button[aria-label="cancel"]').click()
        assert wait_job(c, job["id"], {"CANCELLED"})["status"] == "CANCELLED"
        row.locator('g[data-task="slow"][data-status="CANCELLED"]').wait_for(timeout=60_000)
        assert row.locator('g[data-task="first"]').get_attribute("data-status") == "SUCCEEDED"
        # Rerun: the cancelled task runs again, the one that succeeded keeps its result.
        row.locator('button[aria-label="rerun"]').click()
        row.locator('g[data-task="slow"][data-status="RUNNING"]').wait_for(timeout=60_000)
        tasks = {t["name"]: t for t in c.get_pipeline_job(job["id"])["tasks"]}
        assert tasks["first"]["attempts"] == 1 and tasks["slow"]["status"] == "RUNNING"
        c.cancel_pipeline_job(job["id"])
        wait_job(c, job["id"], {"CANCELLED"})


MODEL_DEFINITION = """\
models:
  - name: ui-model
    model_path: /models
    service:
      start_command: ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1",
                      "--directory", "/models"]
      port: 8000
      health_check: {path: /model-definition.yaml, interval: 1, max_retries: 3, initial_delay: 30}
"""


def first_answer(url: str, timeout: float = 60) -> httpx.Response:
    """GET once the endpoint proxy (its own process, started with the first service) listens."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url)
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def routes_in(card: Any, status: str) -> Any:
    return card.locator(f'li.jp-bai-route[data-status="{status}"]')


def test_service_routes_health_copy_endpoint_token_and_scale(page: Any, lab: Lab, tmp_path: Path) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sidebar = open_sidebar(page)
    services = sidebar.locator("#jp-bai-section-services")
    definition = tmp_path / "model-definition.yaml"
    definition.write_text(MODEL_DEFINITION)
    with lab.client() as c:
        c.create_vfolder("ui-model", usage_mode="model")
        c.upload("ui-model", [definition])
        info = c.create_service("local", "ui-model", 1, name="ui-svc", resources={"cpu": "0.25", "mem": "256m"})
        try:
            card = services.locator('li.jp-bai-service[data-service="ui-svc"]')
            routes_in(card, "HEALTHY").wait_for(timeout=120_000)
            card.locator(".jp-bai-status", has_text="HEALTHY").first.wait_for()
            endpoint = c.get_service("ui-svc")["endpoint"]
            expect(card.locator("a.jp-bai-endpoint-url")).to_have_attribute("href", endpoint)
            card.locator('button[aria-label="copy endpoint"]').click()
            page.locator(".Toastify__toast", has_text="copied the endpoint URL").wait_for(timeout=30_000)
            assert page.evaluate("() => navigator.clipboard.readText()") == endpoint
            # The endpoint is private: a generated token is shown, copied, and lets a request through.
            assert first_answer(endpoint + "model-definition.yaml").status_code == 401
            card.locator('button[aria-label="generate token"]').click()
            token_box = card.locator('input[aria-label="token"]')
            token_box.wait_for(timeout=30_000)
            token = token_box.input_value()
            assert len(token) > 20
            page.wait_for_function("t => navigator.clipboard.readText().then(v => v === t)", arg=token, timeout=30_000)
            r = httpx.get(endpoint + "model-definition.yaml", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200 and "ui-model" in r.text
            focus_section(page, "services").screenshot(path=str(artifact("services")))
            # Scale to two routes from the sidebar: the engine adds one, it becomes healthy live.
            card.locator('input[aria-label="replicas"]').fill("2")
            card.locator('button[aria-label="scale"]').click()
            expect(routes_in(card, "HEALTHY")).to_have_count(2, timeout=120_000)
            assert c.get_service("ui-svc")["replicas"] == 2
            card.locator(".jp-bai-row-detail", has_text="2/2 healthy").wait_for()
            services.screenshot(path=str(artifact("services-scaled")))
        finally:
            c.delete_service(info["name"])
        card.wait_for(state="detached", timeout=120_000)
