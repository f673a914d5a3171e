"""The sidebar's engine header against a real Backend.AI halfstack, in a real JupyterLab.

A second engine (the halfstack) is added the way a user does it (`jupyter bai engine add`, the
secret on stdin), appears in the header's menu, becomes the default from the sidebar, and the
Resources and Sessions sections then show the cluster's capacity, presets and sessions; a cluster
whose keys are refused is a notification and a one-line note; switching back shows the local
engine again. The lab's engine list is private to this module.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from backendai_cluster import IMAGE, Cluster, destroy_if_there
from private_engines import isolate_engines
from jupyter_bai.client import Client, engines
from ui.conftest import artifact
from ui.lab import Lab, start_lab, stop_lab
from ui.test_sidebar import open_sidebar

pytestmark = pytest.mark.timeout(900)
SIDEBAR = "#jp-bai-sidebar"


@pytest.fixture(scope="module")
def lab_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private engine list and Jupyter config dir for the lab and the CLI of this module."""
    cfg = tmp_path_factory.mktemp("engines-ui-cfg")
    with pytest.MonkeyPatch.context() as mp:
        yield isolate_engines(mp, cfg)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, extension: Path, lab_env: dict[str, str]) -> Iterator[Lab]:
    server = start_lab(tmp_path_factory.mktemp("lab-engines"), extension)
    try:
        yield server
    finally:
        stop_lab(server)


def cli(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jupyter_bai.cli", *argv], input=stdin,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))


def header(page: Any) -> Any:
    return page.locator(f"{SIDEBAR} .jp-bai-engine")


def refresh(page: Any) -> None:
    page.locator(f'{SIDEBAR} jp-button[title="Refresh"], {SIDEBAR} button[title="Refresh"]').first.click()


def switch(page: Any, name: str) -> None:
    menu = page.locator(f'{SIDEBAR} select[aria-label="default engine"]')
    menu.locator(f'option[value="{name}"]').wait_for(state="attached", timeout=30_000)
    menu.select_option(name)
    page.locator(f'{SIDEBAR} .jp-bai-engine[data-engine="{name}"]').wait_for(timeout=30_000)


def test_add_switch_to_the_cluster_see_it_and_switch_back(backendai: Cluster, page: Any, lab: Lab,
                                                          lab_env: dict[str, str]) -> None:
    tag = uuid.uuid4().hex[:6]
    name, bad, sess = f"ui-lab-{tag}", f"ui-bad-{tag}", f"ui-eng-{tag}"
    store = Path(lab_env[engines.ENV_STORE])
    sidebar = open_sidebar(page)
    head = header(page)
    page.locator(f'{SIDEBAR} .jp-bai-engine[data-engine="local"]').wait_for(timeout=60_000)
    expect(head.locator(".jp-bai-engine-host")).to_have_text("this server")
    expect(head).to_contain_text("per kernel")

    out = cli("engine", "add", name, "--backendai", backendai.endpoint, "--access-key",
              backendai.access_key, stdin=backendai.secret_key + "\n")
    assert out.returncode == 0, out.stderr
    out = cli("engine", "add", bad, "--backendai", backendai.endpoint, "--access-key",
              backendai.access_key, "--no-check", stdin="not-the-secret\n")
    assert out.returncode == 0, out.stderr
    cluster = Client(driver=engines.make_driver(engines.get_engine(name)))
    try:
        capacity = cluster.resources()["capacity"]
        cluster.create_session(IMAGE, name=sess, resources=["cpu=1", "mem=512m"])
        refresh(page)
        switch(page, name)
        assert json.loads(store.read_text())["active"] == name
        expect(head.locator(".jp-bai-engine-name")).to_have_text(name)
        expect(head.locator(".jp-bai-engine-kind")).to_have_text("Backend.AI cluster")
        expect(head.locator(".jp-bai-engine-host")).to_have_text(backendai.endpoint.split("//", 1)[1])
        expect(head).to_contain_text("Folders, Pipelines, Services: the local engine.")
        page.locator(".Toastify__toast", has_text=f"default engine: {name}").wait_for(timeout=30_000)

        resources = sidebar.locator("#jp-bai-section-resources")
        expect(resources.locator(".jp-bai-engine-of")).to_contain_text(f"cluster {name}")
        cpu = resources.locator('.jp-bai-bar[data-label="CPU"] .jp-bai-bar-text')
        expect(cpu).to_contain_text(f"/ {capacity['cpu']} cores", timeout=30_000)
        expect(resources.locator('[data-preset="cpu01-small"]')).to_be_visible()
        expect(resources.locator('.jp-bai-bar[data-label="CPU use"]')).to_have_count(0)  # no local metrics
        sessions = sidebar.locator("#jp-bai-section-sessions")
        expect(sessions).to_contain_text(f"on cluster {name} (read-only here)")
        row = sessions.locator(f'li.jp-bai-session[data-session="{sess}"]')
        row.wait_for(timeout=60_000)
        expect(row.locator(".jp-bai-row-actions")).to_have_count(0)
        sidebar.screenshot(path=str(artifact("engine-cluster")))

        # keys the cluster refuses: a notification and a one-line note, and the menu still works
        switch(page, bad)
        page.locator(".Toastify__toast", has_text="access key or secret key rejected").wait_for(timeout=60_000)
        expect(head.locator(".jp-bai-engine-problem")).to_contain_text(f"engine {bad}: access key or secret key rejected")
        assert backendai.secret_key not in sidebar.inner_text()
        head.screenshot(path=str(artifact("engine-keys-rejected")))

        switch(page, "local")
        assert "active" not in json.loads(store.read_text())
        expect(head.locator(".jp-bai-engine-host")).to_have_text("this server")
        resources.locator('.jp-bai-bar[data-label="GPU 0"]').wait_for(timeout=30_000)  # the lab's fake GPUs
        expect(resources.locator(".jp-bai-engine-of")).to_have_count(0)
        expect(sessions.locator(f'li.jp-bai-session[data-session="{sess}"]')).to_have_count(0)
        expect(head.locator(".jp-bai-engine-problem")).to_have_count(0)
    finally:
        destroy_if_there(cluster, sess)
        cluster.close()
        cli("engine", "rm", name)
        cli("engine", "rm", bad)
