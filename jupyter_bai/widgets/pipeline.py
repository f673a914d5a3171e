"""A live pipeline job view: the DAG drawn with its edges and one row per task (status,
duration, attempts), kept current from the event stream after the cell has returned."""
from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from urllib.parse import quote, urlsplit

from ..render import STATUS_COLOURS, Html, html_table, status_badge

log = logging.getLogger(__name__)
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
BOX_W, BOX_H, GAP_X, GAP_Y = 150, 30, 50, 14


def _layers(tasks: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Each task's depth: one more than its deepest dependency (the API lists tasks so that
    a dependency may come later; iterate until stable)."""
    depth = {t["name"]: 0 for t in tasks}
    for _ in range(len(tasks)):
        changed = False
        for t in tasks:
            d = max((depth[p] + 1 for p in t.get("depends_on") or [] if p in depth), default=0)
            if d != depth[t["name"]]:
                depth[t["name"]], changed = d, True
        if not changed:
            break
    return depth


def dag_svg(job: Mapping[str, Any]) -> str:
    """The job's DAG as SVG: a box per task coloured by status, an arrow per dependency."""
    tasks = list(job.get("tasks") or [])
    depth = _layers(tasks)
    rows: dict[int, int] = {}
    pos: dict[str, tuple[int, int]] = {}
    for t in tasks:
        d = depth[t["name"]]
        pos[t["name"]] = (d * (BOX_W + GAP_X) + 4, rows.get(d, 0) * (BOX_H + GAP_Y) + 4)
        rows[d] = rows.get(d, 0) + 1
    width = (max(depth.values(), default=0) + 1) * (BOX_W + GAP_X)
    height = max(rows.values(), default=1) * (BOX_H + GAP_Y) + 8
    parts = [f'<svg class="bai-dag" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}"><defs><marker id="bai-arrow" markerWidth="8" markerHeight="8" '
             'refX="8" refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#757575"/>'
             '</marker></defs>']
    for t in tasks:
        x2, y2 = pos[t["name"]]
        for dep in t.get("depends_on") or []:
            if dep in pos:
                x1, y1 = pos[dep]
                parts.append(
                    f'<line class="bai-edge" data-from="{html.escape(dep)}" '
                    f'data-to="{html.escape(t["name"])}" x1="{x1 + BOX_W}" y1="{y1 + BOX_H // 2}" '
                    f'x2="{x2 - 2}" y2="{y2 + BOX_H // 2}" stroke="#757575" '
                    'marker-end="url(#bai-arrow)"/>')
    for t in tasks:
        x, y = pos[t["name"]]
        colour = STATUS_COLOURS.get(t.get("status") or "", "#616161")
        parts.append(
            f'<g class="bai-node" data-task="{html.escape(t["name"])}">'
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{colour}"/>'
            f'<text x="{x + 8}" y="{y + 19}" fill="white" font-size="12">'
            f'{html.escape(t["name"][:20])}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def logs_base(client: Any) -> str | None:
    """The API's path on the notebook's own server (so a link opens with its login), or None
    for an engine that is not reached over HTTP."""
    connection = getattr(client, "connection", None)
    api_url = getattr(connection, "api_url", None)
    return urlsplit(str(api_url)).path.rstrip("/") if api_url else None


def task_rows_html(job: Mapping[str, Any], api_path: str | None = None) -> str:
    """One row per task; its logs as a link (``api_path``: the API's path) and as the magic."""
    rows = []
    for t in job.get("tasks") or []:
        duration = "-" if t.get("duration") is None else f"{float(t['duration']):.1f}s"
        magic = f"%bai pipeline logs {job.get('id')} {t['name']}"
        logs: Any = magic
        if api_path is not None:
            href = (f"{api_path}/pipelines/jobs/{quote(str(job.get('id')))}/tasks/"
                    f"{quote(t['name'])}/logs")
            logs = Html(f'<a href="{html.escape(href)}" target="_blank">logs</a> '
                        f"<code>{html.escape(magic)}</code>", magic)
        rows.append([t["name"], status_badge(t.get("status")), duration, t.get("attempts"),
                     "-" if t.get("exit_code") is None else t.get("exit_code"),
                     t.get("status_info") or "", logs])
    caption = f"pipeline job {job.get('id')} ({job.get('name')}): {job.get('status')}"
    return html_table(["task", "status", "duration", "attempts", "exit code", "info", "logs"],
                      rows, caption)


class PipelineWatch:
    """The widget and the thread that keeps it current; ``.widget`` is what a cell shows.

    The thread reads the event stream and reloads the job on each of its events (a
    ``resync`` reloads too), so the view is never built from a stream with gaps.
    """

    def __init__(self, client_factory: Callable[[], Any], job_id: str) -> None:
        import ipywidgets as widgets

        self.job_id = job_id
        self._client_factory = client_factory
        self.dag = widgets.HTML()
        self.table = widgets.HTML()
        self.widget = widgets.VBox([self.dag, self.table])
        self.job: Any = None
        self.api_path: str | None = None
        self.updates = 0
        self._thread = threading.Thread(target=self._follow, daemon=True,
                                        name=f"bai-pipeline-watch-{job_id}")

    def start(self) -> PipelineWatch:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def show(self, job: Mapping[str, Any]) -> None:
        self.job = job
        self.dag.value = dag_svg(job)
        self.table.value = task_rows_html(job, self.api_path)
        self.updates += 1

    def _follow(self) -> None:
        client = self._client_factory()
        try:
            self.api_path = logs_base(client)
            self.show(client.get_pipeline_job(self.job_id))
            if self.job["status"] in FINAL:
                return
            # Replayed from the start of the kept history: an end that came between the load
            # above and the subscription is still seen.
            for event in client.events(since=0):
                name = str(event.get("name") or "")
                if event.get("kind") == "resync" or (
                        str(event.get("kind") or "").startswith("pipeline")
                        and name.split("/")[0] == self.job_id):
                    self.show(client.get_pipeline_job(self.job_id))
                    if self.job["status"] in FINAL:
                        return
        except Exception as exc:  # the view says so; the notebook keeps working
            log.info("pipeline watch %s stopped: %s", self.job_id, exc)
            self.table.value += f"<p><i>stopped following: {html.escape(str(exc))}</i></p>"
        finally:
            close = getattr(client, "close", None)
            if close is not None:
                close()
