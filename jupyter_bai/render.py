"""Rendering of API objects: aligned text for terminals, HTML for notebooks, from one place.

Every function returns a :class:`Rendered` whose ``str()`` is the CLI table and whose
``_repr_html_`` is what Jupyter shows, so the CLI and ``%bai`` present the same columns.
They take the answers of the client, :mod:`jupyter_bai.spec.models` (read through their
mapping interface, so plain JSON dicts render the same).
"""
from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "Html",
    "Rendered",
    "file_table",
    "format_slots",
    "message",
    "resources_view",
    "session_detail",
    "sessions_table",
    "status_badge",
    "text_table",
    "vfolder_detail",
    "vfolders_table",
]

STATUS_COLOURS: dict[str, str] = {
    "PENDING": "#b26a00",
    "SCHEDULED": "#b26a00",
    "PREPARING": "#1565c0",
    "RUNNING": "#2e7d32",
    "TERMINATING": "#6d4c41",
    "TERMINATED": "#616161",
    "CANCELLED": "#616161",
    "ERROR": "#c62828",
    "success": "#2e7d32",
    "failure": "#c62828",
    "undefined": "#9e9e9e",
    "HEALTHY": "#2e7d32",
    "WAITING": "#9e9e9e",
    "RETRYING": "#b26a00",
    "SUCCEEDED": "#2e7d32",
    "FAILED": "#c62828",
    "SKIPPED": "#9e9e9e",
    "CANCELLING": "#6d4c41",
    "UNHEALTHY": "#c62828",
}

_TABLE_STYLE = "border-collapse:collapse;font-size:12px;"
_CELL_STYLE = "padding:2px 8px;text-align:left;"


class Html(str):
    """A cell value that is already HTML (not escaped); its ``text`` is the plain form."""

    text: str

    def __new__(cls, markup: str, text: str) -> Html:
        obj = super().__new__(cls, markup)
        obj.text = text
        return obj


class Rendered:
    """Something shown to a person: plain text in a terminal, HTML in a notebook."""

    def __init__(self, text: str, html_markup: str, data: Any = None) -> None:
        self.text = text
        self.html = html_markup
        self.data = data

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__

    def _repr_html_(self) -> str:
        return self.html


def _plain(cell: Any) -> str:
    if isinstance(cell, Html):
        return cell.text
    return "" if cell is None else str(cell)


def _markup(cell: Any) -> str:
    if isinstance(cell, Html):
        return str(cell)
    return html.escape(_plain(cell))


def text_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Plain aligned columns, headers in capitals, as scripts and eyes expect."""
    cells = [[h.upper() for h in headers]] + [[_plain(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> str:
    """A compact HTML table; ``Html`` cells pass through, everything else is escaped."""
    head = "".join(f'<th style="{_CELL_STYLE}">{html.escape(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL_STYLE}">{_markup(c)}</td>' for c in row) + "</tr>"
        for row in rows
    )
    cap = f"<caption style='text-align:left;font-weight:bold'>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="bai-table" style="{_TABLE_STYLE}">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _table(headers: Sequence[str], rows: list[Sequence[Any]], data: Any, caption: str = "", empty: str = "") -> Rendered:
    if not rows and empty:
        return Rendered(empty, f"<p><i>{html.escape(empty)}</i></p>", data)
    return Rendered(text_table(headers, rows), html_table(headers, rows, caption), data)


def status_badge(status: str | None) -> Html:
    """A coloured pill for a status or result; plain text in terminals."""
    s = status or "-"
    colour = STATUS_COLOURS.get(s, "#616161")
    markup = (
        f'<span class="bai-status bai-status-{html.escape(s.lower())}" style="background:{colour};'
        f'color:white;border-radius:8px;padding:0 6px;font-size:11px">{html.escape(s)}</span>'
    )
    return Html(markup, s)


def _size(value: Any) -> str:
    """Bytes (int or decimal string) for people: ``1g``, ``512m``."""
    from jupyter_bai.spec.resources import format_size

    try:
        return format_size(int(Decimal(str(value))))
    except (InvalidOperation, ValueError, TypeError):
        return str(value)


def _slot_value(slot: str, value: Any) -> str:
    """A slot value as shown: memory as a size, numbers without trailing zeros."""
    if slot == "mem":
        return _size(value)
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def _is_zero(value: Any) -> bool:
    try:
        return Decimal(str(value)) == 0
    except (InvalidOperation, ValueError):
        return False


def format_slots(slots: Mapping[str, Any] | None, *, zeros: bool = False) -> str:
    """``cpu=1 mem=1g cuda.shares=0.5`` (zero slots left out unless ``zeros``)."""
    if not slots:
        return "-"
    parts = [
        f"{k}={_slot_value(k, v)}" for k, v in slots.items() if zeros or not _is_zero(v)
    ]
    return " ".join(parts) or "-"


def _when(value: Any) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM:SS`` in local time; ``-`` when missing."""
    if not value:
        return "-"
    if isinstance(value, (int, float)):  # epoch seconds (vfolders)
        return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if dt.tzinfo is not None:
        dt = dt.astimezone()
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def _mounts(mounts: Iterable[Mapping[str, Any]] | None) -> str:
    items = [
        f"{m.get('source')}:{m.get('target')}:{m.get('perm', 'rw')}" if isinstance(m, Mapping) else str(m)
        for m in (mounts or [])
    ]
    return ", ".join(items) or "-"


