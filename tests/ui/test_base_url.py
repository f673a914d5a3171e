"""Under a base URL (JupyterHub, a proxy) the sidebar reaches the engine through JupyterLab's server settings."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from ui.conftest import artifact
from ui.lab import ARTIFACTS, Lab, start_lab, stop_lab
from ui.test_sidebar import open_sidebar

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def prefixed_lab(tmp_path_factory: pytest.TempPathFactory, extension: Path) -> Iterator[Lab]:
    server = start_lab(tmp_path_factory.mktemp("prefixed"), extension, base_url="/user/ada/")
    try:
        yield server
    finally:
        stop_lab(server)


def test_sidebar_is_live_under_a_base_url(browser: Any, prefixed_lab: Lab, tmp_path: Path) -> None:
    lab = prefixed_lab
    assert lab.url.endswith("/user/ada")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(f"{lab.url}/lab?token={lab.token}")
        sidebar = open_sidebar(page)
        sidebar.locator('.jp-bai-bar[data-label="GPU 1"]').wait_for(timeout=60_000)
        sidebar.locator(".jp-bai-link", has_text="live (WebSocket)").wait_for(timeout=60_000)
        with lab.client() as c:
            c.create_vfolder("under-prefix")
            sidebar.locator('li.jp-bai-folder[data-folder="under-prefix"]').wait_for(timeout=60_000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        sidebar.screenshot(path=str(artifact("sidebar-base-url")))
    finally:
        context.close()
