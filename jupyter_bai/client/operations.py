"""Every REST operation described once: request bodies and the HTTP calls of ``HttpDriver``."""
from __future__ import annotations

import os
from collections.abc import (
    Callable,
    Iterable,
    Mapping,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jupyter_bai.client.connection import (
    EngineNotFound,
)
from jupyter_bai.spec.errors import (
    BaiError,
    Conflict,
    InsufficientResources,
    InvalidRequest,
    InvalidState,
    NotFound,
    QuotaExceeded,
    RuntimeUnavailable,
)

#: Statuses a session never leaves.
TERMINAL_STATUSES: frozenset[str] = frozenset({"TERMINATED", "ERROR", "CANCELLED"})
#: The road to RUNNING, in order (progress bars count along it).
START_STATUSES: tuple[str, ...] = ("PENDING", "SCHEDULED", "PREPARING", "RUNNING")

#: ``on_output(stream_name, text)``: stream_name is ``"stdout"`` or ``"stderr"``.
OutputCallback = Callable[[str, str], None]
#: ``progress(done_bytes, total_bytes, current_remote_or_local_path)``, cumulative over a call.
TransferProgress = Callable[[int, int, str], None]
#: ``progress(session)``: called with the session each time its status changes while waiting.
SessionProgress = Callable[[dict[str, Any]], None]

DEFAULT_TIMEOUT = 30.0
CHUNK_SIZE = 1 << 20

_ERROR_CLASSES: dict[str, type[BaiError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        InsufficientResources,
        NotFound,
        Conflict,
        InvalidState,
        QuotaExceeded,
        RuntimeUnavailable,
        EngineNotFound,
    )
}


# --------------------------------------------------------------------------- request building


@dataclass(frozen=True)
class Call:
    """One REST request, independent of the HTTP client that sends it."""

    method: str
    path: str  # relative to ``{url}/bai/api/v1``
    params: dict[str, str] | None = None
    json: Any = None


def _q(name: str) -> str:
    """Quote a name or id for use as one path segment."""
    return quote(str(name), safe="")


def _kv(items: Mapping[str, Any] | Iterable[str] | None, what: str) -> dict[str, str]:
    """``{"k": v}`` or ``["k=v", ...]`` as a dict of strings; a malformed item is a user error."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {str(k): _str_value(v) for k, v in items.items()}
    if isinstance(items, str):
        items = [items]
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"invalid {what} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def _resources(items: Mapping[str, Any] | Iterable[str] | None) -> dict[str, str]:
    """Typed ``["cpu=1", "mem=1g"]`` checked with the spec's rules (same messages as the API),
    then sent as typed so the engine applies its own defaults to the slots left out."""
    if items is None or isinstance(items, Mapping):
        return {k: v.strip() for k, v in _kv(items, "resource").items()}
    items = [items] if isinstance(items, str) else list(items)
    from jupyter_bai.spec.resources import ResourceSlots

    ResourceSlots.parse(items)
    return {k: v.strip() for k, v in _kv([str(i).strip() for i in items], "resource").items()}


def _env(items: Mapping[str, Any] | Iterable[str] | None) -> dict[str, str]:
    """``-e K=V`` items validated by the spec (reserved names, duplicates) before sending."""
    if items is None or isinstance(items, Mapping):
        return _kv(items, "environment variable")
    from jupyter_bai.spec.session import parse_env

    return parse_env(list(items) if not isinstance(items, str) else [items])


def _str_value(v: Any) -> str:
    """Slot values travel as decimal strings so fractions keep their precision."""
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def _clean_remote(path: str | None) -> str:
    """A vfolder-relative path without leading/trailing slashes (the server checks escapes)."""
    return (path or "").strip("/")


class _ops:
    """Request builders: the single description of every route the client uses."""

    @staticmethod
    def resources() -> Call:
        return Call("GET", "/resources")

    @staticmethod
    def metrics() -> Call:
        return Call("GET", "/metrics")

    @staticmethod
    def list_images() -> Call:
        return Call("GET", "/images")

    @staticmethod
    def session_body(
        image: str,
        *,
        name: str | None,
        type: str,
        command: str | None,
        resources: Mapping[str, Any] | Iterable[str] | None,
        mounts: Iterable[str] | None,
        env: Mapping[str, Any] | Iterable[str] | None,
        idle_timeout: float | None,
        max_lifetime: float | None,
        labels: Mapping[str, str] | None = None,
        binds: Iterable[Mapping[str, str]] | None = None,
        ports: Iterable[int] | None = None,
    ) -> dict[str, Any]:
        """The ``SessionSpec`` JSON, checked here first so typos fail before any request."""
        body: dict[str, Any] = {
            "image": image,
            "type": type,
            "resources": _resources(resources),
            "mounts": list(mounts or []),
            "env": _env(env),
        }
        if name is not None:
            body["name"] = name
        if command is not None:
            body["command"] = command
        if idle_timeout is not None:
            body["idle_timeout"] = idle_timeout
        if max_lifetime is not None:
            body["max_lifetime"] = max_lifetime
        if labels:
            body["labels"] = dict(labels)
        if binds:
            body["binds"] = [dict(b) for b in binds]
        if ports:
            body["ports"] = [int(p) for p in ports]
        return body

    @staticmethod
    def create_session(body: Mapping[str, Any]) -> Call:
        return Call("POST", "/sessions", json=dict(body))

    @staticmethod
    def create_service(body: Mapping[str, Any]) -> Call:
        return Call("POST", "/services", json=dict(body))

    @staticmethod
    def check_deploy(notebook: str) -> Call:
        return Call("POST", "/deploy/check", json={"notebook": notebook})

    @staticmethod
    def deploy_notebook(name: str, body: Mapping[str, Any]) -> Call:
        return Call("POST", f"/services/{_q(name)}/deploy", json=dict(body))

    @staticmethod
    def rollback_service(name: str) -> Call:
        return Call("POST", f"/services/{_q(name)}/rollback")

    @staticmethod
    def service_versions(name: str) -> Call:
        return Call("GET", f"/services/{_q(name)}/versions")

    @staticmethod
    def list_services() -> Call:
        return Call("GET", "/services")

    @staticmethod
    def get_service(name: str) -> Call:
        return Call("GET", f"/services/{_q(name)}")

    @staticmethod
    def scale_service(name: str, replicas: int) -> Call:
        return Call("POST", f"/services/{_q(name)}/scale", json={"replicas": replicas})

    @staticmethod
    def delete_service(name: str) -> Call:
        return Call("DELETE", f"/services/{_q(name)}")

    @staticmethod
    def issue_service_token(name: str, ttl: str) -> Call:
        return Call("POST", f"/services/{_q(name)}/token", json={"ttl": ttl})

    @staticmethod
    def add_autoscale_rule(name: str, rule: Mapping[str, Any]) -> Call:
        return Call("POST", f"/services/{_q(name)}/autoscale", json=dict(rule))

    @staticmethod
    def remove_autoscale_rule(name: str, rule: str) -> Call:
        return Call("DELETE", f"/services/{_q(name)}/autoscale", params={"rule": rule})

    @staticmethod
    def service_logs(name: str, tail: int | None) -> Call:
        params = {"tail": str(int(tail))} if tail is not None else None
        return Call("GET", f"/services/{_q(name)}/logs", params=params)

    @staticmethod
    def list_sessions(status: str | None) -> Call:
        return Call("GET", "/sessions", params={"status": status} if status else None)

    @staticmethod
    def get_session(name: str) -> Call:
        return Call("GET", f"/sessions/{_q(name)}")

    @staticmethod
    def session_logs(name: str, tail: int | None) -> Call:
        params = {"tail": str(int(tail))} if tail is not None else None
        return Call("GET", f"/sessions/{_q(name)}/logs", params=params)

    @staticmethod
    def follow_logs(name: str) -> Call:
        return Call("GET", f"/sessions/{_q(name)}/logs", params={"follow": "true"})

    @staticmethod
    def exec(name: str, command: str | Iterable[str], env: Mapping[str, Any] | None) -> Call:
        body: dict[str, Any] = {
            "command": command if isinstance(command, str) else [str(c) for c in command]
        }
        if env:
            body["env"] = _kv(env, "environment variable")
        return Call("POST", f"/sessions/{_q(name)}/exec", json=body)

    @staticmethod
    def run_code(name: str, code: str) -> Call:
        return Call("POST", f"/sessions/{_q(name)}/run", json={"code": code})

    @staticmethod
    def interrupt(name: str) -> Call:
        return Call("POST", f"/sessions/{_q(name)}/interrupt")

    @staticmethod
    def submit_pipeline(spec: Mapping[str, Any]) -> Call:
        return Call("POST", "/pipelines/jobs", json=dict(spec))

    @staticmethod
    def list_pipeline_jobs() -> Call:
        return Call("GET", "/pipelines/jobs")

    @staticmethod
    def get_pipeline_job(job: str) -> Call:
        return Call("GET", f"/pipelines/jobs/{_q(job)}")

    @staticmethod
    def cancel_pipeline_job(job: str) -> Call:
        return Call("POST", f"/pipelines/jobs/{_q(job)}/cancel")

    @staticmethod
    def rerun_pipeline_job(job: str) -> Call:
        return Call("POST", f"/pipelines/jobs/{_q(job)}/rerun")

    @staticmethod
    def pipeline_task_logs(job: str, task: str) -> Call:
        return Call("GET", f"/pipelines/jobs/{_q(job)}/tasks/{_q(task)}/logs")

    @staticmethod
    def destroy_session(name: str, forced: bool) -> Call:
        return Call(
            "DELETE", f"/sessions/{_q(name)}", params={"forced": "true" if forced else "false"}
        )

    @staticmethod
    def vfolder_body(
        name: str, usage_mode: str, permission: str, quota: int | str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "usage_mode": usage_mode, "permission": permission}
        if quota is not None:
            body["quota"] = quota
        return body

    @staticmethod
    def create_vfolder(body: Mapping[str, Any]) -> Call:
        return Call("POST", "/vfolders", json=dict(body))

    @staticmethod
    def list_vfolders() -> Call:
        return Call("GET", "/vfolders")

    @staticmethod
    def get_vfolder(name: str) -> Call:
        return Call("GET", f"/vfolders/{_q(name)}")

    @staticmethod
    def delete_vfolder(name: str) -> Call:
        return Call("DELETE", f"/vfolders/{_q(name)}")

    @staticmethod
    def list_files(name: str, path: str) -> Call:
        return Call("GET", f"/vfolders/{_q(name)}/files", params={"path": _clean_remote(path)})

    @staticmethod
    def upload_file(name: str, path: str, parents: bool) -> Call:
        params = {"path": _clean_remote(path)}
        if parents:
            params["parents"] = "true"
        return Call("PUT", f"/vfolders/{_q(name)}/files", params=params)

    @staticmethod
    def download_file(name: str, path: str) -> Call:
        return Call("GET", f"/vfolders/{_q(name)}/download", params={"path": _clean_remote(path)})

    @staticmethod
    def mkdir(name: str, path: str, parents: bool) -> Call:
        return Call(
            "POST",
            f"/vfolders/{_q(name)}/mkdir",
            json={"path": _clean_remote(path), "parents": bool(parents)},
        )

    @staticmethod
    def move(name: str, src: str, dst: str) -> Call:
        return Call(
            "POST",
            f"/vfolders/{_q(name)}/move",
            json={"src": _clean_remote(src), "dst": _clean_remote(dst)},
        )

    @staticmethod
    def rm(name: str, path: str, recursive: bool) -> Call:
        return Call(
            "POST",
            f"/vfolders/{_q(name)}/rm",
            json={"path": _clean_remote(path), "recursive": bool(recursive)},
        )

    @staticmethod
    def events(since: int | None) -> Call:
        return Call("GET", "/events", params={"since": str(int(since))} if since is not None else None)

    @staticmethod
    def ask_body(question: str, top_k: int, history: list[dict[str, str]] | None, stream: bool,
                 source: str | None = None, llm: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"question": question, "top_k": top_k, "stream": stream}
        if source:
            body["source"] = source
        if llm:
            body["llm"] = llm
        if history:
            body["history"] = [{"question": str(t.get("question", "")), "answer": str(t.get("answer", ""))}
                               for t in history]
        return body

    @staticmethod
    def ask(body: Mapping[str, Any]) -> Call:
        return Call("POST", "/assistant/ask", json=dict(body))

    @staticmethod
    def assistant_sources() -> Call:
        return Call("GET", "/assistant/sources")

    @staticmethod
    def assistant_learn(path: str | os.PathLike[str]) -> Call:
        # the engine runs on this machine: send an absolute path so "./docs" means the caller's
        return Call("POST", "/assistant/sources", json={"path": local_path(path)})

    @staticmethod
    def assistant_forget(source: str | os.PathLike[str]) -> Call:
        return Call("DELETE", "/assistant/sources", params={"source": source_ref(source)})


def local_path(path: str | os.PathLike[str]) -> str:
    """A path the engine (on this machine) reads: absolute, so "./docs" means the caller's."""
    return str(Path(path).expanduser().absolute())


def source_ref(source: str | os.PathLike[str]) -> str:
    """A learned source as the assistant lists it (``builtin:...`` or an absolute path)."""
    src = str(source)
    return src if src.startswith("builtin:") or os.path.isabs(src) else local_path(src)