def _short_id(value: Any) -> str:
    return str(value or "")[:8]


# --------------------------------------------------------------------------- sessions


def sessions_table(sessions: Sequence[Mapping[str, Any]]) -> Rendered:
    """``session ls``: one row per session."""
    rows: list[Sequence[Any]] = [
        [
            s.get("name"),
            _short_id(s.get("id")),
            status_badge(s.get("status")),
            s.get("type", "-") + (" (kernel)" if (s.get("labels") or {}).get("kernel-id") else ""),
            s.get("image", "-"),
            format_slots(s.get("resources")),
            _result(s),
            _when(s.get("created_at")),
        ]
        for s in sessions
    ]
    return _table(
        ["name", "id", "status", "type", "image", "resources", "result", "created"],
        rows, sessions, empty="no sessions",
    )


def _result(s: Mapping[str, Any]) -> Any:
    result = s.get("result") or "undefined"
    if result == "undefined":
        return "-"
    code = s.get("exit_code")
    badge = status_badge(result)
    if code is None:
        return badge
    return Html(f"{badge} ({code})", f"{result} ({code})")


def session_detail(s: Mapping[str, Any]) -> Rendered:
    """``session info``/``create``: the fields a person checks, then the status history."""
    alloc = s.get("allocation") or {}
    alloc = alloc.get("cuda", alloc) or {}
    shares = alloc.get("shares") or {}
    whole = alloc.get("whole")
    if whole is None:  # older shape: "devices" lists whole GPUs only
        whole = [d for d in alloc.get("devices") or [] if str(d) not in shares]
    parts = [f"GPU {d}" for d in whole] + [f"GPU {k} x {v}" for k, v in shares.items()]
    gpu = ", ".join(parts) or "-"
    fields: list[tuple[str, Any]] = [
        ("name", s.get("name")),
        ("id", s.get("id")),
        ("status", status_badge(s.get("status"))),
        ("status info", s.get("status_info") or "-"),
        ("type", s.get("type")),
        ("image", s.get("image")),
        ("command", s.get("command") or "-"),
        ("resources", format_slots(s.get("resources"))),
        ("gpu allocation", gpu),
        ("mounts", _mounts(s.get("mounts"))),
        ("binds", " ".join(f"{b['source']}:{b['target']}:{b['perm']}" for b in s.get("binds") or []) or "-"),
        ("labels", " ".join(f"{k}={v}" for k, v in (s.get("labels") or {}).items()) or "-"),
        ("env", " ".join(f"{k}={v}" for k, v in (s.get("env") or {}).items()) or "-"),
        ("runtime", f"{s.get('runtime', '-')} (sandbox: {s.get('sandbox', '-')})"),
        ("result", _result(s)),
        ("created", _when(s.get("created_at"))),
        ("started", _when(s.get("started_at"))),
        ("terminated", _when(s.get("terminated_at"))),
    ]
    if s.get("idle_timeout"):
        fields.append(("idle timeout", f"{float(s['idle_timeout']):g} s"))
    if s.get("max_lifetime"):
        fields.append(("max lifetime", f"{float(s['max_lifetime']):g} s"))
    history = s.get("status_history") or []
    text = _kv_text(fields)
    markup = _kv_html(fields, caption=f"session {s.get('name')}")
    if history:
        hrows = [[status_badge(h.get("status")), _when(h.get("at")), h.get("info") or ""] for h in history]
        text += "\n\n" + text_table(["status", "at", "info"], hrows)
        markup += html_table(["status", "at", "info"], hrows, "status history")
    return Rendered(text, markup, s)


