"""The sidebar in a real JupyterLab, driven through Debian's Chromium.

Sessions and folders are made from Python (the same client notebooks use) and must show up,
change and end in the sidebar without a reload; actions taken in the sidebar must be visible
from Python. Screenshots of each section land in tests/ui/artifacts/.
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

pytestmark = pytest.mark.timeout(600)
SIDEBAR = "#jp-bai-sidebar"


def open_side_panel(page: Any, widget_id: str) -> Any:
    tab = page.locator(f'li[data-id="{widget_id}"]')
    tab.wait_for(timeout=60_000)
    # Once the saved layout is restored (it may open or close side panels), click the tab.
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
    page.evaluate("() => window.jupyterapp.restored")
    panel = page.locator(f"#{widget_id}")
    if not panel.is_visible():
        tab.click()
    panel.wait_for(state="visible")
    return panel


def open_sidebar(page: Any) -> Any:
    return open_side_panel(page, "jp-bai-sidebar")


def session_row(page: Any, name: str) -> Any:
    return page.locator(f'{SIDEBAR} li.jp-bai-session[data-session="{name}"]')


def wait_status(client: Any, name: str, status: str, timeout: float = 60) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = client.get_session(name)
        if s["status"] == status:
            return s
        time.sleep(0.1)
    raise AssertionError(f"{name} is {s['status']}, not {status}")


def test_resources_section_shows_cpu_memory_and_each_gpu(page: Any, lab: Lab) -> None:
    sidebar = open_sidebar(page)
    sidebar.locator(".jp-bai-link", has_text="live (WebSocket)").wait_for(timeout=60_000)
    resources = sidebar.locator("#jp-bai-section-resources")
    for label in ("CPU", "Memory", "GPU 0", "GPU 1"):
        resources.locator(f'.jp-bai-bar[data-label="{label}"]').wait_for()
    # Live use from the engine's metrics channel: host CPU and memory; the fake GPUs have none.
    for label in ("CPU use", "Mem use"):
        resources.locator(f'.jp-bai-bar[data-label="{label}"] .jp-bai-bar-live').wait_for(timeout=60_000)
    expect(resources.locator('.jp-bai-gpu[data-gpu="0"] .jp-bai-note')).to_have_text("no live use (fake GPU)")
    expect(resources.locator(".jp-bai-gpu .jp-bai-bar-live")).to_have_count(0)
    latest = httpx.get(f"{lab.url}/bai/api/v1/metrics", headers={"Authorization": f"token {lab.token}"}).json()["latest"]
    expect(resources.locator('.jp-bai-bar[data-label="CPU use"] .jp-bai-bar-text')).to_contain_text(
        f"· {latest['cpu']['count']} cores")
    with lab.client() as c:
        c.create_session("local", name="ui-gpu", command="sleep 300", resources={"cuda.shares": "0.5"}, wait=True)
        try:
            # The fGPU allocation appears without a reload (an event, then a REST read of /resources).
            resources.locator('.jp-bai-bar[data-label="GPU 0"] .jp-bai-bar-text', has_text="0.5 / 1").wait_for()
            assert resources.locator('.jp-bai-bar[data-label="GPU 0"] [role="meter"]').get_attribute("aria-valuenow") == "50"
            sidebar.locator("#jp-bai-section-resources").screenshot(path=str(artifact("resources")))
        finally:
            c.destroy_session("ui-gpu")
    resources.locator('.jp-bai-bar[data-label="GPU 0"] .jp-bai-bar-text', has_text="0 / 1").wait_for()
    assert "live (WebSocket)" in sidebar.locator(".jp-bai-link").inner_text()


def test_session_from_python_is_listed_and_its_status_updates_live(page: Any, lab: Lab) -> None:
    sidebar = open_sidebar(page)
    sidebar.locator("#jp-bai-section-sessions label.jp-bai-toggle input").check()
    with lab.client() as c:
        c.create_session("local", name="ui-live", command="sleep 300", resources={"cpu": "1", "mem": "256m"})
        row = session_row(page, "ui-live")
        row.locator(".jp-bai-status", has_text="RUNNING").wait_for(timeout=60_000)
        assert "cpu 1 · 256 MiB" in row.inner_text()
        # The session's own use, from the metrics channel, once the collector has it.
        row.locator(".jp-bai-live-use").wait_for(timeout=60_000)
        sidebar.locator("#jp-bai-section-sessions").screenshot(path=str(artifact("sessions")))
        c.destroy_session("ui-live")
        row.locator(".jp-bai-status", has_text="TERMINATED").wait_for(timeout=60_000)
        assert row.get_attribute("data-status") == "TERMINATED"


def test_terminating_from_the_sidebar_ends_the_session(page: Any, lab: Lab) -> None:
    sidebar = open_sidebar(page)
    with lab.client() as c:
        c.create_session("local", name="ui-term", command="sleep 300", wait=True)
        row = session_row(page, "ui-term")
        row.locator(".jp-bai-status", has_text="RUNNING").wait_for(timeout=60_000)
        row.locator('button[aria-label="terminate"]').click()
        assert wait_status(c, "ui-term", "TERMINATED")["status"] == "TERMINATED"
        # ended sessions leave the (active) list
        row.wait_for(state="detached", timeout=60_000)
    assert sidebar.is_visible()


def test_session_logs_open_in_the_main_area(page: Any, lab: Lab) -> None:
    open_sidebar(page)
    with lab.client() as c:
        c.create_session("local", name="ui-logs", command="echo hello-from-the-log; sleep 300", wait=True)
        try:
            session_row(page, "ui-logs").locator('button[aria-label="logs"]').click()
            log = page.locator("#jp-main-dock-panel .jp-bai-log")
            log.locator("pre", has_text="hello-from-the-log").wait_for(timeout=60_000)
            page.locator("#jp-main-dock-panel").screenshot(path=str(artifact("session-logs")))
        finally:
            c.destroy_session("ui-logs")


def test_create_session_from_the_form_and_errors_are_notified(page: Any, lab: Lab) -> None:
    page.set_viewport_size({"width": 1280, "height": 1200})  # room for the whole form in the screenshot
    sidebar = open_sidebar(page)
    sessions = sidebar.locator("#jp-bai-section-sessions")
    sessions.locator('button[aria-label="new session"]').click()
    form = sessions.locator('form[aria-label="new session"]')
    form.locator('input[name="name"]').fill("ui-form")
    form.locator('input[name="command"]').fill("sleep 300")
    form.locator('input[name="cpu"]').fill("1")
    form.locator('input[name="mem"]').fill("128m")
    form.screenshot(path=str(artifact("session-create-form")))
    form.locator('button[type="submit"]').click()
    with lab.client() as c:
        assert wait_status(c, "ui-form", "RUNNING")["resources"]["mem"] == str(128 * 2**20)
        session_row(page, "ui-form").locator(".jp-bai-status", has_text="RUNNING").wait_for(timeout=60_000)
        # A request the engine refuses: its message shows as a notification, the form stays.
        sessions.locator('button[aria-label="new session"]').click()
        form.locator('input[name="cpu"]').fill("999")
        form.locator('button[type="submit"]').click()
        toast = page.locator(".Toastify__toast", has_text="larger than this whole node")
        toast.wait_for(timeout=30_000)
        expect(toast).to_be_in_viewport()
        assert form.is_visible()
        toast.screenshot(path=str(artifact("error-notification")))
        c.destroy_session("ui-form")


def test_folders_list_browse_upload_by_drop_and_download(page: Any, lab: Lab, tmp_path: Path) -> None:
    sidebar = open_sidebar(page)
    folders = sidebar.locator("#jp-bai-section-folders")
    with lab.client() as c:
        c.create_vfolder("ui-data")
        folders.locator('li.jp-bai-folder[data-folder="ui-data"]').wait_for(timeout=60_000)
        src = tmp_path / "from-python.txt"
        src.write_text("uploaded from python\n")
        c.upload("ui-data", [src])
        folders.locator('li.jp-bai-folder[data-folder="ui-data"] button').click()
        browser_view = folders.locator('.jp-bai-browser[data-folder="ui-data"]')
        browser_view.locator('li.jp-bai-file[data-path="from-python.txt"]').wait_for()
        # Drag and drop a file from the desktop (a DataTransfer with a File, as a browser makes one).
        transfer = page.evaluate_handle(
            """() => { const dt = new DataTransfer();
                dt.items.add(new File(['dropped in the browser\\n'], 'dropped.txt', {type: 'text/plain'}));
                return dt; }"""
        )
        browser_view.dispatch_event("dragover", {"dataTransfer": transfer})
        browser_view.dispatch_event("drop", {"dataTransfer": transfer})
        browser_view.locator('li.jp-bai-file[data-path="dropped.txt"]').wait_for(timeout=30_000)
        names = {f["name"] for f in c.list_files("ui-data")}
        assert {"from-python.txt", "dropped.txt"} <= names
        # A file uploaded from Python while the folder is open appears too.
        other = tmp_path / "later.txt"
        other.write_text("later\n")
        c.upload("ui-data", [other])
        browser_view.locator('li.jp-bai-file[data-path="later.txt"]').wait_for(timeout=30_000)
        folders.screenshot(path=str(artifact("folders-browse")))
        with page.expect_download() as info:
            browser_view.locator('li.jp-bai-file[data-path="dropped.txt"] button[aria-label="download"]').click()
        saved = tmp_path / "downloaded.txt"
        info.value.save_as(saved)
        assert saved.read_text() == "dropped in the browser\n"
        # Back to the list: create a folder from the sidebar.
        browser_view.get_by_text("← folders").click()
        folders.locator('input[placeholder="new folder name"]').fill("ui-made")
        folders.locator('button[aria-label="create folder"]').click()
        folders.locator('li.jp-bai-folder[data-folder="ui-made"]').wait_for(timeout=30_000)
        assert "ui-made" in {f["name"] for f in c.list_vfolders()}
        folders.screenshot(path=str(artifact("folders")))


def test_compute_sessions_are_listed_in_the_running_panel(page: Any, lab: Lab) -> None:
    with lab.client() as c:
        c.create_session("local", name="ui-running", command="sleep 300", wait=True)
        try:
            panel = open_side_panel(page, "jp-running-sessions")
            panel.locator(".jp-bai-running-item", has_text="ui-running").wait_for(timeout=60_000)
            panel.screenshot(path=str(artifact("running-panel")))
        finally:
            c.destroy_session("ui-running")
        panel.locator(".jp-bai-running-item", has_text="ui-running").wait_for(state="detached", timeout=60_000)


def test_light_and_dark_theme_screenshots_with_data(page: Any, lab: Lab) -> None:
    sidebar = open_sidebar(page)
    with lab.client() as c:
        c.create_session("local", name="ui-theme", command="sleep 300", resources={"cuda.shares": "0.25"}, wait=True)
        if "ui-theme" not in {f["name"] for f in c.list_vfolders()}:
            c.create_vfolder("ui-theme")
        try:
            session_row(page, "ui-theme").wait_for(timeout=60_000)
            sidebar.locator('li.jp-bai-folder[data-folder="ui-theme"]').wait_for(timeout=60_000)
            _theme_screenshots(page, sidebar)
        finally:
            c.destroy_session("ui-theme")


def _theme_screenshots(page: Any, sidebar: Any) -> None:
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    page.locator("body[data-jp-theme-light='false']").wait_for(state="attached", timeout=30_000)
    sidebar.locator('.jp-bai-bar[data-label="CPU"]').wait_for()
    sidebar.screenshot(path=str(artifact("sidebar-dark")))
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})")
    page.locator("body[data-jp-theme-light='true']").wait_for(state="attached", timeout=30_000)
    sidebar.screenshot(path=str(artifact("sidebar-light")))


def _blocked_context(browser: Any, lab: Lab, block_events: bool) -> Any:
    """A page whose WebSocket upgrades to the engine are refused (a proxy that blocks them),
    and optionally its event stream too."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.route_web_socket("**/bai/api/v1/ws*", lambda ws: ws.close(code=1008, reason="blocked"))
    if block_events:
        context.route("**/bai/api/v1/events*", lambda route: route.abort())
    return context


