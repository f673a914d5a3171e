"""Write ``openapi.yaml`` from the route table, the handlers' declarations and the models.

``python -m jupyter_bai.api.openapi > jupyter_bai/api/openapi.yaml`` regenerates it; a test
fails when the committed file differs. Each handler method's :func:`~.base.api_method`
declaration gives the operation (id, summary, authz action, request/query/response models,
status, media types, errors); its docstring is the description; the schemas are
:mod:`jupyter_bai.spec.models` (and the request models of ``spec/``) as pydantic writes them.
"""
from __future__ import annotations

import inspect
import re
import sys
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from tornado.websocket import WebSocketHandler

from .._version import __version__
from ..spec.models import ErrorBody
from .base import API, BaiHandler, Operation
from .routes import route_table

METHODS = ("get", "post", "put", "delete", "patch")
REF = "#/components/schemas/{model}"

DESCRIPTION = """\
The REST API of the jupyter-bai engine, modelled on Backend.AI. It is served by the
`jupyter_bai` Jupyter server extension (or headless by `jupyter bai serve`) under
`{server}/bai/api/v1`. The Python client (`jupyter_bai.Client`), the `jupyter bai` CLI and
the `%bai` magics are thin layers over these routes. This document is generated from the
handlers and their pydantic models (`python -m jupyter_bai.api.openapi`).

Authentication is Jupyter's own: send `Authorization: token <TOKEN>` (the token is in
`JUPYTER_BAI_TOKEN` or the connection file `bai-engine.json` in the Jupyter runtime dir).
Unauthenticated requests get 403. Every operation is also checked by the Jupyter server's
`Authorizer` on the resource `bai` with the action named in `x-bai-action`: `read` (GET and
asking the assistant), `write` (creating, deleting, uploading, moving), `execute` (exec, run,
interrupt); a refused action is a 403 `forbidden`.

Every error is JSON `{"error": "<code>", "message": "<one line>"}`:
400 `invalid-request` / `insufficient-resources`, 403 `forbidden`, 404 `not-found`,
409 `conflict` / `invalid-state`, 413 `quota-exceeded`, 503 `runtime-unavailable`.

Resource slots travel as decimal strings (`{"cpu": "2", "mem": "25769803776",
"cuda.device": "0", "cuda.shares": "0.5"}`); requests also accept sizes such as `"1g"`.

Streams: `exec` and `run` answer `application/x-ndjson` (one JSON message per line),
`logs?follow=true` answers `text/plain` chunks, `events` answers `text/event-stream`.
"""

TAGS = [
    {"name": "resources", "description": "Node capacity and usage."},
    {"name": "sessions", "description": "Compute sessions (interactive, batch, inference)."},
    {"name": "vfolders", "description": "Virtual folders and their files."},
    {"name": "services", "description": "Model services: replicated inference routes behind a "
     "health-checked, token-guarded endpoint (`/services/<name>/` on the proxy's port)."},
    {"name": "engines", "description": "Configured engines (this node and Backend.AI clusters), "
     "the stored default, and a cluster's capacity and sessions; never their keys."},
    {"name": "events", "description": "Live change notifications."},
    {"name": "assistant", "description": "Questions about this API, answered from its own docs (and docs you add)."},
    {"name": "meta", "description": "This document."},
]

ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "`invalid-request` or `insufficient-resources`: the message says what to change."),
    403: ("Forbidden", "`forbidden`: missing or wrong token, or the server's authorizer refused the action."),
    404: ("NotFound", "`not-found`: no such session, folder or file."),
    409: ("Conflict", "`conflict` (the name is taken, the folder is mounted) or `invalid-state` "
                      "(the session cannot do that now)."),
    413: ("QuotaExceeded", "`quota-exceeded`: the folder's quota would be exceeded; nothing was written."),
    502: ("BadGateway", "A Backend.AI cluster behind the engine could not be reached, refused the keys "
                        "or failed; `error` is the cluster's reason (`unreachable`, `unauthorized`, ...)."),
    503: ("Unavailable", "`runtime-unavailable`: the engine or the requested runtime is not running."),
}

OTHER_PATH_PARAMETERS = {
    "job": "Pipeline job id.",
    "task": "Task name, as in the pipeline file.",
}

PATH_PARAMETERS = {
    "sessions": ("SessionName", "Session name or id."),
    "vfolders": ("VFolderName", "Folder name."),
    "services": ("ServiceName", "Service name or id."),
    "engines": ("EngineName", "Engine name (`GET /engines`); `local` is this engine."),
}