def _kv_text(fields: Sequence[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in fields)
    return "\n".join(f"{k.ljust(width)}  {_plain(v)}" for k, v in fields)


def _kv_html(fields: Sequence[tuple[str, Any]], caption: str = "") -> str:
    rows = "".join(
        f'<tr><th style="{_CELL_STYLE}">{html.escape(k)}</th><td style="{_CELL_STYLE}">{_markup(v)}</td></tr>'
        for k, v in fields
    )
    cap = f"<caption style='text-align:left;font-weight:bold'>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="bai-table" style="{_TABLE_STYLE}">{cap}<tbody>{rows}</tbody></table>'


# --------------------------------------------------------------------------- vfolders


def _quota(v: Mapping[str, Any]) -> str:
    q = v.get("quota")
    return _size(q) if q else "-"


def vfolders_table(vfolders: Sequence[Mapping[str, Any]]) -> Rendered:
    """``vfolder ls``."""
    rows: list[Sequence[Any]] = [
        [
            v.get("name"),
            v.get("usage_mode"),
            v.get("permission"),
            _size(v.get("usage_bytes") or 0),
            _quota(v),
            v.get("file_count", "-"),
            _when(v.get("created_at")),
        ]
        for v in vfolders
    ]
    return _table(
        ["name", "mode", "perm", "usage", "quota", "files", "created"], rows, vfolders,
        empty="no vfolders",
    )


def vfolder_detail(v: Mapping[str, Any]) -> Rendered:
    """``vfolder info``/``create``."""
    fields: list[tuple[str, Any]] = [
        ("name", v.get("name")),
        ("id", v.get("id")),
        ("usage mode", v.get("usage_mode")),
        ("permission", v.get("permission")),
        ("usage", _size(v.get("usage_bytes") or 0)),
        ("quota", _quota(v)),
        ("files", v.get("file_count", "-")),
        ("host", v.get("host") or "-"),
        ("created", _when(v.get("created_at"))),
    ]
    return Rendered(_kv_text(fields), _kv_html(fields, caption=f"vfolder {v.get('name')}"), v)


def _mode(value: Any) -> str:
    if isinstance(value, int):
        import stat

        return stat.filemode(value)
    return str(value or "-")


def file_table(files: Sequence[Mapping[str, Any]], *, empty: str = "no files") -> Rendered:
    """``vfolder files``/``upload``/``mkdir``: directory entries."""
    rows: list[Sequence[Any]] = [
        [
            _mode(f.get("mode")),
            f.get("type", "-"),
            _size(f.get("size") or 0) if f.get("type") != "dir" else "-",
            _when(f.get("mtime")),
            (f.get("path") or f.get("name") or "") + ("/" if f.get("type") == "dir" else ""),
        ]
        for f in files
    ]
    return _table(["mode", "type", "size", "modified", "path"], rows, files, empty=empty)


def message(text: str, data: Any = None) -> Rendered:
    """A one-line confirmation (``vfolder 'data' deleted``)."""
    return Rendered(text, f"<p>{html.escape(text)}</p>", data)


def paths_list(paths: Sequence[str]) -> Rendered:
    """``vfolder download``: the local files written."""
    text = "\n".join(paths) or "nothing downloaded"
    items = "".join(f"<li><code>{html.escape(p)}</code></li>" for p in paths)
    return Rendered(text, f"<ul>{items}</ul>" if paths else "<p><i>nothing downloaded</i></p>", list(paths))


# --------------------------------------------------------------------------- resources


def _fraction(used: Any, total: Any) -> float:
    try:
        u, t = Decimal(str(used)), Decimal(str(total))
    except (InvalidOperation, ValueError):
        return 0.0
    if t <= 0:
        return 0.0
    return float(min(max(u / t, Decimal(0)), Decimal(1)))


def _text_bar(frac: float, width: int = 20) -> str:
    filled = round(frac * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {frac * 100:3.0f}%"


def _html_bar(frac: float) -> Html:
    colour = "#2e7d32" if frac < 0.7 else "#b26a00" if frac < 0.9 else "#c62828"
    markup = (
        '<div style="width:160px;height:10px;background:#e0e0e0;border-radius:5px;'
        'display:inline-block;vertical-align:middle;overflow:hidden">'
        f'<div style="width:{frac * 100:.1f}%;height:100%;background:{colour}"></div></div>'
        f' <span style="font-size:11px">{frac * 100:.0f}%</span>'
    )
    return Html(markup, _text_bar(frac))


def images_table(data: Mapping[str, Any]) -> Rendered:
    """``image ls``: name, runtime, size, minimum memory, service ports; notes below."""
    rows: list[Sequence[Any]] = [
        [
            i.get("name"),
            i.get("runtime"),
            i.get("id") or "-",
            _size(i["size"]) if i.get("size") is not None else "-",
            i.get("min_mem") or "-",
            i.get("service_ports") or "-",
        ]
        for i in data.get("images") or []
    ]
    headers = ["name", "runtime", "id", "size", "min mem", "service ports"]
    notes = list(data.get("notes") or [])
    text = text_table(headers, rows) + "".join(f"\nnote: {n}" for n in notes)
    markup = html_table(headers, rows) + "".join(
        f"<p><i>note: {html.escape(n)}</i></p>" for n in notes
    )
    return Rendered(text, markup, data)


def resources_view(res: Mapping[str, Any]) -> Rendered:
    """``resources``: which engine (title), node, used/free per slot and per GPU, runtimes,
    pending requests, and a cluster's presets."""
    node = res.get("node") or {}
    capacity = res.get("capacity") or {}
    used = res.get("used") or {}
    free = res.get("free") or {}
    slots = list(dict.fromkeys([*capacity.keys(), *used.keys()]))
    slot_rows: list[Sequence[Any]] = [
        [
            k,
            _slot_value(k, used.get(k, 0)),
            _slot_value(k, free.get(k, 0)),
            _slot_value(k, capacity.get(k, 0)),
            _html_bar(_fraction(used.get(k, 0), capacity.get(k, 0))),
        ]
        for k in slots
    ]
    gpu_rows: list[Sequence[Any]] = []
    for g in res.get("gpus") or []:
        su, sf = g.get("shares_used", 0), g.get("shares_free", 0)
        try:
            total = Decimal(str(su)) + Decimal(str(sf))
        except (InvalidOperation, ValueError):
            total = Decimal(1)
        gpu_rows.append([
            g.get("index"),
            g.get("name", "-"),
            _size(g.get("memory") or 0),
            g.get("source", "-"),
            _slot_value("cuda.shares", su),
            _slot_value("cuda.shares", sf),
            _html_bar(_fraction(su, total)),
            ", ".join(g.get("sessions") or []) or "-",
        ])
    rt_rows: list[Sequence[Any]] = [
        [
            r.get("name"),
            "yes" if r.get("available") else "no",
            r.get("sandbox", "-"),
            "; ".join(r.get("notes") or []) or "-",
        ]
        for r in res.get("runtimes") or []
    ]
    head = (
        f"node {node.get('hostname', '-')}: {node.get('cpu_count', '-')} CPUs, "
        f"{_size(node.get('mem_total') or 0)} memory, {len(node.get('gpus') or [])} GPUs"
        f" (MPS {'available' if node.get('mps_available') else 'not available'}); "
        f"pending sessions: {res.get('pending', 0)}"
    )
    limit = res.get("fractional_gpu_limit")
    if limit and limit != "none":
        head += f"; fractional GPU limits: {limit}"
    engine = res.get("engine")
    # The title says which engine this describes (several can be configured; `engine ls`).
    title = f"engine {engine.get('name')} ({engine.get('kind')}, {engine.get('url') or '-'})" if engine else ""
    preset_rows: list[Sequence[Any]] = [
        [p.get("name"), format_slots(p.get("resources")), "yes" if p.get("allocatable") else "no"]
        for p in res.get("presets") or []
    ]
    slot_h = ["slot", "used", "free", "capacity", "usage"]
    gpu_h = ["gpu", "name", "memory", "source", "shares used", "shares free", "usage", "sessions"]
    rt_h = ["runtime", "available", "sandbox", "notes"]
    parts_text = [*([title] if title else []), head, "", text_table(slot_h, slot_rows)]
    parts_html = [f'<p class="bai-resources-title"><b>{html.escape(title)}</b></p>' if title else "",
                  f"<p>{html.escape(head)}</p>" if title else f"<p><b>{html.escape(head)}</b></p>",
                  html_table(slot_h, slot_rows, "resource slots")]
    if gpu_rows:
        parts_text += ["", text_table(gpu_h, gpu_rows)]
        parts_html.append(html_table(gpu_h, gpu_rows, "GPUs"))
    if rt_rows:
        parts_text += ["", text_table(rt_h, rt_rows)]
        parts_html.append(html_table(rt_h, rt_rows, "runtimes"))
    if preset_rows:
        preset_h = ["preset", "resources", "allocatable now"]
        parts_text += ["", text_table(preset_h, preset_rows)]
        parts_html.append(html_table(preset_h, preset_rows, "resource presets"))
    return Rendered("\n".join(parts_text), '<div class="bai-resources">' + "".join(parts_html) + "</div>", res)


# --------------------------------------------------------------------------- pipelines


def pipeline_jobs_table(jobs: Sequence[Mapping[str, Any]]) -> Rendered:
    """``pipeline jobs``: one row per job."""
    rows: list[Sequence[Any]] = []
    for j in jobs:
        tasks = j.get("tasks") or []
        done = sum(1 for t in tasks if t.get("status") == "SUCCEEDED")
        rows.append([j.get("id"), j.get("name"), status_badge(j.get("status")),
                     f"{done}/{len(tasks)}", _when(j.get("created_at")), j.get("folder")])
    return _table(["job", "pipeline", "status", "succeeded", "created", "folder"], rows, jobs,
                  empty="no pipeline jobs")


def _duration(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}s"


def pipeline_job_detail(j: Mapping[str, Any]) -> Rendered:
    """``pipeline info`` / ``run --wait``: the job and one row per task."""
    rows: list[Sequence[Any]] = [
        [t.get("name"), status_badge(t.get("status")), t.get("attempts"),
         "-" if t.get("exit_code") is None else t.get("exit_code"), _duration(t.get("duration")),
         ", ".join(t.get("depends_on") or []) or "-", t.get("status_info") or ""]
        for t in j.get("tasks") or []
    ]
    info = f" ({j.get('status_info')})" if j.get("status_info") else ""
    caption = (f"pipeline job {j.get('id')} ({j.get('name')}): {j.get('status')}{info}; "
               f"outputs in vfolder {j.get('folder')}")
    table = _table(["task", "status", "attempts", "exit code", "duration", "depends on", "info"],
                   rows, j, caption=caption)
    return Rendered(f"{caption}\n{table.text}", table.html, j)
# --------------------------------------------------------------------------- model services


def services_table(services: Sequence[Mapping[str, Any]]) -> Rendered:
    """``service ls``: one row per service."""
    rows: list[Sequence[Any]] = [
        [
            s.get("name"),
            status_badge(s.get("status")),
            f"{sum(r.get('status') == 'HEALTHY' for r in s.get('routes') or [])}/{s.get('replicas')}",
            "public" if s.get("public") else "token",
            s.get("runtime_variant"),
            s.get("model_folder"),
            s.get("endpoint"),
        ]
        for s in services
    ]
    return _table(["name", "status", "healthy", "access", "variant", "model", "endpoint"],
                  rows, services, empty="no services")


def service_detail(s: Mapping[str, Any]) -> Rendered:
    """``service info``/``create``: the service, then one row per route."""
    fields: list[tuple[str, Any]] = [
        ("name", s.get("name")),
        ("status", status_badge(s.get("status"))),
        ("status info", s.get("status_info") or "-"),
        ("endpoint", s.get("endpoint")),
        ("access", "public" if s.get("public") else "bearer token (`service token NAME`)"),
        ("replicas", s.get("replicas")),
        ("image", s.get("image")),
        ("model folder", s.get("model_folder")),
        ("runtime variant", s.get("runtime_variant")),
    ]
    if s.get("version"):
        fields.append(("version", s.get("version")))
    text = _kv_text(fields)
    markup = _kv_html(fields, caption=f"service {s.get('name')}")
    routes = s.get("routes") or []
    if routes:
        rrows = [[_short_id(r.get("id")), status_badge(r.get("status")), r.get("session_name") or "-",
                  r.get("port") or "-", r.get("version") or "-", _last_line(r.get("status_info"))]
                 for r in routes]
        headers = ["route", "status", "session", "port", "version", "info"]
        text += "\n\n" + text_table(headers, rrows)
        markup += html_table(headers, rrows, "routes")
    rules = s.get("autoscaling_rules") or []
    if rules:
        arows = [[r.get("id"), f"{r.get('metric')} {r.get('comparator')} {r.get('threshold')}",
                  f"{int(r.get('step') or 0):+d}", f"{r.get('cooldown'):g} s",
                  f"{r.get('min_replicas')}..{r.get('max_replicas')}"] for r in rules]
        headers = ["rule", "when", "step", "cooldown", "replicas"]
        text += "\n\n" + text_table(headers, arows)
        markup += html_table(headers, arows, "autoscaling rules")
    decisions = s.get("scaling_decisions") or []
    if decisions:
        drows = [[_when(d.get("at")), d.get("rule"), f"{d.get('metric')}={float(d.get('value')):.2f}",
                  f"{d.get('from')} -> {d.get('to')}"] for d in decisions[:5]]
        headers = ["at", "rule", "value", "replicas"]
        text += "\n\n" + text_table(headers, drows)
        markup += html_table(headers, drows, "autoscaling decisions")
    return Rendered(text, markup, s)


def deploy_check(c: Mapping[str, Any]) -> Rendered:
    """``deploy --check``: the hash, the endpoints, warnings and problems."""
    lines = [f"{c.get('notebook')}  {c.get('hash')}"]
    lines += [f"  {e.get('method')} {e.get('path')}  ({e.get('name')})" for e in c.get("endpoints") or []]
    lines += [f"warning: {w}" for w in c.get("warnings") or []]
    lines += [f"problem: {p}" for p in c.get("problems") or []]
    if not c.get("problems"):
        lines.append("ready to deploy")
    text = "\n".join(lines)
    return Rendered(text, f"<pre>{html.escape(text)}</pre>", c)


def deploy_result(d: Mapping[str, Any]) -> Rendered:
    """``deploy``/``service rollback``: the version, endpoint, token and how to call it."""
    endpoint = str(d.get("endpoint") or "")
    token = d.get("token")
    eps = d.get("endpoints") or []
    first = next((e for e in eps if e.get("method") == "POST"), eps[0] if eps else None)
    path = (first or {}).get("path", "/").lstrip("/")
    auth = f" -H 'Authorization: Bearer {token}'" if token else ""
    if first and first.get("method") == "GET":
        curl = f"curl{auth} '{endpoint}{path}'"
        py = f"requests.get('{endpoint}{path}'" + (f", headers={{'Authorization': 'Bearer {token}'}})" if token else ")")
    else:
        curl = f"curl{auth} -H 'Content-Type: application/json' -d '{{...}}' {endpoint}{path}"
        py = (f"requests.post('{endpoint}{path}', json={{...}}"
              + (f", headers={{'Authorization': 'Bearer {token}'}})" if token else ")"))
    fields: list[tuple[str, Any]] = [
        ("service", d.get("service")), ("version", d.get("version")), ("hash", d.get("hash")),
        ("endpoint", endpoint), ("token", token or "- (public)"),
        ("endpoints", ", ".join(f"{e.get('method')} /{str(e.get('path')).lstrip('/')}" for e in eps)),
        ("curl", curl), ("python", py),
    ]
    return Rendered(_kv_text(fields), _kv_html(fields, caption=f"deployed {d.get('service')}"), d)


def versions_table(versions: Sequence[Mapping[str, Any]]) -> Rendered:
    """``service versions``: one row per deployed version."""
    rows = [[f"{v.get('version')}{' *' if v.get('current') else ''}", v.get("hash"),
             v.get("notebook"), _when(v.get("created_at"))] for v in versions]
    return _table(["version", "hash", "notebook", "created"], rows, versions,
                  empty="no versions")


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""
