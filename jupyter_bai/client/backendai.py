"""``BackendAIDriver``: the :class:`~jupyter_bai.client.driver.Driver` over a Backend.AI cluster.

It speaks Backend.AI's documented REST API (manager ``/session``, ``/folders``, ``/resource``,
``/admin/gql``; storage-proxy ``/upload`` (tus) and ``/download``) with our own httpx stack,
signing every request the way the manager checks it (``HMAC-SHA256`` keypair signature over
method, raw path, ``Date``, host, content type and ``X-BackendAI-Version``). The official
``backend.ai-client`` SDK cannot live in our environment (it pins ``aiohttp~=3.8``,
``click~=8.1.7``, ``rich~=13.6`` and, through ``backend.ai-common``, ``redis==4.5.5`` and
``psutil~=5.9``), so it is not imported; the README says so.

Answers are mapped to this project's models so the CLI, ``%bai`` and scripts see the same JSON
shapes as on the local engine: Backend.AI's PULLING/CREATING become PREPARING, RESTARTING and
RUNNING_DEGRADED become RUNNING, folder listings become :class:`FileEntry` objects, and error
bodies (``{"type", "title", "msg"}``) become one :class:`BaiError` line keeping the server's
reason.
"""
from __future__ import annotations

import asyncio
import posixpath
import re
import secrets
import shlex
import stat
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import httpx

from jupyter_bai.backendai.rest import API_VERSION, BackendAIConfig, BackendAIRest, arch, session_body, sign
from jupyter_bai.backendai.rest import json_field as _json_field
from jupyter_bai.backendai.rest import one_line as _one_line
from jupyter_bai.backendai.rest import server_error as _server_error
from jupyter_bai.backendai.rest import transport_error as _transport_error
from jupyter_bai.client.driver import Driver, StatusWaiter, Unsupported
from jupyter_bai.client.operations import CHUNK_SIZE, TERMINAL_STATUSES
from jupyter_bai.spec.errors import (
    BaiError,
    Conflict,
    InsufficientResources,
    InvalidRequest,
    InvalidState,
    NotFound,
)
from jupyter_bai.spec.models import (
    Event,
    ExecMessage,
    FileEntry,
    ImageInfo,
    ImageList,
    MountInfo,
    PipelineJobInfo,
    Resources,
    RouteInfo,
    RunMessage,
    ServiceInfo,
    ServiceToken,
    SessionInfo,
    VFolderInfo,
)
from jupyter_bai.spec.mounts import parse_mount
from jupyter_bai.spec.resources import parse_size
from jupyter_bai.spec.service import MODEL_MOUNT, ServiceCreate, ServiceStatus, parse_ttl, service_status

__all__ = ["API_VERSION", "BackendAIConfig", "BackendAIDriver", "sign"]

#: Backend.AI's session statuses as this project's.
_STATUS = {
    "PENDING": "PENDING", "SCHEDULED": "SCHEDULED", "PREPARING": "PREPARING",
    "PULLING": "PREPARING",
    "RUNNING": "RUNNING", "RESTARTING": "RUNNING", "RUNNING_DEGRADED": "RUNNING",
    "TERMINATING": "TERMINATING", "TERMINATED": "TERMINATED", "ERROR": "ERROR",
    "CANCELLED": "CANCELLED",
}
_BAI_STATUSES: dict[str, list[str]] = {}
for _bai, _ours in _STATUS.items():
    _BAI_STATUSES.setdefault(_ours, []).append(_bai)

_SESSION_FIELDS = """
  id name type image status status_info status_data status_history created_at terminated_at
  starts_at startup_command result occupied_slots mounts vfolder_mounts scaling_group
"""
#: An endpoint as ``service info`` needs it (GraphQL ``endpoint``; 23.09 names the image
#: ``image_object`` and the lifecycle ``lifecycle_stage``).
_ENDPOINT_FIELDS = """
  endpoint_id name url open_to_public desired_session_count created_at lifecycle_stage model
  resource_group image_object { name registry tag }
  routings { routing_id session status error_data }
"""
#: ``api/service.py`` checks service names with this pattern.
_SERVICE_NAME = re.compile(r"^(?=.{4,24}$)\w[\w.-]*\w$", re.ASCII)
_ROUTE_STATUSES = ("PROVISIONING", "HEALTHY", "UNHEALTHY", "TERMINATING", "FAILED_TO_START")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


def _iso(value: Any) -> str | None:
    return str(value) if value else None


def _epoch(value: Any) -> float:
    if not value:
        return 0.0
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _slots(value: Any) -> dict[str, str]:
    """Backend.AI slot maps (``cpu``, ``mem`` in bytes, ``cuda.shares``...) as decimal strings."""
    out: dict[str, str] = {}
    for key, raw in (_json_field(value) or {}).items():
        try:
            num = Decimal(str(raw))
        except InvalidOperation:
            continue
        out[str(key)] = format(num.normalize(), "f") if num == num.to_integral() else str(num)
    return out


def _history(raw: Any) -> list[dict[str, Any]]:
    """``status_history`` ({STATUS: time} in 23.09) in time order, with our status names."""
    data = _json_field(raw) or {}
    items = data.items() if isinstance(data, dict) else []
    changes = sorted(((str(at), _STATUS.get(st, st)) for st, at in items if st in _STATUS))
    out: list[dict[str, Any]] = []
    for at, status in changes:
        if not out or out[-1]["status"] != status:
            out.append({"status": status, "at": at})
    return out