#: Descriptions for fields of the request models in ``spec/`` that carry none of their own
#: (the assistant indexes them); a model's own ``Field(description=...)`` always wins.
FIELD_DOCS: dict[str, dict[str, str]] = {
    "SessionSpec": {
        "type": "`interactive` sessions live until destroyed; `batch` ones run `command` and end; "
                "`inference` backs a model service.",
        "mounts": "Backend.AI mount grammar: `NAME`, `NAME:/path`, `NAME:/path:ro`, "
                  "`type=bind,source=NAME,target=/path,perm=ro`, or an object.",
        "env": "Extra environment; `BACKENDAI_*`, `CUDA_MPS_*`, `CUDA_VISIBLE_DEVICES` and "
               "`GPU_COUNT` are reserved.",
    },
    "VFolderCreate": {
        "name": "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit; unique.",
        "usage_mode": "`general`, `data` or `model` (a model folder can back a model service).",
        "permission": "How sessions mount it by default: `rw` or `ro`.",
    },
}


class UndeclaredOperation(RuntimeError):
    """A served route whose handler method does not declare its operation."""


def served_operations() -> list[tuple[str, str, Any]]:
    """``(path, method, handler class)`` of every route, from the route table."""
    out = []
    for pattern, handler in route_table():
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)
        if issubclass(handler, WebSocketHandler):
            out.append((path, "get", handler))
            continue
        for method in METHODS:
            if method in vars(handler):
                out.append((path, method, handler))
    return out


def operation_of(handler: type[BaiHandler], method: str) -> Operation:
    op = getattr(vars(handler)[method], "operation", None)
    if not isinstance(op, Operation) or not op.operation_id or not op.summary or not op.tag:
        raise UndeclaredOperation(
            f"{handler.__name__}.{method} does not declare its operation: use "
            "@api_method(ACTION, operation_id=..., tag=..., summary=..., response=...)"
        )
    return op


