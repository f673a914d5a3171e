"""The assistant in a real JupyterLab, through Debian's Chromium: the chat panel (from the command
palette) answers with sources as links and inserts its example into a notebook; the answer a
`%bai ask` cell prints renders with an insert button that adds the cell right below its own cell;
the notebook toolbar's "Deploy as service" button follows the notebook's `@endpoint`s.
The assistant works offline with its vendored index.
"""
from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from ui.conftest import artifact
from ui.lab import Lab
from ui.test_sidebar import open_side_panel

pytestmark = pytest.mark.timeout(600)

CELLS_JS = """() => { const m = window.jupyterapp.shell.currentWidget.content.model;
  return Array.from({length: m.cells.length}, (_, i) => m.cells.get(i).sharedModel.getSource()); }"""


def write_notebook(lab: Lab, name: str, sources: list[str]) -> None:
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None,
                     "outputs": [], "source": src} for i, src in enumerate(sources)]}
    (lab.base / "work" / name).write_text(json.dumps(nb))


def own_workspace(page: Any, lab: Lab, name: str) -> None:
    """Reload into a fresh named workspace: the notebooks other tests left open stay closed."""
    page.goto(f"{lab.url}/lab/workspaces/{name}?reset&token={lab.token}")
    page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
    page.evaluate("() => window.jupyterapp.restored.then(() => null)")


def open_chat(page: Any) -> Any:
    """From the command palette, as a user would."""
    chat = page.locator("#jp-bai-chat")
    page.keyboard.press("Control+Shift+C")
    page.locator(".lm-CommandPalette-input").fill("Ask the API assistant")
    page.locator(".lm-CommandPalette-item", has_text="Ask the API assistant").first.click()
    chat.locator('textarea[aria-label="question"]').wait_for(state="visible", timeout=30_000)
    return chat


def open_notebook(page: Any, name: str) -> Any:
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
    page.evaluate("() => window.jupyterapp.restored")
    page.evaluate("p => window.jupyterapp.commands.execute('docmanager:open', {path: p}).then(() => null)", name)
    panel = page.locator(f'#jp-main-dock-panel .jp-NotebookPanel:has(.jp-Notebook)').last
    panel.wait_for(timeout=60_000)
    page.wait_for_function(
        "p => { const w = window.jupyterapp.shell.currentWidget; "
        "return w?.context?.path === p && w.context.isReady && w.content.widgets.length > 0; }",
        arg=name, timeout=60_000)
    return panel


def test_chat_panel_answers_with_sources_and_inserts_its_example(page: Any, lab: Lab) -> None:
    page.set_viewport_size({"width": 1400, "height": 1000})
    own_workspace(page, lab, "ui-chat")
    chat = open_chat(page)
    chat.locator('textarea[aria-label="question"]').fill("How do I create a new storage folder?")
    chat.locator('textarea[aria-label="question"]').press("Enter")
    turn = chat.locator('.jp-bai-chat-turn[data-status="done"]').first
    turn.wait_for(timeout=120_000)
    expect(turn.locator(".jp-bai-chat-question")).to_have_text("How do I create a new storage folder?")
    expect(turn.locator(".jp-bai-chat-markdown")).to_contain_text("POST /bai/api/v1/vfolders")
    # Sources are links: an operation into the engine's OpenAPI document.
    link = turn.locator('a.jp-bai-source-link[data-ref="openapi.yaml#createVfolder"]')
    href = link.get_attribute("href")
    assert href and href.endswith("/bai/api/v1/openapi.yaml#createVfolder")
    doc = httpx.get(href.split("#")[0], headers={"Authorization": f"token {lab.token}"})
    assert doc.status_code == 200 and "operationId: createVfolder" in doc.text
    assert turn.locator("a.jp-bai-source-link").count() >= 3
    example = turn.locator(".jp-bai-example pre").inner_text()
    assert example.startswith("%bai vfolder create")
    chat.screenshot(path=str(artifact("assistant-chat")))
    turn.locator(".jp-bai-answer").screenshot(path=str(artifact("assistant-chat-sources")))
    # A follow-up uses the chat so far.
    chat.locator('textarea[aria-label="question"]').fill("and how do I delete it?")
    chat.locator('textarea[aria-label="question"]').press("Enter")
    expect(chat.locator('.jp-bai-chat-turn[data-status="done"]')).to_have_count(2, timeout=120_000)
    expect(chat.locator(".jp-bai-chat-turn").nth(1)).to_contain_text("DELETE /bai/api/v1/vfolders/{name}")
    # "Insert example into a new cell" goes below the active cell of the current notebook.
    write_notebook(lab, "chat-target.ipynb", ["x = 1", "y = 2"])
    open_notebook(page, "chat-target.ipynb")
    page.evaluate("() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0; }")
    turn.locator("button.jp-bai-insert").click()
    page.wait_for_function(f"() => ({CELLS_JS})().length === 3", timeout=30_000)
    assert page.evaluate(CELLS_JS) == ["x = 1", example, "y = 2"]
    # A question the engine refuses: its message as a notification, and on the turn.
    chat.locator('textarea[aria-label="question"]').fill("why " * 600)
    chat.locator('textarea[aria-label="question"]').press("Enter")
    page.locator(".Toastify__toast", has_text="question too long").wait_for(timeout=30_000)
    chat.locator('.jp-bai-chat-turn[data-status="error"] .jp-bai-error', has_text="question too long").wait_for()


