"""Front end of the API assistant: ``%bai ask`` output and the ``%%bai chat`` cell.

Answers stream into the cell (a display that is updated as pieces arrive), then show their
sources with scores and the best example as one :data:`ANSWER_MIME` output, which the
JupyterLab extension renders with an "Insert example into a new cell" button. Everything comes from the
engine through :class:`~jupyter_bai.client.Client`; nothing here searches or ranks.
"""
from __future__ import annotations

import html
from typing import Any

from jupyter_bai.render import Rendered

EXAMPLE_ORDER = ("magic", "client", "http")


def sources_view(sources: list[dict[str, Any]]) -> Rendered:
    """Sources with kind, reference, operation and score, in rank order."""
    if not sources:
        return Rendered("(no sources)", "<p><i>no sources</i></p>", sources)
    lines, rows = [], []
    for i, s in enumerate(sources, 1):
        op = f"{s.get('method')} {s.get('path')}" if s.get("method") else ""
        lines.append(f"[{i}] {s['title']} ({s['kind']}, {s['ref']}) score {s['score']:.3g}")
        rows.append(f"<tr><td>{i}</td><td>{html.escape(s['title'])}</td><td>{html.escape(s['kind'])}</td>"
                    f"<td><code>{html.escape(op)}</code></td><td><code>{html.escape(str(s['ref']))}</code></td>"
                    f"<td>{s['score']:.3g}</td></tr>")
    table = ("<table><thead><tr><th>#</th><th>source</th><th>kind</th><th>operation</th><th>ref</th>"
             f"<th>score</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return Rendered("Sources:\n" + "\n".join(lines), f"<details open><summary>Sources</summary>{table}</details>",
                    sources)


def sources_listing(data: dict[str, Any]) -> Rendered:
    """``--sources``: what is indexed."""
    lines = [f"{s['kind']:8} {s['docs']:6} docs  {s['source']}" for s in data.get("sources", [])]
    extra = f"\nretrieval: {data.get('mode')} ({data.get('model_id')})"
    if data.get("refused"):
        extra += f"\nnote: {data['refused']}"
    rows = "".join(f"<tr><td>{html.escape(s['source'])}</td><td>{s['kind']}</td><td>{s['docs']}</td></tr>"
                   for s in data.get("sources", []))
    return Rendered("\n".join(lines) + extra,
                    f"<table><tr><th>source</th><th>kind</th><th>docs</th></tr>{rows}</table>"
                    f"<p>{html.escape(extra.strip())}</p>", data)


def best_example(result: dict[str, Any]) -> str | None:
    """The code the insert button puts in a new cell: the ``%bai`` line, else the client call."""
    examples = result.get("examples") or {}
    for key in ("magic", "client"):
        if examples.get(key):
            return str(examples[key])
    return None


def _markdown(text: str) -> Any:
    from IPython.display import Markdown

    return Markdown(text)


class StreamingAnswer:
    """A cell display that grows as answer pieces arrive."""

    def __init__(self) -> None:
        from IPython.display import display

        self.text = ""
        self.handle = display(_markdown("…"), display_id=True)

    def __call__(self, piece: str) -> None:
        self.text += piece
        if self.handle is not None:
            self.handle.update(_markdown(self.text))

    def finish(self, answer: str) -> None:
        if self.handle is not None:
            self.handle.update(_markdown(answer))


#: The MIME type of an answer's sources and example; JupyterLab renders it with the extension's
#: renderer (links, and an insert button that adds the cell below at once). Other front ends
#: show the HTML or text that comes with it.
ANSWER_MIME = "application/vnd.jupyter-bai.answer+json"


def answer_bundle(result: dict[str, Any], question: str | None = None) -> dict[str, Any]:
    """The display bundle of a finished answer: sources, examples and the code to insert.

    The insert action lives in the front end (the MIME renderer), not in the kernel: a kernel
    can only queue ``set_next_input``, which JupyterLab applies after the *next* cell runs.
    """
    if hasattr(result, "model_dump"):  # the client's AssistantAnswer: display data must be plain JSON
        result = result.model_dump(mode="json")
    code = best_example(result)
    sources = result.get("sources") or []
    data = {"question": question, "answer": result.get("answer", ""), "sources": sources,
            "examples": result.get("examples") or {}, "example": code,
            "abstained": bool(result.get("abstained")), "mode": result.get("mode")}
    listed = sources_view(sources) if sources else None
    text = listed.text if listed else ""
    markup = listed.html if listed else ""
    if code:
        text += f"\n\nExample:\n{code}"
        markup += f"<p>Example:</p><pre>{html.escape(code)}</pre>"
    return {ANSWER_MIME: data, "text/html": markup, "text/plain": text.strip() or "(no sources)"}


def chat_turn_html(question: str, result: dict[str, Any], turn: int) -> str:
    note = f"<p><i>{html.escape(result['note'])}</i></p>" if result.get("note") else ""
    return (f"<div class='bai-chat'><p><b>You ({turn}):</b> {html.escape(question)}</p>"
            f"<p><b>Assistant</b> <small>({html.escape(str(result.get('mode')))})</small></p>{note}</div>")


def show_answer(result: dict[str, Any], streamed: StreamingAnswer | None,
                question: str | None = None, turn: int | None = None) -> dict[str, Any]:
    """Display the finished answer (if not streamed), then its sources and example as one
    :data:`ANSWER_MIME` bundle; returns that bundle."""
    from IPython.display import HTML, display

    if question is not None and turn is not None:
        display(HTML(chat_turn_html(question, result, turn)))
    if streamed is not None:
        streamed.finish(result["answer"])
    else:
        display(_markdown(result["answer"]))
    bundle = answer_bundle(result, question)
    if result.get("sources") or bundle[ANSWER_MIME]["example"]:
        display(bundle, raw=True)
    return bundle
