"""openapi.yaml is generated from the handlers and models, and the live engine answers as it says.

Both ways: every served route is documented and every documented operation is served; the
request and response schemas are the models'; and a real engine's answers (JSON bodies,
stream messages, errors, media types) validate against the committed document.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator

from jupyter_bai.api.base import OPENAPI_PATH, Operation
from jupyter_bai.api.openapi import render
from jupyter_bai.api.routes import route_table

METHODS = ("get", "post", "put", "delete", "patch")
SPEC: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text())


def served_operations() -> dict[tuple[str, str], Operation | None]:
    ops: dict[tuple[str, str], Operation | None] = {}
    for pattern, handler in route_table():
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)
        for method in METHODS:
            if method in vars(handler):
                ops[(method, path)] = getattr(vars(handler)[method], "operation", None)
    return ops


def documented() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): op
        for path, item in SPEC["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def test_committed_file_is_the_generated_one() -> None:
    assert OPENAPI_PATH.read_text() == render(), (
        "openapi.yaml is stale: python -m jupyter_bai.api.openapi > jupyter_bai/api/openapi.yaml"
    )


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    served, docs = set(served_operations()), set(documented())
    assert served - docs == set(), "routes missing from openapi.yaml"
    assert docs - served == set(), "openapi.yaml documents routes that do not exist"


def test_every_operation_has_an_id_summary_action_and_error_responses() -> None:
    ids = []
    for (method, path), op in documented().items():
        assert op.get("operationId") and op.get("summary"), (method, path)
        assert "403" in op["responses"], (method, path)
        for code, resp in op["responses"].items():
            if code.startswith(("4", "5")):
                ref = resp["$ref"].rsplit("/", 1)[-1]
                content = SPEC["components"]["responses"][ref]["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
        executes = path.endswith(("/exec", "/run", "/interrupt"))
        reads = method == "get" or op["operationId"] in ("askAssistant", "checkDeploy")
        expected = "execute" if executes else "read" if reads else "write"
        assert op["x-bai-action"] == expected, (method, path)
        ids.append(op["operationId"])
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def _component(ref: str) -> dict[str, Any]:
    return SPEC["components"]["schemas"][ref.rsplit("/", 1)[-1]]


@pytest.mark.parametrize("key", sorted(served_operations()), ids=lambda k: f"{k[0]} {k[1]}")
def test_request_and_response_schemas_are_the_models(key: tuple[str, str]) -> None:
    op, doc = served_operations()[key], documented()[key]
    if op is None:  # a WebSocket (its protocol is in the route's description)
        assert "101" in doc["responses"] and doc.get("description"), key
        return
    if op.request is not None:
        schema = doc["requestBody"]["content"][op.request_content]["schema"]
        props = _component(schema["$ref"]).get("properties", {})
        model = op.request.model_json_schema()
        assert set(props) == set(model["properties"]), key
        assert set(_component(schema["$ref"]).get("required", [])) == set(model.get("required", []))
    if op.response is not None:
        schema = doc["responses"][str(op.status)]["content"][op.content]["schema"]
        props = _component(schema["$ref"]).get("properties", {})
        assert set(props) == set(op.response.model_json_schema(mode="serialization")["properties"]), key
    if op.query is not None:
        names = {p["name"] for p in doc.get("parameters", []) if p["in"] == "query"}
        assert names == set(op.query.model_fields), key
    assert str(op.status) in doc["responses"]


# --------------------------------------------------------------------------- a live engine


def _validator(schema_name: str) -> Draft202012Validator:
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": SPEC["components"]}
    return Draft202012Validator(root)


def check(schema_name: str, data: Any) -> None:
    errors = sorted(_validator(schema_name).iter_errors(data), key=str)
    assert not errors, f"{schema_name}: {errors[0].message} in {json.dumps(data)[:300]}"


def media(r: httpx.Response) -> str:
    return r.headers["content-type"].split(";")[0].strip()


def test_live_answers_match_the_document(engine: Any, client: Any, tmp_path: Any) -> None:
    base = f"{engine.url}/bai/api/v1"
    tag = os.getpid()
    sess, batch, folder = f"oas{tag}", f"oasb{tag}", f"oasf{tag}"
    with httpx.Client(base_url=base, headers={"Authorization": f"token {engine.token}"}, timeout=60) as h:
        r = h.get("/openapi.yaml")
        assert r.status_code == 200 and media(r) == "application/yaml"
        assert yaml.safe_load(r.text)["paths"].keys() == SPEC["paths"].keys()
        for path, name in (("/resources", "Resources"), ("/images", "ImageList"), ("/vfolders", "VFolderList")):
            r = h.get(path)
            assert r.status_code == 200 and media(r) == "application/json", path
            check(name, r.json())

        r = h.post("/sessions", json={"image": "local", "name": sess})
        assert r.status_code == 201
        check("SessionInfo", r.json())
        client.wait_session(sess, timeout=60)
        check("SessionList", h.get("/sessions").json())
        check("SessionInfo", h.get(f"/sessions/{sess}").json())
        check("LogsText", h.get(f"/sessions/{sess}/logs", params={"tail": 5}).json())
        with h.stream("POST", f"/sessions/{sess}/exec", json={"command": "echo hi; exit 3"}) as r:
            assert media(r) == "application/x-ndjson"
            msgs = [json.loads(line) for line in r.iter_lines() if line.strip()]
        assert msgs[-1]["exit_code"] == 3
        for m in msgs:
            check("ExecMessage", m)
        with h.stream("POST", f"/sessions/{sess}/run", json={"code": "print(1)\n2\n1/0"}) as r:
            assert media(r) == "application/x-ndjson"
            msgs = [json.loads(line) for line in r.iter_lines() if line.strip()]
        assert msgs[-1]["status"] == "error"
        for m in msgs:
            check("RunMessage", m)
        check("Interrupted", h.post(f"/sessions/{sess}/interrupt").json())
        r = h.delete(f"/sessions/{sess}")
        assert r.status_code == 200
        check("SessionInfo", r.json())

        client.create_session("local", name=batch, type="batch", command="true", wait=True, timeout=60)
        r = h.get(f"/sessions/{batch}/logs", params={"follow": "true"})
        assert r.status_code == 200 and media(r) == "text/plain" and r.text == ""

        r = h.post("/vfolders", json={"name": folder})
        assert r.status_code == 201
        check("VFolderInfo", r.json())
        check("VFolderInfo", h.get(f"/vfolders/{folder}").json())
        r = h.put(f"/vfolders/{folder}/files", params={"path": "a/b.txt", "parents": "true"}, content=b"xyz")
        assert r.status_code == 201
        check("FileEntry", r.json())
        check("FileList", h.get(f"/vfolders/{folder}/files", params={"path": "a"}).json())
        r = h.post(f"/vfolders/{folder}/mkdir", json={"path": "c"})
        assert r.status_code == 201
        check("FileEntry", r.json())
        check("FileEntry", h.post(f"/vfolders/{folder}/move", json={"src": "a/b.txt", "dst": "c/b.txt"}).json())
        r = h.get(f"/vfolders/{folder}/download", params={"path": "c/b.txt"})
        assert media(r) == "application/octet-stream" and r.content == b"xyz"
        assert h.post(f"/vfolders/{folder}/rm", json={"path": "c", "recursive": True}).status_code == 204
        assert h.delete(f"/vfolders/{folder}").status_code == 204

        with h.stream("GET", "/events", params={"since": 0}) as r:
            assert media(r) == "text/event-stream"
            for line in r.iter_lines():
                if line.startswith("data: "):
                    check("Event", json.loads(line[6:]))
                    break

        r = h.post("/assistant/ask", json={"question": "how do I list sessions?", "top_k": 2})
        check("AssistantAnswer", r.json())
        check("AssistantSources", h.get("/assistant/sources").json())

        for r in (h.get("/sessions/no-such-session"), h.post("/sessions", json={"image": ""}),
                  httpx.get(f"{base}/resources")):
            assert r.status_code in (400, 403, 404) and media(r) == "application/json"
            check("ErrorBody", r.json())


def test_a_websocket_route_is_documented_as_an_upgrade(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's multiplexed ``/ws`` (a tornado WebSocketHandler) is documented, not modelled."""
    from tornado.websocket import WebSocketHandler

    from jupyter_bai.api import openapi

    class EventsSocketHandler(WebSocketHandler):
        """One WebSocket that multiplexes event subscriptions.

        Send `{"subscribe": ["session", "metrics"]}`; receive Event objects as JSON text frames.
        """

    table = [*route_table(), ("/bai/api/v1/ws", EventsSocketHandler)]
    monkeypatch.setattr(openapi, "route_table", lambda: table)
    op = openapi.build()["paths"]["/bai/api/v1/ws"]["get"]
    assert op["summary"] == "One WebSocket that multiplexes event subscriptions."
    assert "subscribe" in op["description"] and set(op["responses"]) == {"101", "403"}
    assert op["operationId"] == "openEventsSocket" and op["x-bai-action"] == "read"