def test_answer_renderer_inserts_the_example_below_its_own_cell(page: Any, lab: Lab) -> None:
    page.set_viewport_size({"width": 1400, "height": 1000})
    own_workspace(page, lab, "ui-answer")
    write_notebook(lab, "ask.ipynb", [
        "%load_ext jupyter_bai",
        "%bai ask how do I create a new storage folder?",
        "print('third cell')",
        "print('fourth cell')",
    ])
    panel = open_notebook(page, "ask.ipynb")
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel?.status === 'idle'",
        timeout=120_000)
    for index in (0, 1):
        page.evaluate(f"() => {{ window.jupyterapp.shell.currentWidget.content.activeCellIndex = {index}; }}")
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-cell').then(() => null)")
    asked = panel.locator(".jp-Notebook .jp-Cell").nth(1)
    answer = asked.locator(".jp-bai-answer-output")
    answer.wait_for(timeout=120_000)
    link = answer.locator('a.jp-bai-source-link[data-ref="openapi.yaml#createVfolder"]')
    assert (link.get_attribute("href") or "").endswith("/bai/api/v1/openapi.yaml#createVfolder")
    example = answer.locator(".jp-bai-example pre").inner_text()
    assert example.startswith("%bai vfolder create")
    answer.screenshot(path=str(artifact("assistant-answer-output")))
    # Focus elsewhere first: the cell goes below the answer's cell, not the active one.
    page.evaluate("() => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = 3; }")
    answer.locator("button.jp-bai-insert").click()
    page.wait_for_function(f"() => ({CELLS_JS})().length === 5", timeout=30_000)  # at once: no other cell ran
    sources = page.evaluate(CELLS_JS)
    assert sources[2] == example and sources[3:] == ["print('third cell')", "print('fourth cell')"]
    assert page.evaluate("() => window.jupyterapp.shell.currentWidget.content.activeCellIndex") == 2
    panel.screenshot(path=str(artifact("assistant-answer-inserted")))


def test_deploy_button_is_on_the_notebook_toolbar_and_follows_endpoints(page: Any, lab: Lab) -> None:
    own_workspace(page, lab, "ui-deploy-button")
    write_notebook(lab, "plain.ipynb", ["x = 1"])
    panel = open_notebook(page, "plain.ipynb")
    # A command button (jp-button, a web component: its state is in aria-disabled).
    button = panel.locator('.jp-Toolbar-item[data-jp-item-name="bai-deploy"] [data-command="jupyter-bai:deploy-notebook"]')
    button.wait_for(timeout=60_000)
    expect(button).to_have_attribute("aria-disabled", "true")
    page.evaluate("""() => window.jupyterapp.shell.currentWidget.content.model.cells.get(0)
        .sharedModel.setSource('from jupyter_bai.serving import endpoint\\n\\n@endpoint("/predict")\\ndef predict(text: str) -> dict:\\n    return {"n": len(text)}')""")
    expect(button).not_to_have_attribute("aria-disabled", "true", timeout=30_000)
    expect(button).to_have_text("Deploy as service")
    panel.locator(".jp-NotebookPanel-toolbar").screenshot(path=str(artifact("deploy-button")))
    # The dialog: its fields, and a name the engine would refuse is refused here, readably.
    button.click()
    dialog = page.locator(".jp-Dialog .jp-bai-deploy")
    dialog.wait_for(timeout=30_000)
    expect(dialog.locator('input[name="name"]')).to_have_value("plain")
    for field in ("replicas", "cpu", "mem", "gpu", "public"):
        dialog.locator(f'input[name="{field}"]').wait_for()
    page.locator(".jp-Dialog-content").screenshot(path=str(artifact("deploy-dialog-form")))
    dialog.locator('input[name="name"]').fill("-not a name")
    dialog.locator('input[name="name"]').press("Enter")  # submits the form; it does not close the dialog
    page.locator(".Toastify__toast", has_text="invalid service name '-not a name'").wait_for(timeout=30_000)
    assert dialog.is_visible() and dialog.get_attribute("data-phase") == "form"  # nothing was sent
    dialog.locator(".jp-bai-error", has_text="invalid service name").wait_for()
