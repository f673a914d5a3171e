"""The signed REST core of Backend.AI's manager API, shared by the client's
:class:`~jupyter_bai.client.backendai.BackendAIDriver` and the engine's cluster task launcher
(:mod:`jupyter_bai.engine.launchers`), which both speak to a 23.09 manager.

Every request is signed the way the manager checks it (``HMAC-SHA256`` keypair signature over
method, raw path, ``Date``, host, content type and ``X-BackendAI-Version``); error bodies
(``{"type", "title", "msg"}``) become one :class:`BaiError` line keeping the server's reason.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import platform
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx

from jupyter_bai.spec.errors import (
    BaiError,
    Conflict,
    InsufficientResources,
    NotFound,
    QuotaExceeded,
)

__all__ = ["API_VERSION", "BackendAIConfig", "BackendAIRest", "session_body", "sign"]

#: The API version Backend.AI 23.09 speaks (``ai.backend.client.config.API_VERSION``).
API_VERSION = "v7.20230615"
HASH = "sha256"
_EMPTY_HASH = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class BackendAIConfig:
    """Where the cluster is and the keypair to sign with (``secret_key`` is never shown)."""

    endpoint: str
    access_key: str
    secret_key: str
    #: The storage host new folders go to ("" lets the manager pick its default).
    vfolder_host: str = ""
    #: The project (group) sessions and folders belong to ("" = the manager's default).
    group: str = ""
    #: The engine's name in the engine list ("" when built by hand): the local engine finds
    #: the keypair by this name when it runs a pipeline's tasks on the cluster.
    name: str = ""

    def __repr__(self) -> str:
        return f"BackendAIConfig(endpoint={self.endpoint!r}, access_key={self.access_key!r})"


def sign(
    *, method: str, raw_path: str, date: str, host: str, content_type: str,
    access_key: str, secret_key: str, version: str = API_VERSION,
) -> str:
    """The ``Authorization`` header value for one request (``manager/api/auth.py`` checks it)."""
    day = datetime.fromisoformat(date).strftime("%Y%m%d")
    payload = (
        f"{method.upper()}\n{raw_path}\n{date}\nhost:{host}\ncontent-type:{content_type.lower()}\n"
        f"x-backendai-version:{version}\n{_EMPTY_HASH}"
    ).encode()
    key = hmac.new(secret_key.encode(), day.encode(), HASH).digest()
    key = hmac.new(key, host.encode(), HASH).digest()
    signature = hmac.new(key, payload, HASH).hexdigest()
    return f"BackendAI signMethod=HMAC-SHA256, credential={access_key}:{signature}"


class KeypairAuth(httpx.Auth):
    """Signs every request as it is sent (so retries and redirects get a fresh ``Date``)."""

    def __init__(self, access_key: str, secret_key: str) -> None:
        self._ak, self._sk = access_key, secret_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        date = datetime.now(timezone.utc).isoformat()
        ctype = request.headers.get("Content-Type", "application/octet-stream").split(";")[0].strip()
        request.headers["Date"] = date
        request.headers["X-BackendAI-Version"] = API_VERSION
        request.headers["Authorization"] = sign(
            method=request.method, raw_path=request.url.raw_path.decode("ascii"), date=date,
            host=request.headers["Host"], content_type=ctype or "application/octet-stream",
            access_key=self._ak, secret_key=self._sk,
        )
        yield request


def one_line(text: Any) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def server_error(status: int, body: bytes, where: str) -> BaiError:
    """A manager error answer (``{"type", "title", "msg"}``) as one line keeping its reason."""
    try:
        data = json.loads(body.decode("utf-8", "replace")) if body else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    kind = str(data.get("type") or "").rsplit("/", 1)[-1]
    title = one_line(data.get("title") or "")
    detail = one_line(data.get("msg") or data.get("message") or "")
    extra = data.get("data")
    if isinstance(extra, dict) and extra:
        detail = "; ".join(filter(None, [detail, ", ".join(f"{k}: {one_line(v)}" for k, v in extra.items())]))
    reason = title if not detail or detail == title else f"{title} ({detail})" if title else detail
    if not (kind or title or detail):
        return BaiError(f"the endpoint {where} answered HTTP {status} with no Backend.AI error "
                        "body: is it a Backend.AI manager?", status=502, code="bad-response")
    if status == 401:
        return BaiError(
            f"access key or secret key rejected by the Backend.AI manager at {where}"
            + (f": {reason}" if reason else ""), status=401, code="unauthorized")
    text = f"Backend.AI: {reason or f'HTTP {status}'}" + (f" [{kind}]" if kind else "")
    if status == 404 or kind.endswith("not-found"):
        return NotFound(text)
    if status == 403:
        return BaiError(text, status=403, code="forbidden")
    if status == 409 or kind.endswith("already-exists"):
        return Conflict(text)
    if kind in ("instance-not-available", "no-available-instances", "quota-exceeded"):
        return QuotaExceeded(text) if "quota" in kind else InsufficientResources(text)
    return BaiError(text, status=status if 400 <= status < 600 else 502,
                    code=kind or "backendai-error")


def transport_error(exc: httpx.TransportError, where: str, timeout: float) -> BaiError:
    if isinstance(exc, httpx.TimeoutException):
        return BaiError(f"the Backend.AI endpoint {where} did not answer within {timeout:g}s",
                        status=504, code="timeout")
    if isinstance(exc, httpx.ConnectError):
        return BaiError(f"cannot reach the Backend.AI endpoint {where}: {one_line(exc) or 'connection refused'}",
                        status=503, code="unreachable")
    return BaiError(f"lost the connection to the Backend.AI endpoint {where}: "
                    f"{one_line(exc) or type(exc).__name__}", status=502, code="connection-lost")


def json_field(value: Any) -> Any:
    """GraphQL JSONString fields arrive as text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


