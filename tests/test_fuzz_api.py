"""Schemathesis over ``openapi.yaml`` against a live engine: no 5xx, every answer as documented.

Every operation is fuzzed, session creation included, with valid and schema-violating inputs
(a schema-violating request must be refused with a 4xx). Path names are the generated ones a
third of the time and otherwise a real session or folder made here, so the bodies of exec, run,
upload, mkdir, move and rm reach the engine instead of stopping at 404. What the run creates is
destroyed at the end. ``JUPYTER_BAI_FUZZ_EXAMPLES`` raises the examples per operation (default
25, about a minute here; 100 runs in under three).
"""
from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from engine_proc import Api, EngineProcess, start_engine
from jupyter_bai.api.base import OPENAPI_PATH

EXAMPLES = int(os.environ.get("JUPYTER_BAI_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
TERMINAL = ("TERMINATED", "ERROR", "CANCELLED")

# The WebSocket route is not an HTTP operation: a plain GET without the upgrade is refused by
# tornado itself (400, text/html). tests/test_ws.py covers it; it is the one route left out.
schema = schemathesis.openapi.from_path(str(OPENAPI_PATH)).exclude(path="/bai/api/v1/ws")
# Unknown query parameters are ignored, as HTTP APIs do; schemathesis would otherwise invent
# them and expect a 4xx. Everything else, including every operation, is generated.
schema.config.generation.update(allow_extra_parameters=False)

# Which real object an operation's {name} points at when it is not the generated one.
REAL_NAMES = {
    "getSession": "fuzz",
    "execInSession": "fuzz",
    "runCode": "fuzz",
    "interruptSession": "fuzz",
    "getSessionLogs": "fuzz-done",  # ended, so `follow=true` ends too
    "destroySession": "fuzz-victim",
    "getVfolder": "fuzz",
    "listFiles": "fuzz",
    "uploadFile": "fuzz",
    "downloadFile": "fuzz",
    "makeDirectory": "fuzz",
    "moveFile": "fuzz",
    "removeFile": "fuzz",
    "deleteVfolder": "fuzz-victim",
}


@pytest.fixture(scope="module")
def fuzz_engine(tmp_path_factory: pytest.TempPathFactory, bwrap: str) -> Iterator[EngineProcess]:
    eng = start_engine(
        tmp_path_factory.mktemp("fuzz"),
        {"JUPYTER_BAI_FAKE_GPUS": '[{"name": "Fake GPU A", "memory": "16g"}]'},
    )
    api = Api(eng)
    try:
        for folder in ("fuzz", "fuzz-victim"):
            r = api.post("/vfolders", json={"name": folder, "quota": "1m"})
            assert r.status_code == 201, r.text
        small = {"cpu": "0.1", "mem": "64m"}
        api.create(name="fuzz", resources=small)
        api.create(name="fuzz-victim", resources=small)
        api.create(name="fuzz-done", type="batch", command="echo fuzz", resources=small)
        for name in ("fuzz", "fuzz-victim"):
            assert api.wait(name)["status"] == "RUNNING"
        assert api.wait("fuzz-done", ("TERMINATED",))["status"] == "TERMINATED"
        yield eng
    finally:
        _destroy_all(api)
        eng.stop()


def _destroy_all(api: Api) -> None:
    """End every session the run made (the fuzzer's own creates included)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        live = [s for s in api.get("/sessions").json()["sessions"] if s["status"] not in TERMINAL]
        if not live:
            return
        for s in live:
            api.delete(f"/sessions/{s['id']}", params={"forced": "true"})
        time.sleep(0.2)
    raise AssertionError(f"sessions left running after the fuzz run: {live}")


def _aim(case: schemathesis.Case) -> None:
    """Point two thirds of the cases at a real object, and a quarter of the valid session
    creates at the local image with resources that fit, so they start sessions (a stable
    choice, from the case itself). Schema-violating cases are sent as generated."""
    operation = case.operation.definition.raw.get("operationId", "")
    real = REAL_NAMES.get(operation)
    name = (case.path_parameters or {}).get("name")
    if real is not None and isinstance(name, str) and zlib.crc32(name.encode()) % 3:
        case.path_parameters["name"] = real
    valid = case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE
    body = case.body
    if operation == "createSession" and valid and isinstance(body, dict):
        if zlib.crc32(repr(body).encode("utf-8", "backslashreplace")) % 4 == 0:
            body["image"] = "local"
            body["resources"] = {"cpu": "0.1", "mem": "64m"}
            body.pop("mounts", None)  # folders other than "fuzz" are a 404 anyway


def _auth(eng: EngineProcess) -> dict[str, str]:
    return {"Authorization": f"token {eng.token}"}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_matches_its_document(case: schemathesis.Case, fuzz_engine: EngineProcess) -> None:
    _aim(case)
    # /events never ends by itself: schemathesis reads its events until the timeout and checks
    # each one against the Event schema.
    endless = case.operation.definition.raw.get("operationId") == "streamEvents"
    case.call_and_validate(base_url=fuzz_engine.url, headers=_auth(fuzz_engine),
                           timeout=1 if endless else 30, checks=CHECKS)


def test_the_fuzzer_started_sessions(fuzz_engine: EngineProcess) -> None:
    """Session creation was fuzzed for real: some generated requests became sessions that
    started, and none ended in ERROR (a request the engine took must start; ERROR would be a
    check the spec lacks). Sessions still PENDING wait for cpu the others hold."""
    api = Api(fuzz_engine)
    made = [s for s in api.get("/sessions").json()["sessions"]
            if s["name"] not in ("fuzz", "fuzz-victim", "fuzz-done")]
    started = [s for s in made if s["status"] in ("RUNNING", "TERMINATING", "TERMINATED")]
    assert started, [s["status"] for s in made]
    for s in made:
        s = api.wait(s["id"], ("RUNNING", "PENDING"), timeout=120)
        assert s["status"] != "ERROR", s