def _strip_titles(schema: Any) -> Any:
    """pydantic's auto titles ("Name" for ``name``) add nothing for readers or the assistant."""
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items()
                if not (k == "title" and isinstance(v, str))}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def _nullable_free(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema without the ``null`` branch of ``Optional``."""
    branches = schema.get("anyOf")
    if branches:
        rest = [b for b in branches if b.get("type") != "null"]
        if len(rest) == 1:
            schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **rest[0]}
    return schema


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    if op.query is not None:
        schema = op.query.model_json_schema()
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            prop = _strip_titles(_nullable_free(dict(prop)))
            desc = prop.pop("description", "")
            if prop.get("default") is None:
                prop.pop("default", None)
            param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
            if desc:
                param["description"] = desc
            param["schema"] = prop
            params.append(param)
    for name, desc in op.headers:
        params.append({"name": name, "in": "header", "required": False, "description": desc,
                       "schema": {"type": "string"}})
    return params


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "tags": [op.tag], "summary": op.summary}
    if op.description:
        out["description"] = op.description
    out["x-bai-action"] = op.action
    params = _parameters(op)
    if params:
        out["parameters"] = params
    if op.request is not None:
        out["requestBody"] = {"required": True, "content": {op.request_content: {"schema": _ref(op.request)}}}
    elif op.request_content != "application/json":
        out["requestBody"] = {"required": True, "content": {op.request_content: {
            # Any bytes are a file: no JSON type applies to a raw body (OpenAPI 3.1 style).
            "schema": {"contentMediaType": op.request_content}}}}
    ok: dict[str, Any] = {"description": op.returns}
    if op.status != 204:
        content: dict[str, Any] = {}
        if op.response is not None:
            content[op.content] = {"schema": _ref(op.response)}
        elif op.stream is not None:
            content[op.content] = {"schema": _ref(op.stream)}
        elif op.content == "application/octet-stream":
            ok["headers"] = {"Content-Length": {"schema": {"type": "integer"}}}
            content[op.content] = {"schema": {"type": "string", "contentMediaType": op.content}}
        elif op.content == "application/yaml":  # a document: clients parse it to an object
            content[op.content] = {"schema": {"type": "object"}}
        else:
            content[op.content] = {"schema": {"type": "string"}}
        for media, note in op.alt_content:
            alt = {"type": "string"} if media.startswith("text/") else {"type": "object"}
            content[media] = {"schema": {**alt, "description": f"Served {note}."}}
        ok["content"] = content
    responses: dict[str, Any] = {str(op.status): ok}
    # Any query string or body can be malformed (a bad boolean, integer, path or JSON): 400.
    bad_input = {400} if (op.query is not None or op.request is not None) else set()
    for code in sorted({403, *bad_input, *op.errors}):
        responses[str(code)] = {"$ref": f"#/components/responses/{ERROR_RESPONSES[code][0]}"}
    out["responses"] = responses
    return out


def _websocket(handler: type[Any]) -> dict[str, Any]:
    doc = inspect.cleandoc(handler.__doc__ or "A WebSocket.")
    return {
        "operationId": getattr(handler, "operation_id", f"open{handler.__name__.removesuffix('Handler')}"),
        "tags": [getattr(handler, "tag", "events")],
        "summary": doc.splitlines()[0],
        "description": doc,
        "x-bai-action": "read",
        "responses": {"101": {"description": "Switching Protocols: the WebSocket is open."},
                      "403": {"$ref": "#/components/responses/Forbidden"}},
    }


def _schemas(ops: list[Operation]) -> dict[str, Any]:
    """Every model the operations name, with their nested models, as component schemas."""
    wanted: dict[type[BaseModel], str] = {ErrorBody: "serialization"}
    for op in ops:
        if op.request is not None:
            wanted[op.request] = "validation"
        for model in (op.response, op.stream):
            if model is not None:
                wanted.setdefault(model, "serialization")
                for variant in getattr(model, "json_schema_one_of", ()):
                    wanted.setdefault(variant, "serialization")
    _, top = models_json_schema([(m, mode) for m, mode in wanted.items()], ref_template=REF)  # type: ignore[arg-type]
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    for model in wanted:
        variants = getattr(model, "json_schema_one_of", ())
        if variants:
            schemas[model.__name__] = {"description": inspect.cleandoc(model.__doc__ or ""),
                                       "anyOf": [_ref(v) for v in variants]}
    for model_name, fields in FIELD_DOCS.items():
        props = schemas.get(model_name, {}).get("properties", {})
        for field, text in fields.items():
            if field in props and not props[field].get("description"):
                props[field] = {**props[field], "description": text}
    return {k: _strip_titles(schemas[k]) for k in sorted(schemas)}


def build() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    paths: dict[str, dict[str, Any]] = {}
    ops: list[Operation] = []
    used_params: set[str] = set()
    for path, method, handler in served_operations():
        item = paths.setdefault(path, {})
        if issubclass(handler, WebSocketHandler):
            item[method] = _websocket(handler)
            continue
        op = operation_of(handler, method)
        ops.append(op)
        if "{name}" in path and "parameters" not in item:
            pname = PATH_PARAMETERS[op.tag][0]
            item["parameters"] = [{"$ref": f"#/components/parameters/{pname}"}]
            used_params.add(op.tag)
        for other in re.findall(r"\{(\w+)\}", path):  # every other path segment is documented too
            if other != "name" and not any(p.get("name") == other for p in item.get("parameters", [])):
                item.setdefault("parameters", []).append(
                    {"name": other, "in": "path", "required": True,
                     "description": OTHER_PATH_PARAMETERS.get(other, other), "schema": {"type": "string"}})
        item[method] = _operation(op)
    parameters = {
        PATH_PARAMETERS[tag][0]: {"name": "name", "in": "path", "required": True,
                                  "description": PATH_PARAMETERS[tag][1], "schema": {"type": "string"}}
        for tag in sorted(used_params)
    }
    error_content = {"application/json": {"schema": _ref(ErrorBody)}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jupyter-bai engine API",
            "version": __version__,
            "summary": "Compute sessions, virtual folders and node resources of a local jupyter-bai engine.",
            "description": DESCRIPTION,
            "license": {"name": "BSD-3-Clause"},
        },
        "servers": [{"url": "http://127.0.0.1:8888",
                     "description": f"A Jupyter server with the jupyter_bai extension (paths below include {API})."}],
        "security": [{"token": []}],
        "tags": TAGS,
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "Authorization",
                                          "description": "Jupyter's token auth: `Authorization: token <TOKEN>`."}},
            "parameters": parameters,
            "responses": {name: {"description": desc, "content": error_content}
                          for _code, (name, desc) in sorted(ERROR_RESPONSES.items())},
            "schemas": _schemas(ops),
        },
    }


class _Dumper(yaml.SafeDumper):
    """Block scalars for multi-line text, so the file reads like the hand-written one did."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    """``openapi.yaml``'s text."""
    header = "# Generated by `python -m jupyter_bai.api.openapi`; edit the handlers and models, not this file.\n"
    return header + yaml.dump(build(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