#: Backend.AI 23.09's session statuses while an agent makes (or pulls the image of) a container.
CREATING = frozenset({"SCHEDULED", "PULLING", "PREPARING"})
RUNNING = frozenset({"RUNNING", "RESTARTING", "RUNNING_DEGRADED"})


class BackendAIRest:
    """Signed calls to one manager (``send``, ``gql``) and unsigned storage-proxy transfers
    (authorised by the token in their URL)."""

    def __init__(self, config: BackendAIConfig, *, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.where = config.endpoint.rstrip("/")
        self.timeout = timeout
        self.http = httpx.AsyncClient(
            base_url=self.where, auth=KeypairAuth(config.access_key, config.secret_key),
            headers={"User-Agent": "jupyter-bai"}, transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )
        self.storage = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10.0), transport=transport)

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.storage.aclose()

    async def send(self, method: str, path: str, *, json_body: Any = None,
                   params: Mapping[str, str] | None = None, long: bool = False) -> Any:
        """One signed call; ``long``: the execute API, which answers when the code has output
        or ends (no read timeout; connecting is still bounded)."""
        timeout = httpx.Timeout(None, connect=min(self.timeout, 10.0)) if long else httpx.USE_CLIENT_DEFAULT
        try:
            resp = await self.http.request(method, path, json=json_body, params=params, timeout=timeout)
        except httpx.TransportError as exc:
            raise transport_error(exc, self.where, self.timeout) from None
        if resp.status_code >= 400:
            raise server_error(resp.status_code, resp.content, self.where)
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise BaiError(f"the Backend.AI endpoint {self.where} sent a non-JSON answer to "
                           f"{method} {path}: is it a Backend.AI manager?", status=502,
                           code="bad-response") from None

    async def gql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        data = await self.send("POST", "/admin/gql", json_body={"query": query, "variables": dict(variables or {})})
        if not isinstance(data, dict):
            raise BaiError("Backend.AI: empty GraphQL answer", status=502, code="bad-response")
        if data.get("errors"):
            raise BaiError(f"Backend.AI: {one_line(data['errors'][0].get('message'))}",
                           status=502, code="backendai-error")
        return dict(data.get("data") or {})

    async def destroy_session(self, sid: str, *, forced: bool = True, settle: float = 120.0,
                              poll: float = 0.5, recheck: float = 5.0) -> None:
        """``DELETE /session/{sid}``, made safe against two 23.09 races seen on the halfstack.

        - A session destroyed while its agent creates the container is marked gone, but the
          container starts anyway and keeps running, unseen, holding its CPU and memory. So
          this first waits, up to ``settle`` seconds, for it to leave SCHEDULED/PULLING/PREPARING.
        - A PENDING session cancelled while the scheduler places it goes CANCELLED, then
          SCHEDULED, PREPARING and RUNNING. So a PENDING one is watched for ``recheck`` seconds
          after its DELETE, and destroyed again if it comes back.

        The first DELETE's errors (no such session, already terminated) reach the caller.
        """
        deadline = time.monotonic() + settle
        status = await self.session_status(sid)
        first = True
        while True:
            while status in CREATING and time.monotonic() < deadline:
                await asyncio.sleep(poll)
                status = await self.session_status(sid)
            try:
                await self.send("DELETE", f"/session/{sid}",
                                params={"forced": "true"} if forced else None)
            except BaiError:
                if first:
                    raise
                return  # it ended meanwhile
            first = False
            if status != "PENDING" or time.monotonic() > deadline:
                return
            until = time.monotonic() + recheck
            while time.monotonic() < until:
                await asyncio.sleep(poll)
                status = await self.session_status(sid)
                if status in CREATING or status in RUNNING:
                    break  # placed after all: destroy it (again) once it is made
            else:
                return

    async def session_status(self, sid: str) -> str | None:
        """The session's 23.09 status name, or None when the manager has no such session."""
        data = await self.gql("query($id: UUID!) { compute_session(id: $id) { status } }",
                              {"id": sid})
        row = data.get("compute_session")
        return str(row["status"]) if row else None


def arch() -> str:
    """This machine's architecture as Backend.AI names it (images are looked up by it)."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine or "x86_64")


def session_body(*, name: str, image: str, type_: str, command: str | None, mounts: list[str],
                 mount_map: Mapping[str, str], env: Mapping[str, str],
                 resources: Mapping[str, Any], group: str = "") -> dict[str, Any]:
    """``POST /session``'s body for a single-node session, queued at once (``enqueueOnly``):
    the caller follows its status instead of holding the request open."""
    body: dict[str, Any] = {
        "name": name, "image": image, "type": type_,
        "config": {"mounts": list(mounts), "mount_map": dict(mount_map), "environ": dict(env),
                   "resources": dict(resources), "resource_opts": {}},
        "enqueueOnly": True, "maxWaitSeconds": 0, "reuseIfExists": False,
        "startupCommand": command, "clusterSize": 1,
        "clusterMode": "single-node", "architecture": arch(),
    }
    if group:
        body["group"] = group
    return body
