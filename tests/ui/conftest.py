"""Fixtures of the UI tests: one JupyterLab + engine per module, one Chromium page per test."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import require
from ui.lab import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, Lab, build_labextension, start_lab, stop_lab


@pytest.fixture(scope="session")
def extension(bwrap: str) -> Path:
    """The built sidebar (rebuilt if its sources changed); Chromium must be there to test it."""
    require(CHROMIUM.exists(), f"Chromium ({CHROMIUM}; make test installs Debian's chromium)")
    return build_labextension()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, extension: Path) -> Iterator[Lab]:
    server = start_lab(tmp_path_factory.mktemp("lab"), extension)
    try:
        yield server
    finally:
        stop_lab(server)


@pytest.fixture(scope="session")
def browser(extension: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser: Any, lab: Lab, request: pytest.FixtureRequest) -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(f"{lab.url}/lab?token={lab.token}")
    pg.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
    try:
        yield pg
    finally:
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            pg.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"))
        context.close()
    assert not [e for e in errors if "jupyter-bai" in e or "bai" in e.lower()], errors


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]


def artifact(name: str) -> Path:
    return ARTIFACTS / f"{name}.png"