@pytest.mark.parametrize(("block_events", "link_text"), [
    (False, "live (event stream)"),
    (True, "polling (live updates unavailable)"),
])
def test_sidebar_falls_back_when_websockets_are_blocked(
    browser: Any, lab: Lab, block_events: bool, link_text: str
) -> None:
    context = _blocked_context(browser, lab, block_events)
    try:
        page = context.new_page()
        page.goto(f"{lab.url}/lab?token={lab.token}")
        sidebar = open_sidebar(page)
        sidebar.locator(".jp-bai-link", has_text=link_text).wait_for(timeout=60_000)
        name = "ui-sse" if not block_events else "ui-poll"
        with lab.client() as c:
            c.create_session("local", name=name, command="sleep 300", wait=True)
            try:
                session_row(page, name).locator(".jp-bai-status", has_text="RUNNING").wait_for(timeout=60_000)
            finally:
                c.destroy_session(name)
            session_row(page, name).wait_for(state="detached", timeout=60_000)
        # Live bars come only over the WebSocket: without it, allocation bars and no stale numbers.
        expect(sidebar.locator(".jp-bai-bar-live")).to_have_count(0)
        assert link_text in sidebar.locator(".jp-bai-link").inner_text()
        sidebar.screenshot(path=str(artifact("sidebar-sse" if not block_events else "sidebar-poll")))
    finally:
        context.close()