def _exit_code(row: Mapping[str, Any]) -> int | None:
    """A batch command's exit code, as far as 23.09 keeps it: it stores only SUCCESS (exit code
    0) or FAILURE (any other code, not kept) as the session's ``result``."""
    if str(row.get("type") or "").upper() == "BATCH" and str(row.get("result")).upper() == "SUCCESS":
        return 0
    return None


def _pending_reason(status_data: Any) -> str | None:
    """Why the scheduler could not place a PENDING session (its failed predicates)."""
    data = _json_field(status_data) or {}
    sched = data.get("scheduler") if isinstance(data, dict) else None
    if not isinstance(sched, dict):
        return None
    msgs = [_one_line(p.get("msg") or p.get("name")) for p in sched.get("failed_predicates") or []
            if isinstance(p, dict)]
    msg = sched.get("msg")
    text = "; ".join(m for m in [*msgs, _one_line(msg) if msg else ""] if m)
    return text or None


_VFMOUNT = re.compile(r"name='([^']*)'.*kernel_path=PurePosixPath\('([^']*)'\).*mount_perm=<\w+\.\w+: '(\w+)'>")


def _mounts(row: Mapping[str, Any]) -> list[MountInfo]:
    """Mounted folders: 23.09 sends ``vfolder_mounts`` as the repr of its ``VFolderMount``s
    (with the path inside the session and the permission); ``mounts`` has just the names."""
    out = []
    for text in row.get("vfolder_mounts") or []:
        m = _VFMOUNT.search(str(text))
        if m:
            out.append(MountInfo(source=m.group(1), target=m.group(2),
                                 perm="ro" if m.group(3) == "ro" else "rw"))
    if out:
        return out
    return [MountInfo(source=str(n), target=f"/home/work/{n}") for n in row.get("mounts") or []]


def _session(row: Mapping[str, Any], env: Mapping[str, str] | None = None) -> SessionInfo:
    status = _STATUS.get(str(row.get("status")), "ERROR")
    info = row.get("status_info")
    if status == "PENDING":
        why = _pending_reason(row.get("status_data"))
        info = f"{info}: {why}" if info and why else why or info
    mounts = _mounts(row)
    result = str(row.get("result") or "undefined").lower()
    slots = _slots(row.get("occupied_slots"))
    return SessionInfo.model_validate({
        "id": str(row["id"]), "name": str(row.get("name") or row["id"]), "status": status,
        "status_info": _one_line(info) if info else None,
        "result": result if result in ("success", "failure") else "undefined",
        "exit_code": _exit_code(row),
        "image": str(row.get("image") or ""), "type": str(row.get("type") or "interactive").lower(),
        "command": row.get("startup_command") or None, "resources": slots, "mounts": mounts,
        "env": dict(env or {}), "runtime": "backendai", "sandbox": "docker",
        "created_at": _iso(row.get("created_at")),
        "started_at": _iso((_json_field(row.get("status_history")) or {}).get("RUNNING")),
        "terminated_at": _iso(row.get("terminated_at")),
        "status_history": _history(row.get("status_history")),
        "scaling_group": row.get("scaling_group"),
    })


def _entry(path: str, item: Mapping[str, Any]) -> FileEntry:
    kind = {"DIRECTORY": "dir", "SYMLINK": "symlink"}.get(str(item.get("type")), "file")
    try:  # the storage proxy sends the permission bits in octal ("644"); show them as ls does
        mode = {"dir": "d", "symlink": "l"}.get(kind, "-") + stat.filemode(int(str(item.get("mode")), 8))[1:]
    except ValueError:
        mode = str(item.get("mode") or "")
    return FileEntry.model_validate({
        "name": item["name"], "path": posixpath.join(path, item["name"]) if path else item["name"],
        "type": kind, "size": 0 if kind == "dir" else int(item.get("size") or 0),
        "mtime": _epoch(item.get("modified")), "mode": mode,
    })


@dataclass
class _TracebackOf:
    """ipykernel's ``error`` output, which Backend.AI's query mode forwards as plain stderr."""

    ename: str
    evalue: str
    traceback: list[str]

    @classmethod
    def parse(cls, text: str) -> _TracebackOf | None:
        plain = _ANSI.sub("", text)
        lines = plain.splitlines()
        if len(lines) < 2 or not re.fullmatch(r"-{20,}", lines[0].strip()):
            return None
        head = re.match(r"(\w[\w.]*)\s+Traceback \(most recent call last\)", lines[1].strip())
        if head is None:
            return None
        last = next((ln for ln in reversed(lines) if ln.strip()), "")
        ename, _, evalue = last.partition(": ")
        if ename.strip() != head.group(1):
            ename, evalue = head.group(1), ""
        return cls(head.group(1), evalue.strip(), text.splitlines())


