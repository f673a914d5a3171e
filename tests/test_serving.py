"""The notebook runner without an engine: static capture, request validation, errors, the
OpenAPI document, readiness, and the real ``python -m jupyter_bai.serving`` process."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import nbformat
import pytest
from fastapi.testclient import TestClient

from deploy_notebooks import classifier, notebook
from jupyter_bai.serving import endpoint, registry
from jupyter_bai.serving.app import State, add_endpoints, build_app
from jupyter_bai.serving.capture import capture, capture_file
from jupyter_bai.serving.decorators import DuplicateEndpoint
from jupyter_bai.serving.local import serve_local
from jupyter_bai.serving.runner import StartupFailed, run_cells, run_hooks

EXTRA = """\
import math
from pydantic import BaseModel

class Point(BaseModel):
    x: float
    y: float

@endpoint("/norm")
def norm(p: Point) -> float:
    return math.hypot(p.x, p.y)

@endpoint("/nan", method="GET")
def nan() -> float:
    return float("nan")

@endpoint("/fail")
def fail(n: int) -> int:
    raise ValueError(f"n={n} is not allowed")
"""


def _write(path: Path, cells: list[tuple[str, list[str]]], **meta: object) -> Path:
    nbformat.write(notebook(cells, dict(meta)), str(path))
    return path


@pytest.fixture()
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    (tmp_path / "model.json").write_text(json.dumps({"labels": ["alpha", "beta", "gamma"]}))
    monkeypatch.setenv("MODEL_FILE", str(tmp_path / "model.json"))
    nb = classifier(tmp_path / "clf.ipynb", extra=EXTRA)
    captured = capture_file(nb)
    assert captured.problems == []
    state = State()
    fastapi_app = build_app("clf", state)
    client = TestClient(fastapi_app)
    # not ready yet: liveness answers, readiness and the endpoints do not
    assert client.get("/live").status_code == 200
    assert client.get("/health").status_code == 503
    assert client.post("/predict", json={"text": "a"}).status_code == 503
    reg = run_cells(captured, nb, chdir=False)
    run_hooks(reg.start_hooks, "on_start")
    add_endpoints(fastapi_app, reg)
    state.ready = True
    yield client
    registry.clear()


def test_capture_skips_tagged_cells_and_magics_and_finds_endpoints(tmp_path: Path) -> None:
    nb = classifier(tmp_path / "clf.ipynb")
    c = capture_file(nb)
    assert c.problems == []
    assert "bai-skip" not in c.code and "training" not in c.code  # the tagged cell is left out
    assert "%matplotlib" not in c.code
    assert c.warnings == ["cell 3: skipped '%matplotlib' (magics and shell escapes only work "
                          "in Jupyter)"]
    assert [e.to_json() for e in c.endpoints] == [
        {"path": "/predict", "method": "POST", "name": "predict"},
        {"path": "/version", "method": "GET", "name": "version"},
        {"path": "/bad", "method": "GET", "name": "bad"}]
    assert c.hash.startswith("sha256:") and len(c.hash) == 7 + 64


def test_hash_follows_the_code_not_outputs(tmp_path: Path) -> None:
    nb = classifier(tmp_path / "clf.ipynb")
    first = capture_file(nb).hash
    data = nbformat.read(str(nb), as_version=4)
    data.cells[3].outputs = [nbformat.v4.new_output("stream", text="noise")]
    data.cells[3].execution_count = 42
    nbformat.write(data, str(nb))
    assert capture_file(nb).hash == first
    assert capture_file(classifier(nb, version="v2")).hash != first


@pytest.mark.parametrize("cells, problem", [
    ([("x = 1", [])], "no @endpoint in the notebook"),
    ([("from jupyter_bai.serving import endpoint\n@endpoint('/p')\ndef a(): pass", []),
      ("@endpoint('/p')\ndef b(): pass", [])],
     "two endpoints on POST /p: 'a' (cell 2) and 'b' (cell 3)"),
    ([("@endpoint('/p')\ndef a(:", [])], "cell 2: syntax error at line 2"),
    ([("@endpoint('/health')\ndef a(): pass", [])], "reserved"),
    ([("@endpoint('/p', method='PUT')\ndef a(): pass", [])], "invalid method 'PUT'"),
])
def test_capture_problems(tmp_path: Path, cells: list[tuple[str, list[str]]], problem: str) -> None:
    c = capture_file(_write(tmp_path / "bad.ipynb", cells))
    assert any(problem in p for p in c.problems), c.problems


def test_capture_of_something_that_is_not_a_notebook() -> None:
    c = capture("{not json", "broken.ipynb")
    assert c.problems and c.problems[0].startswith("broken.ipynb is not a readable notebook")


def test_decorators_leave_functions_callable_and_refuse_duplicates() -> None:
    registry.clear()

    @endpoint("/double", method="GET")
    def double(n: int) -> int:
        return 2 * n

    assert double(21) == 42  # interactively the function is just a function
    assert registry.endpoints[("GET", "/double")].func is double

    @endpoint("/double", method="GET")
    def double(n: int) -> int:  # noqa: F811  re-running the cell replaces it
        return 3 * n

    assert registry.endpoints[("GET", "/double")].func(1) == 3
    with pytest.raises(DuplicateEndpoint, match="two endpoints on GET /double"):
        @endpoint("/double", method="GET")
        def other(n: int) -> int:
            return n
    with pytest.raises(ValueError, match="reserved"):
        endpoint("/live")
    registry.clear()


def test_post_validates_the_json_body_from_type_hints(app: TestClient) -> None:
    r = app.post("/predict", json={"text": "alpha alpha beta", "top_k": 2})
    assert r.status_code == 200
    assert r.json() == {"labels": ["alpha", "beta"], "version": "v1", "warm": True}
    r = app.post("/predict", json={"top_k": 2})
    assert r.status_code == 400 and r.json() == {"error": "invalid-request",
                                                 "message": "text: Field required"}
    r = app.post("/predict", json={"text": "a", "top_k": "many"})
    assert r.status_code == 400
    assert r.json()["message"].startswith("top_k: Input should be a valid integer")
    r = app.post("/predict", json={"text": "a", "colour": "red"})
    assert r.status_code == 400 and r.json()["message"].startswith("colour: Extra inputs")
    r = app.post("/predict", content=b"{oops", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]


def test_single_pydantic_parameter_takes_the_whole_body(app: TestClient) -> None:
    r = app.post("/norm", json={"x": 3, "y": 4})
    assert r.status_code == 200 and r.json() == 5.0
    r = app.post("/norm", json={"x": 3})
    assert r.status_code == 400 and r.json()["message"] == "y: Field required"


def test_get_takes_query_parameters(app: TestClient) -> None:
    assert app.get("/version").json() == {"version": "v1"}


def test_errors_inside_endpoints_are_500_with_the_message(app: TestClient) -> None:
    r = app.post("/fail", json={"n": 3})
    assert r.status_code == 500
    assert r.json() == {"error": "endpoint-error",
                        "message": "endpoint 'fail' raised ValueError: n=3 is not allowed"}
    r = app.get("/bad")
    assert r.status_code == 500 and r.json()["error"] == "not-serialisable"
    assert "returned a value of type 'object'" in r.json()["message"] and "<class 'object'>" in r.json()["message"]
    r = app.get("/nan")
    assert r.status_code == 500 and "returned a value of type 'float'" in r.json()["message"]


def test_openapi_describes_every_endpoint_from_the_type_hints(app: TestClient) -> None:
    doc = app.get("/openapi.json").json()
    assert set(doc["paths"]) == {"/predict", "/version", "/bad", "/norm", "/nan", "/fail"}
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = doc["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert schema["required"] == ["text"]
    assert schema["properties"]["text"]["type"] == "string"
    assert schema["properties"]["top_k"] == {"type": "integer", "default": 3, "title": "Top K"}
    assert doc["paths"]["/predict"]["post"]["summary"] == "The top labels for a text."
    assert "/health" not in doc["paths"] and "/live" not in doc["paths"]


def test_a_cell_that_raises_names_the_cell(tmp_path: Path) -> None:
    nb = _write(tmp_path / "boom.ipynb", [
        ("from jupyter_bai.serving import endpoint\n@endpoint('/p')\ndef p(): return 1", []),
        ("x = 1\nraise ZeroDivisionError('no model here')", [])])
    with pytest.raises(StartupFailed, match=r"cell 3 raised ZeroDivisionError: no model here"):
        run_cells(capture_file(nb), nb, chdir=False)
    registry.clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _runner(nb: Path, port: int, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jupyter_bai.serving", str(nb), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})})


def test_runner_process_exits_non_zero_naming_the_failing_cell(tmp_path: Path) -> None:
    nb = _write(tmp_path / "boom.ipynb", [
        ("from jupyter_bai.serving import endpoint\n@endpoint('/p')\ndef p(): return 1", []),
        ("1 / 0", [])])
    proc = _runner(nb, _free_port())
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert out.strip().splitlines()[-1] == ("start-up failed: cell 3 raised ZeroDivisionError: "
                                            "division by zero")


def test_runner_process_liveness_before_readiness_and_on_stop(tmp_path: Path) -> None:
    gate, stopped = tmp_path / "gate", tmp_path / "stopped"
    nb = _write(tmp_path / "slow.ipynb", [
        ("import os, time, pathlib\nfrom jupyter_bai.serving import endpoint, on_start, on_stop", []),
        (f"@on_start\ndef wait_for_gate():\n    while not os.path.exists({str(gate)!r}):\n"
         f"        time.sleep(0.05)\n\n@on_stop\ndef bye():\n"
         f"    pathlib.Path({str(stopped)!r}).write_text('bye')\n\n"
         "@endpoint('/hello', method='GET')\ndef hello(name: str = 'you') -> str:\n"
         "    return 'hello ' + name", [])])
    port = _free_port()
    proc = _runner(nb, port)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/live").status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        health = httpx.get(base + "/health")
        assert health.status_code == 503 and health.json()["detail"] == "running @on_start hooks"
        assert httpx.get(base + "/hello").status_code == 503
        gate.write_text("go")
        while httpx.get(base + "/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert httpx.get(base + "/hello", params={"name": "bai"}).json() == "hello bai"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0 and stopped.read_text() == "bye"


def test_serve_local_tries_the_notebook_in_process(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.json").write_text(json.dumps({"labels": ["x", "y"]}))
    monkeypatch.setenv("MODEL_FILE", str(tmp_path / "model.json"))
    cwd = os.getcwd()
    server = serve_local(classifier(tmp_path / "clf.ipynb"))
    try:
        assert os.getcwd() == cwd  # a kernel's working directory is left alone
        r = httpx.post(server.url + "/predict", json={"text": "yy", "top_k": 1})
        assert r.status_code == 200 and r.json()["labels"] == ["y"]
        assert httpx.get(server.url + "/health").json() == {"ready": True}
    finally:
        server.stop()
        registry.clear()
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url + "/health", timeout=2)
    with pytest.raises(ValueError, match="no @endpoint"):
        serve_local(_write(tmp_path / "none.ipynb", [("x = 1", [])]))
