"""The sidebar survives a restart of the server hosting the engine: it says so, then catches up."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from ui.conftest import artifact
from ui.lab import ARTIFACTS, start_lab, stop_lab
from ui.test_sidebar import open_sidebar, session_row

pytestmark = pytest.mark.timeout(600)


def test_sidebar_reconnects_after_the_engine_restarts(browser: Any, extension: Path, tmp_path: Path) -> None:
    lab = start_lab(tmp_path / "lab", extension)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(f"{lab.url}/lab?token={lab.token}")
        sidebar = open_sidebar(page)
        link = sidebar.locator(".jp-bai-link")
        link.locator("text=live (WebSocket)").wait_for(timeout=60_000)
        # JupyterLab loads its toast code on the first notification, from the server: show one
        # while it is up (the red line in the panel needs nothing from the server).
        page.evaluate("() => window.jupyterapp.commands.execute('apputils:notify', "
                      "{message: 'toasts ready', type: 'info', options: {autoClose: 1000}})")
        page.locator(".Toastify__toast", has_text="toasts ready").wait_for(timeout=30_000)
        stop_lab(lab)
        sidebar.locator(".jp-bai-link-offline").wait_for(timeout=60_000)
        # One warning that stays while the engine is away, replaced once it is back.
        warning = page.locator(".Toastify__toast", has_text="retrying")
        warning.wait_for(timeout=60_000)
        expect(warning).to_have_count(1)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        sidebar.screenshot(path=str(artifact("sidebar-offline")))
        lab = start_lab(lab.base, extension, port=lab.port, token=lab.token)
        link.locator("text=live (WebSocket)").wait_for(timeout=120_000)
        page.locator(".Toastify__toast", has_text="reachable again").wait_for(timeout=30_000)
        expect(page.locator(".Toastify__toast", has_text="retrying")).to_have_count(0)
        with lab.client() as c:
            c.create_session("local", name="after-restart", command="sleep 300", wait=True)
            session_row(page, "after-restart").locator(".jp-bai-status", has_text="RUNNING").wait_for(timeout=60_000)
            c.destroy_session("after-restart")
    finally:
        context.close()
        stop_lab(lab)