class BackendAIDriver(Driver):
    """A Backend.AI 23.09 cluster behind the client seam (see the module doc)."""

    #: How often streams poll the manager (Backend.AI's execute API is request/response).
    poll_interval = 0.5

    def __init__(self, config: BackendAIConfig, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.rest = BackendAIRest(config, timeout=timeout, transport=transport)
        self.where = self.rest.where
        self.timeout = timeout
        self._http = self.rest.http
        # Storage-proxy transfers are authorised by the token in their URL, not signed.
        self._storage = self.rest.storage
        self._env: dict[str, dict[str, str]] = {}
        self._local: Any = None  # the local engine's driver, for pipelines (see submit_pipeline)

    async def aclose(self) -> None:
        await self.rest.aclose()
        if self._local is not None:
            await self._local.aclose()

    # -- plumbing

    async def _send(self, method: str, path: str, *, json_body: Any = None,
                    params: Mapping[str, str] | None = None, long: bool = False) -> Any:
        return await self.rest.send(method, path, json_body=json_body, params=params, long=long)

    async def _gql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self.rest.gql(query, variables)

    async def server_version(self) -> dict[str, Any]:
        """``GET /``: the manager's version and API version (also a keypair check)."""
        return dict(await self._send("GET", "/") or {})

    # -- node

    async def resources(self) -> Resources:
        data = await self._send("POST", "/resource/check-presets",
                                json_body={"group": self.config.group} if self.config.group else {})
        groups = data.get("scaling_groups") or {}
        capacity: dict[str, Decimal] = {}
        used: dict[str, Decimal] = {}
        for sg in groups.values():
            for key, val in _slots(sg.get("using")).items():
                used[key] = used.get(key, Decimal(0)) + Decimal(val)
                capacity[key] = capacity.get(key, Decimal(0)) + Decimal(val)
            for key, val in _slots(sg.get("remaining")).items():
                capacity[key] = capacity.get(key, Decimal(0)) + Decimal(val)
        cap = {k: format(v, "f") for k, v in capacity.items()}
        use = {k: format(used.get(k, Decimal(0)), "f") for k in capacity}
        free = {k: format(capacity[k] - used.get(k, Decimal(0)), "f") for k in capacity}
        pending = await self._gql(
            "query($s: String) { compute_session_list(limit: 1, offset: 0, status: $s) { total_count } }",
            {"s": "PENDING"})
        version = await self.server_version()
        presets = [
            {"name": p.get("name"), "resources": _slots(p.get("resource_slots")),
             "allocatable": bool(p.get("allocatable"))}
            for p in data.get("presets") or []
        ]
        return Resources.model_validate({
            "node": {"hostname": urlsplit(self.where).hostname or self.where,
                     "cpu_count": int(Decimal(cap.get("cpu", "0"))),
                     "mem_total": int(Decimal(cap.get("mem", "0"))), "gpus": []},
            "capacity": cap, "used": use, "free": free, "gpus": [],
            "runtimes": [{"name": "backendai", "available": True, "sandbox": "docker",
                          "notes": [f"Backend.AI {version.get('manager', '?')} at {self.where} "
                                    f"(scaling groups: {', '.join(groups) or 'none'})"]}],
            "pending": int(pending["compute_session_list"]["total_count"]),
            "presets": presets,
            "keypair_limits": _slots(data.get("keypair_limits")),
            "keypair_remaining": _slots(data.get("keypair_remaining")),
        })

    async def list_images(self) -> ImageList:
        data = await self._gql(
            "{ images(is_installed: true) { id name tag registry architecture size_bytes aliases "
            "labels { key value } } }")
        images = []
        for img in data.get("images") or []:
            labels = {lab["key"]: lab["value"] for lab in img.get("labels") or []}
            # the canonical reference, then each alias (both work in `session create`)
            for ref in [f"{img['registry']}/{img['name']}:{img['tag']}", *(img.get("aliases") or [])]:
                images.append(ImageInfo(
                    name=ref, runtime="backendai", id=str(img.get("id") or "") or None,
                    size=img.get("size_bytes"), min_mem=labels.get("ai.backend.resource.min.mem"),
                    service_ports=labels.get("ai.backend.service-ports") or None,
                ))
        return ImageList(images=images, notes=[] if images else [f"no images are installed on {self.where}"])

    # -- sessions

    async def create_session(self, request: Mapping[str, Any]) -> SessionInfo:
        for key, why in (("binds", "host binds are for the local engine"),
                         ("labels", "Backend.AI sessions have no labels"),
                         ("idle_timeout", "the cluster's resource policy sets it"),
                         ("max_lifetime", "the cluster's resource policy sets it")):
            if request.get(key):
                raise InvalidRequest(f"{key} is not available on a Backend.AI cluster ({why})")
        mounts, mount_map = [], {}
        for text in request.get("mounts") or []:
            m = parse_mount(text)
            if m.perm is not None:
                raise InvalidRequest(
                    f"invalid mount {text!r}: Backend.AI 23.09 mounts a folder with its own "
                    "permission (create it with --permission ro for a read-only mount)")
            mounts.append(m.source)
            if m.target != f"/home/work/{m.source}":
                mount_map[m.source] = m.target
        type_ = str(request.get("type") or "interactive")
        if type_ == "batch" and not request.get("command"):
            raise InvalidRequest("a batch session needs a command (-c/--startup-command)")
        name = str(request.get("name") or f"bai-{secrets.token_hex(4)}")
        env = {str(k): str(v) for k, v in (request.get("env") or {}).items()}
        body = session_body(name=name, image=request["image"], type_=type_,
                            command=request.get("command"), mounts=mounts, mount_map=mount_map,
                            env=env, resources=dict(request.get("resources") or {}),
                            group=self.config.group)
        if request.get("ports"):
            body["config"]["preopen_ports"] = [int(p) for p in request["ports"]]
        too_big, created = await asyncio.gather(
            self._beyond_capacity(body["config"]["resources"]),
            self._send("POST", "/session", json_body=body))
        sid = str(created["sessionId"])
        self._env[sid] = env
        # what the manager just accepted, without another query (the first poll has the rest)
        sess = _session({
            "id": sid, "name": created.get("sessionName") or name, "type": type_.upper(),
            "image": request["image"], "status": created.get("status") or "PENDING",
            "startup_command": request.get("command"), "mounts": mounts,
            "occupied_slots": {k: parse_size(str(v)) if k == "mem" else v
                               for k, v in body["config"]["resources"].items()},
            "created_at": datetime.now(timezone.utc).isoformat(),
        }, env)
        if too_big:
            await self._refuse_unplaceable(sess, too_big)
        return sess

    async def _beyond_capacity(self, resources: Mapping[str, Any]) -> list[str]:
        """Slots asking for more than the whole cluster has (using + remaining)."""
        data = await self._send("POST", "/resource/check-presets", json_body={})
        total: dict[str, Decimal] = {}
        for sg in (data.get("scaling_groups") or {}).values():
            for part in ("using", "remaining"):
                for key, val in _slots(sg.get(part)).items():
                    total[key] = total.get(key, Decimal(0)) + Decimal(val)
        out = []
        for key, raw in resources.items():
            try:
                want = Decimal(parse_size(str(raw))) if key == "mem" else Decimal(str(raw))
            except (InvalidOperation, BaiError):
                continue
            if key in total and want > total[key]:
                out.append(f"{key}={raw}")
        return out

    async def _refuse_unplaceable(self, sess: SessionInfo, too_big: list[str]) -> None:
        """A request larger than the cluster would wait in PENDING for ever: wait for the
        scheduler's verdict, cancel the session and raise with the scheduler's reason."""
        deadline = time.monotonic() + 30
        cur = sess
        while cur.status == "PENDING" and not cur.status_info and time.monotonic() < deadline:
            await asyncio.sleep(self.poll_interval)
            cur = await self._session_by_id(sess.id)
        if cur.status != "PENDING":
            return
        try:
            await self._send("DELETE", f"/session/{sess.id}", params={"forced": "true"})
        except BaiError:
            pass
        reason = cur.status_info or "the scheduler found no agent for it"
        raise InsufficientResources(
            f"the cluster cannot place session {sess.name} ({', '.join(too_big)} is more than "
            f"it has): {reason}")

    async def _session_by_id(self, sid: str) -> SessionInfo:
        data = await self._gql(f"query($id: UUID!) {{ compute_session(id: $id) {{ {_SESSION_FIELDS} }} }}",
                               {"id": sid})
        row = data.get("compute_session")
        if not row:
            raise NotFound(f"no such session on {self.where}: {sid}")
        return await self._settled(row)

    async def _settled(self, row: dict[str, Any]) -> SessionInfo:
        """The session, after finishing what 23.09 leaves undone: a batch command that ends
        before its session is marked RUNNING gets its result, but the manager's destroy is
        refused in that state (``handle_batch_result``) and the session stays RUNNING for good."""
        if (str(row.get("type") or "").upper() == "BATCH" and row.get("status") == "RUNNING"
                and str(row.get("result")).upper() in ("SUCCESS", "FAILURE")):
            try:
                await self._send("DELETE", f"/session/{row['id']}")
            except BaiError:
                pass
            row = {**row, "status": "TERMINATING", "status_info": "task-finished"}
        return _session(row, self._env.get(str(row["id"])))

    async def _rows(self, *, status: str | None = None, filter_: str | None = None,
                    limit: int = 100) -> list[dict[str, Any]]:
        data = await self._gql(
            "query($l: Int!, $s: String, $f: String) { compute_session_list(limit: $l, offset: 0, "
            f"status: $s, filter: $f, order: \"-created_at\") {{ items {{ {_SESSION_FIELDS} }} }} }}",
            {"l": limit, "s": status, "f": filter_})
        return list(data["compute_session_list"]["items"] or [])

    async def list_sessions(self, status: str | None) -> list[SessionInfo]:
        bai = None
        if status:
            wanted = [s.strip().upper() for s in status.split(",") if s.strip()]
            bai = ",".join(b for s in wanted for b in _BAI_STATUSES.get(s, [s]))
        return [await self._settled(r) for r in await self._rows(status=bai)]

    async def get_session(self, name: str) -> SessionInfo:
        if _UUID.match(name):
            return await self._session_by_id(name)
        if not re.fullmatch(r"[\w.-]{1,64}", name):
            raise NotFound(f"no such session: {name!r}")
        rows = await self._rows(filter_=f'name == "{name}"', limit=1)
        if not rows:
            raise NotFound(f"no such session: {name!r}")
        return await self._settled(rows[0])

    async def _live(self, name: str) -> SessionInfo:
        sess = await self.get_session(name)
        if sess.status in TERMINAL_STATUSES:
            raise InvalidState(f"session {sess.name} is {sess.status}")
        return sess

    @asynccontextmanager
    async def watch_session(self, session_id: str) -> AsyncIterator[StatusWaiter | None]:
        """Backend.AI's session event stream (SSE ``/events/session``) as a wake-up signal;
        a stream that fails only makes the waits time out (the client then polls)."""
        if not _UUID.match(session_id):
            yield None
            return
        woke = asyncio.Event()

        async def listen() -> None:
            try:
                async with self._http.stream("GET", "/events/session", params={"sessionId": session_id},
                                             timeout=httpx.Timeout(None, connect=10.0)) as resp:
                    if resp.status_code >= 400:
                        return
                    async for line in resp.aiter_lines():
                        if line.startswith("event:"):
                            woke.set()
            except httpx.HTTPError:
                return

        async def wait(timeout: float) -> None:
            try:
                await asyncio.wait_for(woke.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            woke.clear()

        task = asyncio.create_task(listen())
        try:
            yield wait
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def destroy_session(self, name: str, forced: bool) -> SessionInfo:
        sess = await self.get_session(name)
        if sess.status in TERMINAL_STATUSES:
            return sess
        await self.rest.destroy_session(sess.id, forced=forced)
        return await self._session_by_id(sess.id)

    async def session_logs(self, name: str, tail: int | None) -> str:
        sess = await self.get_session(name)
        try:
            data = await self._send("GET", f"/session/{sess.id}/logs")
        except NotFound:
            if sess.status in ("PENDING", "SCHEDULED", "PREPARING"):
                return ""
            raise
        logs = str(((data or {}).get("result") or {}).get("logs") or "")
        if tail is not None:
            lines = logs.splitlines(keepends=True)
            logs = "".join(lines[-tail:]) if tail else ""
        return logs

    async def follow_logs(self, name: str) -> AsyncIterator[str]:
        sent = 0
        while True:
            sess = await self.get_session(name)
            try:
                logs = await self.session_logs(sess.id, None)
            except (NotFound, InvalidState):
                logs = ""
            if len(logs) > sent:
                yield logs[sent:]
                sent = len(logs)
            if sess.status in TERMINAL_STATUSES:
                return
            await asyncio.sleep(self.poll_interval * 2)

    async def _execute(self, sid: str, first: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """One run of the execute API: the first request, then ``continue`` until it ends."""
        run_id = secrets.token_hex(8)
        body: dict[str, Any] = {**first, "runId": run_id}
        while True:
            data = await self._send("POST", f"/session/{sid}", json_body=body, long=True)
            result = dict((data or {}).get("result") or {})
            yield result
            # batch runs report clean-finished and build-finished before they run the command
            if result.get("status") in ("finished", "exec-timeout") or not result.get("status"):
                return
            body = {"mode": "continue", "code": "", "runId": run_id}

    async def exec_stream(self, name: str, command: str | list[str],
                          env: Mapping[str, str] | None) -> AsyncIterator[ExecMessage]:
        sess = await self._live(name)
        cmd = command if isinstance(command, str) else shlex.join(command)
        if env:
            cmd = "env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + " sh -c " + shlex.quote(cmd)
        first = {"mode": "batch", "code": "", "options": {"exec": cmd, "clean": None, "build": None,
                                                          "buildLog": False}}
        async for result in self._execute(sess.id, first):
            for kind, text in result.get("console") or []:
                if kind in ("stdout", "stderr") and text:
                    yield ExecMessage(type="stream", name=kind, text=str(text))
            if result.get("status") == "exec-timeout":
                yield ExecMessage(type="done", status="error", ename="timeout",
                                  evalue="the command ran past the cluster's execution timeout")
                return
            if result.get("status") == "finished":
                code = result.get("exitCode")
                yield ExecMessage(type="done", exit_code=int(code) if code is not None else 0)
                return

    async def run_stream(self, name: str, code: str) -> AsyncIterator[RunMessage]:
        sess = await self._live(name)
        error: _TracebackOf | None = None
        async for result in self._execute(sess.id, {"mode": "query", "code": code}):
            for kind, text in result.get("console") or []:
                if kind not in ("stdout", "stderr") or not text:
                    continue
                tb = _TracebackOf.parse(str(text)) if kind == "stderr" else None
                if tb is not None:
                    error = tb
                yield RunMessage(type="stream", name=kind, text=str(text) if tb is None else
                                 "\n".join(tb.traceback) + "\n")
            if result.get("status") == "finished":
                code = result.get("exitCode")
                if error is None and code not in (0, None):
                    why = (": its Python kernel did not start in time, so this session has no "
                           "interpreter to run code in (Backend.AI's kernel runner gives up after "
                           "10 s); create a new session" if code == 127 else "")
                    error = _TracebackOf("KernelRunnerError",
                                         f"the session's kernel runner answered exit code {code}{why}", [])
                break
        if error is not None:
            yield RunMessage(type="done", status="error", ename=error.ename, evalue=error.evalue,
                             traceback=error.traceback)
        else:
            yield RunMessage(type="done", status="ok")

    async def interrupt(self, name: str) -> bool:
        sess = await self._live(name)
        await self._send("POST", f"/session/{sess.id}/interrupt")
        return True

    # -- vfolders

    async def create_vfolder(self, request: Mapping[str, Any]) -> VFolderInfo:
        quota = request.get("quota")
        body = {"name": request["name"], "host": self.config.vfolder_host or None,
                "usage_mode": request.get("usage_mode") or "general",
                "permission": request.get("permission") or "rw",
                "quota": str(quota) if quota else "0", "cloneable": False}
        if self.config.group:
            body["group"] = self.config.group
        await self._send("POST", "/folders", json_body=body)
        return await self.get_vfolder(str(request["name"]))

    def _folder(self, row: Mapping[str, Any]) -> VFolderInfo:
        perm = str(row.get("permission") or "rw")
        quota = row.get("max_size")
        return VFolderInfo.model_validate({
            "id": str(row.get("id")), "name": row["name"],
            "usage_mode": row.get("usage_mode") or "general",
            "permission": perm if perm in ("ro", "rw") else "rw",
            "quota": int(quota) * 1024 * 1024 if quota else None,
            "usage_bytes": int(row.get("used_bytes") or 0), "file_count": int(row.get("num_files") or 0),
            "created_at": _epoch(row.get("created_at")), "host": str(row.get("host") or ""),
        })

    async def list_vfolders(self) -> list[VFolderInfo]:
        rows = await self._send("GET", "/folders") or []
        infos = await asyncio.gather(*(self._send("GET", f"/folders/{r['name']}") for r in rows))
        return [self._folder({**r, **(i or {})}) for r, i in zip(rows, infos)]

    async def get_vfolder(self, name: str) -> VFolderInfo:
        return self._folder(await self._send("GET", f"/folders/{name}"))

    async def delete_vfolder(self, name: str) -> None:
        await self._send("DELETE", f"/folders/{name}")

    async def list_files(self, name: str, path: str) -> list[FileEntry]:
        try:
            data = await self._send("GET", f"/folders/{name}/files", json_body={"path": path or "."})
        except BaiError as err:
            if "No such file or directory" in err.message:
                raise NotFound(f"no such directory in vfolder {name!r}: {path}") from None
            if "Not a directory" in err.message:
                raise InvalidRequest(f"not a directory in vfolder {name!r}: {path}") from None
            raise
        items = data.get("items") if isinstance(data, dict) else None
        if items is None:
            items = _json_field((data or {}).get("files")) or []
        return sorted((_entry(path, i) for i in items), key=lambda e: e.name)

    async def _stat(self, name: str, path: str) -> FileEntry:
        parent, base = posixpath.split(path)
        for entry in await self.list_files(name, parent):
            if entry.name == base:
                return entry
        raise NotFound(f"no such file in vfolder {name!r}: {path}")

    async def upload_file(self, name: str, path: str, chunks: AsyncIterable[bytes], size: int,
                          *, parents: bool) -> FileEntry:
        if not parents and posixpath.dirname(path):
            parent = await self._stat(name, posixpath.dirname(path))
            if parent.type != "dir":
                raise InvalidRequest(f"not a directory in vfolder {name!r}: {parent.path}")
        ticket = await self._send("POST", f"/folders/{name}/request-upload",
                                  json_body={"path": path, "size": int(size)})
        try:
            resp = await self._storage.patch(
                ticket["url"], params={"token": ticket["token"]}, content=chunks,
                headers={"Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                         "Content-Type": "application/offset+octet-stream",
                         "Content-Length": str(size)})
        except httpx.TransportError as exc:
            raise _transport_error(exc, ticket["url"], self.timeout) from None
        if resp.status_code >= 400:
            raise _server_error(resp.status_code, resp.content, ticket["url"])
        return await self._stat(name, path)

    async def download_file(self, name: str, path: str) -> AsyncIterator[bytes]:
        entry = await self._stat(name, path)
        if entry.type == "dir":
            raise InvalidRequest(f"is a directory in vfolder {name!r}: {path}")
        ticket = await self._send("POST", f"/folders/{name}/request-download", json_body={"path": path})
        try:
            async with self._storage.stream("GET", ticket["url"], params={"token": ticket["token"]}) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise _server_error(resp.status_code, resp.content, ticket["url"])
                async for chunk in resp.aiter_bytes(CHUNK_SIZE):
                    yield chunk
        except httpx.TransportError as exc:
            raise _transport_error(exc, ticket["url"], self.timeout) from None

    async def mkdir(self, name: str, path: str, parents: bool) -> FileEntry:
        try:
            await self._stat(name, path)
        except NotFound:
            pass
        else:
            raise Conflict(f"already exists in vfolder {name!r}: {path}")
        await self._send("POST", f"/folders/{name}/mkdir",
                         json_body={"path": path, "parents": parents, "exist_ok": False})
        return await self._stat(name, path)

    async def move(self, name: str, src: str, dst: str) -> FileEntry:
        await self._stat(name, src)
        await self._send("POST", f"/folders/{name}/move-file", json_body={"src": src, "dst": dst})
        return await self._stat(name, dst)

    async def rm(self, name: str, path: str, recursive: bool) -> None:
        entry = await self._stat(name, path)
        if entry.type == "dir" and not recursive:
            raise InvalidRequest(f"is a directory in vfolder {name!r}: {path} (use recursive)")
        await self._send("DELETE", f"/folders/{name}/delete-files",
                         json_body={"files": [path], "recursive": recursive})

    # -- events

    async def events(self, since: int | None) -> AsyncIterator[Event]:
        """Session status changes, found by polling the session list (no replay: ``since`` is
        answered with a ``resync`` marker so the consumer reloads)."""
        seq = 0
        if since is not None:
            yield Event(seq=seq, at=time.time(), kind="resync")
        seen: dict[str, str] = {}
        first = True
        while True:
            for sess in await self.list_sessions(None):
                if seen.get(sess.id) != sess.status:
                    seen[sess.id] = sess.status
                    if not first:
                        seq += 1
                        yield Event(seq=seq, at=time.time(), kind="session", name=sess.name,
                                    status=sess.status)
            first = False
            await asyncio.sleep(self.poll_interval * 4)

    # -- model services: Backend.AI's /services API (endpoints whose routes are INFERENCE
    #    sessions). 23.09 refuses to create one unless the scaling group names an app proxy
    #    (``wsproxy_addr``, ``api/service.py:create``); the app proxy gives the endpoint its URL
    #    and issues its tokens. Without one answering, routes still run and report health.

    async def _scaling_groups(self) -> list[str]:
        data = await self._send("GET", "/scaling-groups", params={"group": self.config.group or "default"})
        return [str(g["name"]) for g in (data or {}).get("scaling_groups") or []]

    async def _no_app_proxy(self, why: str) -> str:
        """"this cluster has no app proxy ..." naming the scaling group(s) the user may use."""
        try:
            groups = await self._scaling_groups()
        except BaiError:
            groups = []
        where = (f"scaling group '{groups[0]}'" if len(groups) == 1 else
                 f"scaling groups {', '.join(repr(g) for g in groups)}" if groups else "its scaling group")
        return f"this cluster has no app proxy configured for {where}; {why}"

    async def create_service(self, request: Mapping[str, Any]) -> ServiceInfo:
        req = ServiceCreate.from_json(dict(request))
        if not _SERVICE_NAME.match(req.name):
            raise InvalidRequest(f"invalid service name '{req.name}': Backend.AI 23.09 needs 4-24 "
                                 "letters, digits, '_', '.' or '-', starting and ending with a "
                                 "letter, digit or '_'")
        for bad, why in ((req.runtime_variant != "custom",
                          f"runtime variant '{req.runtime_variant}' is not available on a Backend.AI "
                          "23.09 cluster: it serves what the model folder's model-definition.yaml "
                          "says (runtime variant 'custom')"),
                         (bool(req.mounts), "extra mounts are not available for a Backend.AI 23.09 "
                          "model service (only its model folder is mounted)"),
                         (req.model_writable, "a Backend.AI 23.09 model service mounts its model "
                          "folder with the folder's own permission")):
            if bad:
                raise InvalidRequest(why)
        body: dict[str, Any] = {
            "name": req.name, "desired_session_count": req.replicas, "image": req.image,
            "arch": arch(), "open_to_public": req.public,
            "config": {"model": req.model_folder, "model_mount_destination": MODEL_MOUNT,
                       "environ": dict(req.env),
                       # {} (not null, which 23.09 cannot store): each route gets the image's minimum
                       "resources": dict(request.get("resources") or {})},
        }
        if self.config.group:
            body["group"] = self.config.group
        try:
            created = await self._send("POST", "/services", json_body=body)
        except NotFound as err:
            if "accept the session type" in err.message:
                raise BaiError(f"no scaling group of {self.where} accepts model services: an "
                               "administrator must allow the 'inference' session type on one "
                               f"({err.message})", status=409, code="no-inference-scaling-group") from None
            if "folder" in err.message.lower():
                raise NotFound(f"no model folder named '{req.model_folder}' on {self.where} (a "
                               f"model service needs a folder created with usage mode 'model'): "
                               f"{err.message}") from None
            raise
        except BaiError as err:
            if err.status == 503 and ("coordinator" in err.message or "not ready to start model" in err.message):
                raise BaiError(await self._no_app_proxy(
                    f"Backend.AI 23.09 creates model services only through one ({err.message})"),
                    status=503, code="no-app-proxy") from None
            raise
        return await self._service_of(str(created["endpoint_id"]))

    async def _endpoint_row(self, endpoint_id: str) -> dict[str, Any]:
        data = await self._gql(f"query($id: UUID!) {{ endpoint(endpoint_id: $id) {{ {_ENDPOINT_FIELDS} }} }}",
                               {"id": endpoint_id})
        row = data.get("endpoint")
        if not row:
            raise NotFound(f"no such service on {self.where}: {endpoint_id}")
        return dict(row)

    async def _route(self, route: Mapping[str, Any]) -> RouteInfo:
        """A route with its INFERENCE session's name, host port and (while it is not healthy)
        why: the session's status or the error that stopped it."""
        status = str(route.get("status") or "PROVISIONING")
        sid = str(route["session"]) if route.get("session") else None
        name, port, info = None, 0, None
        errors = (_json_field(route.get("error_data")) or {}).get("errors") or []
        if errors:
            info = "; ".join(_one_line(e.get("repr") or e.get("name")) for e in errors if isinstance(e, dict))
        if sid:
            data = await self._gql("query($id: UUID!) { compute_session(id: $id) { name status "
                                   "status_info status_data service_ports } }", {"id": sid})
            sess = data.get("compute_session") or {}
            name = sess.get("name")
            for sp in _json_field(sess.get("service_ports")) or []:
                if isinstance(sp, dict) and sp.get("is_inference") and sp.get("host_ports"):
                    port = int(sp["host_ports"][0] or 0)
            if not info and status != "HEALTHY" and sess:
                why = _pending_reason(sess.get("status_data")) or sess.get("status_info")
                info = f"session {sess.get('status')}" + (f": {_one_line(why)}" if why else "")
        return RouteInfo(id=str(route["routing_id"]), status=status if status in _ROUTE_STATUSES
                         else "PROVISIONING", session_id=sid, session_name=name, port=port,
                         status_info=info, version=0)

    async def _service_of(self, endpoint_id: str) -> ServiceInfo:
        row = await self._endpoint_row(endpoint_id)
        routes = await asyncio.gather(*(self._route(r) for r in row.get("routings") or []))
        replicas = int(row.get("desired_session_count") or 0)
        stage = str(row.get("lifecycle_stage") or "created").upper()
        status = service_status([r.status for r in routes], replicas, terminating=stage != "CREATED")
        if stage == "DESTROYED":
            status = ServiceStatus.STOPPED
        notes = []
        if not row.get("url") and stage == "CREATED":
            notes.append(await self._no_app_proxy("the endpoint has no URL") if routes and all(
                r.status == "HEALTHY" for r in routes) else "the endpoint has no URL yet (the "
                "cluster's app proxy gives it one once a route is healthy)")
        failed = [r.status_info for r in routes if r.status == "FAILED_TO_START" and r.status_info]
        notes += failed[:1]
        image = row.get("image_object") or {}
        folder = await self._folder_name(str(row.get("model") or ""))
        return ServiceInfo.model_validate({
            "id": str(row["endpoint_id"]), "name": row["name"], "status": str(status),
            "status_info": "; ".join(notes) or None, "endpoint": str(row.get("url") or ""),
            "public": bool(row.get("open_to_public")), "replicas": replicas,
            "image": f"{image.get('registry')}/{image.get('name')}:{image.get('tag')}" if image else "",
            "model_folder": folder, "runtime_variant": "custom", "routes": list(routes),
            "created_at": _epoch(row.get("created_at")) or None,
            # local-only features (the engine's autoscaler, notebook deploy), shown empty
            "autoscaling_rules": [], "scaling_decisions": [], "version": 0,
        })

    async def _folder_name(self, folder_id: str) -> str:
        if not folder_id:
            return ""
        want = uuid.UUID(folder_id)
        for row in await self._send("GET", "/folders") or []:
            try:
                if uuid.UUID(str(row.get("id"))) == want:
                    return str(row["name"])
            except ValueError:
                continue
        return folder_id

    async def _endpoint_id(self, name: str) -> str:
        if _UUID.match(name):
            return str(uuid.UUID(name))
        rows = await self._send("GET", "/services", params={"name": name}) if _SERVICE_NAME.match(name) else []
        for row in rows or []:
            if row.get("name") == name:
                return str(row["id"])
        raise NotFound(f"no such service: {name!r}")

    async def list_services(self) -> list[ServiceInfo]:
        rows = await self._send("GET", "/services") or []
        return list(await asyncio.gather(*(self._service_of(str(r["id"])) for r in rows)))

    async def get_service(self, name: str) -> ServiceInfo:
        return await self._service_of(await self._endpoint_id(name))

    async def scale_service(self, name: str, replicas: int) -> ServiceInfo:
        eid = await self._endpoint_id(name)
        await self._send("POST", f"/services/{eid}/scale", json_body={"to": int(replicas)})
        return await self._service_of(eid)

    async def delete_service(self, name: str) -> ServiceInfo:
        """Mark the endpoint for removal (DESTROYING, no routes wanted), then destroy its route
        sessions: 23.09's scheduler never stops a route still PROVISIONING (``scale_services``)
        and was seen leaving an UNHEALTHY one running, while a terminated route session always
        removes its route, after which the scheduler marks the endpoint DESTROYED."""
        eid = await self._endpoint_id(name)
        before = await self._service_of(eid)
        await self._send("DELETE", f"/services/{eid}")
        for route in before.routes:
            if route.status != "TERMINATING" and route.session_id:
                try:
                    await self.rest.destroy_session(route.session_id)
                except (NotFound, InvalidState):
                    pass
        try:
            return await self._service_of(eid)
        except NotFound:
            return before.model_copy(update={"status": "STOPPED", "routes": []})

    async def issue_service_token(self, name: str, ttl: str) -> ServiceToken:
        seconds = parse_ttl(ttl)
        info = await self.get_service(name)
        if not info.endpoint:
            raise InvalidState(await self._no_app_proxy(
                f"service '{info.name}' has no URL, so there is nothing a token could open "
                "(Backend.AI 23.09's app proxy issues service tokens)"))
        expires = int(time.time() + seconds)
        try:
            data = await self._send("POST", f"/services/{info.id}/token", json_body={"valid_until": expires})
        except BaiError as err:
            if err.status >= 500:
                raise BaiError(f"the app proxy of service '{info.name}' issued no token: {err.message}",
                               status=502, code="app-proxy-error") from None
            raise
        return ServiceToken(token=str(data["token"]), expires_at=float(expires))

    async def service_logs(self, name: str, tail: int | None) -> str:
        info = await self.get_service(name)
        parts = []
        for route in info.routes:
            if route.session_id is None:
                continue
            text = await self.session_logs(route.session_id, tail)
            parts.append(f"==> route {route.id} (session {route.session_name}, {route.status}) <==\n{text}")
        return "\n".join(parts)

    # -- pipelines: the local engine (the Jupyter server's) runs the job and starts each task
    #    as a batch session here, with this engine's keys from its engine list; a job is shown
    #    by the engine it runs on.

    def _pipeline_engine(self) -> str:
        if not self.config.name:
            raise Unsupported(f"pipelines on {self.where} run through a named engine: add it with "
                              "`engine add NAME --backendai URL ...` and `engine use NAME`")
        return self.config.name

    async def _runner(self) -> Driver:
        """The local engine that runs this cluster's pipeline jobs."""
        if self._local is None:
            from jupyter_bai.client.connection import EngineNotFound, find_engine
            from jupyter_bai.client.http import HttpDriver

            try:
                self._local = HttpDriver(find_engine())
            except EngineNotFound:
                raise BaiError(
                    f"pipelines on the cluster {self.where} are run by the local jupyter-bai "
                    "engine, and none is running: start JupyterLab or `jupyter bai serve`",
                    status=503, code="engine-not-found") from None
        return self._local

    async def submit_pipeline(self, spec: Mapping[str, Any]) -> PipelineJobInfo:
        engine = self._pipeline_engine()
        if spec.get("engine") not in (None, engine):
            raise InvalidRequest(f"the pipeline names engine {spec['engine']!r}, but the active "
                                 f"engine is {engine!r}")
        return await (await self._runner()).submit_pipeline({**spec, "engine": engine})

    async def list_pipeline_jobs(self) -> list[PipelineJobInfo]:
        engine = self._pipeline_engine()
        return [j for j in await (await self._runner()).list_pipeline_jobs() if j.engine == engine]

    async def get_pipeline_job(self, job: str) -> PipelineJobInfo:
        engine = self._pipeline_engine()
        info = await (await self._runner()).get_pipeline_job(job)
        if info.engine != engine:
            raise NotFound(f"pipeline job {job!r} runs on engine {info.engine!r}, not {engine!r}")
        return info

    async def cancel_pipeline_job(self, job: str) -> PipelineJobInfo:
        await self.get_pipeline_job(job)
        return await (await self._runner()).cancel_pipeline_job(job)

    async def rerun_pipeline_job(self, job: str) -> PipelineJobInfo:
        await self.get_pipeline_job(job)
        return await (await self._runner()).rerun_pipeline_job(job)

    async def pipeline_task_logs(self, job: str, task: str) -> str:
        await self.get_pipeline_job(job)
        return await (await self._runner()).pipeline_task_logs(job, task)

