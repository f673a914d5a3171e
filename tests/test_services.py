"""Model services end to end on the local runtime: a real engine, real bubblewrap sessions as
routes, the endpoint proxy as its own process, real HTTP through it."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from engine_proc import Api, EngineProcess

HERE = Path(__file__).parent

CHATBOT_API = '''\
import os
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

app = FastAPI()
PREPARED = open("/home/work/prepared.txt").read().strip()


class ChatRequest(BaseModel):
    messages: list[dict]


@app.get("/health")
def health():
    return {"ok": True}


@app.post("/chat")
def chat(req: ChatRequest):
    return {"answer": "echo: " + req.messages[-1]["content"], "port": os.environ["PORT"],
            "model": os.environ["BACKEND_MODEL_NAME"], "path": os.environ["BACKEND_MODEL_PATH"],
            "prepared": PREPARED}
'''

KOALPACA_DEFINITION = """\
models:
  - name: "KoAlpaca-5.8B-model"
    model_path: "/models/KoAlpaca-5.8B"
    service:
      pre_start_actions:
        - action: log
          args: {message: "installing requirements"}
        - action: run_command
          args:
            command: ["python3", "-c", "open('/home/work/prepared.txt', 'w').write('step1')"]
        - action: write_file
          args: {filename: /home/work/extra.txt, body: "step2"}
        - action: run_command
          args:
            command: ["sh", "-c", "cat /home/work/extra.txt >> /home/work/prepared.txt"]
      start_command:
        - uvicorn
        - --app-dir
        - /models
        - chatbot-api:app
        - --port
        - "{port}"
        - --host
        - "127.0.0.1"
      port: 8000
      health_check:
        path: /health
        interval: 1
        max_retries: 3
        initial_delay: 30
"""

FAKE_OPENAI_DEFINITION = """\
models:
  - name: fake-llm
    model_path: /models
    service:
      start_command: ["python3", "/models/fake_openai_server.py", "--port", "{port}",
                      "--model", "fake-llm", "--gap", "0.02"]
      health_check: {path: /health, interval: 1, max_retries: 2, initial_delay: 30}
"""


class Load:
    """GET requests through the endpoint, one after another, counting failures."""

    def __init__(self, url: str, token: str | None = None, workers: int = 1):
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                try:
                    r = http.get(self.url, headers=self.headers)
                    if r.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.01)

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def _folder(api: Api, name: str, files: dict[str, bytes | str]) -> None:
    r = api.post("/vfolders", json={"name": name, "usage_mode": "model"})
    assert r.status_code == 201, r.text
    for path, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        r = api.put(f"/vfolders/{name}/files", params={"path": path}, content=data)
        assert r.status_code == 201, r.text


def _wait_service(api: Api, name: str, healthy: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = api.get(f"/services/{name}").json()
        live = [r for r in info["routes"] if r["status"] != "TERMINATING"]
        if any(r["status"] == "FAILED_TO_START" for r in live):
            raise AssertionError(f"a route failed to start: {json.dumps(info, indent=1)}")
        if len(live) == healthy and all(r["status"] == "HEALTHY" for r in live):
            return info
        time.sleep(0.2)
    raise AssertionError(f"service {name} did not get {healthy} healthy routes: {info}")


def _remove(api: Api, name: str) -> None:
    api.delete(f"/services/{name}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and api.get(f"/services/{name}").status_code == 200:
        time.sleep(0.2)


@pytest.fixture()
def api(engine: EngineProcess) -> Iterator[Api]:
    yield Api(engine)


def test_koalpaca_flow_two_replicas_through_the_endpoint(api: Api) -> None:
    _folder(api, "koalpaca", {"model-definition.yaml": KOALPACA_DEFINITION,
                              "chatbot-api.py": CHATBOT_API, "requirements.txt": ""})
    r = api.post("/services", json={"name": "chat", "image": "local", "model_folder": "koalpaca",
                                    "replicas": 2, "public": True,
                                    "resources": {"cpu": "0.5", "mem": "512m"}})
    assert r.status_code == 201, r.text
    try:
        info = _wait_service(api, "chat", 2)
        assert info["status"] == "HEALTHY" and info["public"] is True
        ports = {route["port"] for route in info["routes"]}
        assert len(ports) == 2  # each local route its own port
        endpoint = info["endpoint"]
        assert endpoint.startswith("http://127.0.0.1:") and endpoint.endswith("/services/chat/")
        seen = set()
        for _ in range(4):
            resp = httpx.post(endpoint + "chat", json={"messages": [{"role": "user",
                                                                     "content": "hi"}]})
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["answer"] == "echo: hi"
            assert body["prepared"] == "step1step2"  # pre-start actions ran in order
            assert body["model"] == "KoAlpaca-5.8B-model"
            assert body["path"] == "/models/KoAlpaca-5.8B"
            seen.add(int(body["port"]))
        assert seen == ports  # round robin over both routes
        # each route is an inference session with the folder read-only at /models
        session = api.get(f"/sessions/{info['routes'][0]['session_id']}").json()
        assert session["type"] == "inference"
        assert session["mounts"] == [{"source": "koalpaca", "target": "/models", "perm": "ro"}]
        logs = api.get("/services/chat/logs").json()["logs"]
        assert logs.count("[pre-start] installing requirements") == 2
        # scale while serving
        r = api.post("/services/chat/scale", json={"replicas": 1})
        assert r.status_code == 200 and r.json()["replicas"] == 1
        info = _wait_service(api, "chat", 1)
        assert httpx.post(endpoint + "chat", json={"messages": [{"role": "u", "content": "x"}]}
                          ).status_code == 200
    finally:
        _remove(api, "chat")
    assert api.get("/services/chat").status_code == 404
    gone = httpx.get(endpoint + "health")
    assert gone.status_code == 404 and gone.json()["error"] == "not-found"


def test_openai_client_through_the_endpoint_with_tokens(api: Api) -> None:
    openai = pytest.importorskip("openai")
    fake = (HERE / "fake_openai_server.py").read_text()
    _folder(api, "fakellm", {"model-definition.yaml": FAKE_OPENAI_DEFINITION,
                             "fake_openai_server.py": fake})
    r = api.post("/services", json={"name": "priv", "image": "local", "model_folder": "fakellm",
                                    "replicas": 2, "resources": {"cpu": "0.5", "mem": "256m"}})
    assert r.status_code == 201, r.text
    try:
        info = _wait_service(api, "priv", 2)
        base = info["endpoint"] + "v1"
        # no token, a wrong one, an expired one: 401 with a JSON reason
        assert httpx.get(base + "/models").status_code == 401
        bad = httpx.get(base + "/models", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["error"] == "unauthorized"
        short = api.post("/services/priv/token", json={"ttl": "1s"}).json()
        time.sleep(1.5)
        assert httpx.get(base + "/models", headers={
            "Authorization": f"Bearer {short['token']}"}).status_code == 401
        assert api.post("/services/priv/token", json={"ttl": "soon"}).status_code == 400
        tok = api.post("/services/priv/token", json={"ttl": "1d"})
        assert tok.status_code == 201
        token = tok.json()["token"]
        assert tok.json()["expires_at"] > time.time() + 86000

        llm = openai.OpenAI(base_url=base, api_key=token, max_retries=0)
        assert [m.id for m in llm.models.list().data] == ["fake-llm"]
        done = llm.completions.create(model="fake-llm", prompt="San Francisco is a", max_tokens=7)
        assert done.choices[0].text.startswith("fake answer from port")
        chat = llm.chat.completions.create(model="fake-llm",
                                           messages=[{"role": "user", "content": "hi"}])
        assert "fake answer" in chat.choices[0].message.content
        stream = llm.chat.completions.create(
            model="fake-llm", messages=[{"role": "user", "content": "hi"}], stream=True)
        pieces = [c.choices[0].delta.content for c in stream if c.choices[0].delta.content]
        assert len(pieces) == 6 and "".join(pieces).startswith("fake answer from port")
        cstream = llm.completions.create(model="fake-llm", prompt="x", stream=True)
        assert len([c.choices[0].text for c in cstream]) == 6
        # streaming is passed through as it comes: the first event arrives before the last is sent
        with httpx.stream("POST", base + "/chat/completions", headers={
                "Authorization": f"Bearer {token}"},
                json={"model": "fake-llm", "stream": True, "messages": []}) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            assert "transfer-encoding" not in {k.lower() for k in resp.headers
                                               if k.lower() == "connection"}
            lines = [line for line in resp.iter_lines() if line]
        assert lines[-1] == "data: [DONE]" and len(lines) == 7
        # the token never reaches the route
        logs = api.get("/services/priv/logs").json()["logs"]
        assert token not in logs
    finally:
        _remove(api, "priv")


def test_route_that_dies_is_replaced_while_the_other_serves(api: Api) -> None:
    fake = (HERE / "fake_openai_server.py").read_text()
    _folder(api, "diefolder", {"model-definition.yaml": FAKE_OPENAI_DEFINITION,
                               "fake_openai_server.py": fake})
    r = api.post("/services", json={"name": "die", "image": "local", "model_folder": "diefolder",
                                    "replicas": 2, "public": True,
                                    "resources": {"cpu": "0.5", "mem": "256m"}})
    assert r.status_code == 201, r.text
    try:
        info = _wait_service(api, "die", 2)
        victim = info["routes"][0]
        with Load(info["endpoint"] + "v1/models", workers=4) as load:
            time.sleep(0.5)
            os.kill(_listener_pid(victim["port"]), signal.SIGKILL)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                now = api.get("/services/die").json()
                ids = {r["id"] for r in now["routes"] if r["status"] == "HEALTHY"}
                if len(ids) == 2 and victim["id"] not in ids:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError(f"the dead route was not replaced: {now}")
            time.sleep(0.5)
        # requests that met the dead route were retried on the living one
        assert load.failures == [] and load.ok > 10, load.failures[:5]
        events = api.get("/events", params={"since": 0, "follow": "false"})
        if events.status_code == 200 and events.headers.get("content-type", "").startswith(
                "application/json"):
            kinds = {e.get("action") for e in events.json().get("events", [])
                     if e.get("kind") == "route"}
            assert "replaced" in kinds
    finally:
        _remove(api, "die")


def _listener_pid(port: int) -> int:
    import psutil

    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return conn.pid
    raise AssertionError(f"nothing listens on {port}")


@pytest.mark.parametrize("body, code, text", [
    ({"name": "x", "image": "local", "model_folder": "nosuch"}, 404, "nosuch"),
    ({"name": "x", "image": "local", "model_folder": "badinputs", "runtime_variant": "tgi"},
     400, "unknown runtime variant 'tgi'"),
    ({"name": "x", "image": "local", "model_folder": "badinputs", "replicas": -1}, 400, "replicas"),
    ({"name": "x", "image": "local", "model_folder": "badinputs"}, 400,
     "badinputs/model-definition.yaml:2: models[0].model_path: is missing"),
    ({"name": "x", "image": "local", "model_folder": "badinputs", "replicas": 2,
      "runtime_variant": "cmd", "env": {}}, 400, "CMD"),
])
def test_bad_input_is_a_clear_4xx_and_changes_nothing(api: Api, body: dict[str, Any], code: int,
                                                     text: str) -> None:
    if api.get("/vfolders/badinputs").status_code == 404:
        _folder(api, "badinputs", {"model-definition.yaml": "models:\n  - name: m\n    service:\n"
                                                             "      start_command: x\n"})
    before = api.get("/services").json()["services"]
    r = api.post("/services", json=body)
    assert r.status_code == code, r.text
    assert text in r.json()["message"]
    assert api.get("/services").json()["services"] == before


def test_unknown_service_and_negative_scale(api: Api, engine: EngineProcess) -> None:
    assert api.get("/services/ghost").status_code == 404
    assert api.post("/services/ghost/scale", json={"replicas": 1}).status_code == 404
    assert api.post("/services/ghost/token", json={}).status_code == 404
    info = api.get("/services").json()
    assert info == {"services": info["services"]}


def test_start_command_that_exits_is_failed_to_start_with_its_log(api: Api) -> None:
    _folder(api, "crash", {"model-definition.yaml": (
        "models:\n  - name: m\n    model_path: /models\n    service:\n"
        "      start_command: \"echo loading weights; echo 'CUDA out of memory' >&2; exit 3\"\n"
        "      shell: /bin/sh\n      health_check: {path: /health}\n")})
    r = api.post("/services", json={"name": "crashy", "image": "local", "model_folder": "crash",
                                    "replicas": 1, "resources": {"cpu": "0.5", "mem": "256m"}})
    assert r.status_code == 201, r.text
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = api.get("/services/crashy").json()
            if info["status"] == "FAILED":
                break
            time.sleep(0.2)
        assert info["status"] == "FAILED", info
        route = info["routes"][0]
        assert route["status"] == "FAILED_TO_START"
        assert "CUDA out of memory" in route["status_info"]
        assert "CUDA out of memory" in info["status_info"]
        # a failed route is not retried in a loop
        time.sleep(1.5)
        assert len(api.get("/services/crashy").json()["routes"]) == 1
    finally:
        _remove(api, "crashy")


def test_autoscaling_rule_scales_out_under_load_and_records_why(api: Api) -> None:
    fake = (HERE / "fake_openai_server.py").read_text()
    _folder(api, "autollm", {"model-definition.yaml": FAKE_OPENAI_DEFINITION,
                             "fake_openai_server.py": fake})
    r = api.post("/services", json={"name": "auto", "image": "local", "model_folder": "autollm",
                                    "replicas": 1, "public": True,
                                    "resources": {"cpu": "0.5", "mem": "256m"}})
    assert r.status_code == 201, r.text
    try:
        info = _wait_service(api, "auto", 1)
        for bad, text in [({"metric": "qps", "comparator": "gt", "threshold": 1, "step": 1},
                           "metric"),
                          ({"metric": "rps", "comparator": "gt", "threshold": 1, "step": 0},
                           "must not be 0"),
                          ({"metric": "rps", "comparator": "gt", "threshold": 1, "step": 1,
                            "min_replicas": 3, "max_replicas": 2}, "min 3 > max 2")]:
            r = api.post("/services/auto/autoscale", json=bad)
            assert r.status_code == 400 and text in r.json()["message"], r.text
        assert api.delete("/services/auto/autoscale", params={"rule": "nope"}).status_code == 404
        r = api.post("/services/auto/autoscale", json={
            "metric": "rps", "comparator": "gt", "threshold": 2, "step": 1, "cooldown": 1,
            "min_replicas": 1, "max_replicas": 2})
        assert r.status_code == 201, r.text
        rule = r.json()["autoscaling_rules"][0]
        assert rule["metric"] == "rps" and rule["last_fired_at"] is None
        assert api.get("/services/auto").json()["replicas"] == 1  # idle: nothing fires
        with Load(info["endpoint"] + "v1/models", workers=2):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and api.get("/services/auto").json()["replicas"] < 2:
                time.sleep(0.2)
        now = api.get("/services/auto").json()
        assert now["replicas"] == 2  # max_replicas holds it at 2
        decision = now["scaling_decisions"][0]
        assert (decision["rule"], decision["metric"], decision["from"], decision["to"]) == (
            rule["id"], "rps", 1, 2)
        assert decision["value"] > 2
        _wait_service(api, "auto", 2)
        r = api.delete("/services/auto/autoscale", params={"rule": rule["id"]})
        assert r.status_code == 200 and r.json()["autoscaling_rules"] == []
    finally:
        _remove(api, "auto")


def test_hard_coded_port_in_use_or_shared_by_replicas_is_refused(api: Api) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        _folder(api, "fixedport", {"model-definition.yaml": (
            "models:\n  - name: m\n    model_path: /models\n    service:\n"
            f"      start_command: [python3, -m, http.server, '{port}']\n      port: {port}\n")})
        before = api.get("/services").json()["services"]
        r = api.post("/services", json={"name": "fixed", "image": "local",
                                        "model_folder": "fixedport"})
        assert r.status_code == 400 and f"port {port}" in r.json()["message"]
        assert "already in use" in r.json()["message"]
        r = api.post("/services", json={"name": "fixed", "image": "local",
                                        "model_folder": "fixedport", "replicas": 2})
        assert r.status_code == 400 and "{port} (or $PORT)" in r.json()["message"]
        assert api.get("/services").json()["services"] == before


SLOW_STREAM_DEFINITION = FAKE_OPENAI_DEFINITION.replace('"--gap", "0.02"', '"--gap", "1.0"')


def test_scale_down_drains_a_slow_stream_in_flight(api: Api) -> None:
    fake = (HERE / "fake_openai_server.py").read_text()
    _folder(api, "drainllm", {"model-definition.yaml": SLOW_STREAM_DEFINITION,
                              "fake_openai_server.py": fake})
    r = api.post("/services", json={"name": "drain", "image": "local", "model_folder": "drainllm",
                                    "replicas": 2, "public": True,
                                    "resources": {"cpu": "0.5", "mem": "256m"}})
    assert r.status_code == 201, r.text
    try:
        info = _wait_service(api, "drain", 2)
        results: list[list[str]] = []
        first_bytes = threading.Barrier(3)

        def stream() -> None:
            body = {"model": "fake-llm", "stream": True, "messages": []}
            with httpx.stream("POST", info["endpoint"] + "v1/chat/completions", json=body,
                              timeout=60) as resp:
                lines = []
                for line in resp.iter_lines():
                    if line and not lines:
                        first_bytes.wait(30)
                    if line:
                        lines.append(line)
            results.append(lines)

        # round robin: the two streams run on the two routes, so one is on the route that goes
        threads = [threading.Thread(target=stream) for _ in range(2)]
        for t in threads:
            t.start()
        first_bytes.wait(30)
        r = api.post("/services/drain/scale", json={"replicas": 1})
        assert r.status_code == 200
        for t in threads:
            t.join(60)
        assert len(results) == 2
        for lines in results:  # every event arrived, through to the end of the stream
            assert len(lines) == 7 and lines[-1] == "data: [DONE]", lines
        served_by = {"".join(json.loads(line[6:])["choices"][0]["delta"]["content"]
                             for line in lines[:-1]) for lines in results}
        assert len(served_by) == 2, served_by  # one of them was on the route that left
        info = _wait_service(api, "drain", 1)
        assert httpx.get(info["endpoint"] + "v1/models").status_code == 200
    finally:
        _remove(api, "drain")


TOGGLE_SERVER = '''\
import http.server, json, os, sys, time

PORT = int(sys.argv[1])


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/health":
            if os.path.exists(f"/models/hang-{PORT}"):
                time.sleep(3600)  # a health path that never answers
            if os.path.exists(f"/models/sick-{PORT}"):
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        raw = json.dumps({"port": PORT}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
'''

TOGGLE_DEFINITION = """\
models:
  - name: toggle
    model_path: /models
    service:
      start_command: ["python3", "/models/toggle.py", "{port}"]
      health_check: {path: /health, interval: 0.5, max_retries: 2, max_wait_time: 1,
                     initial_delay: %s}
"""


class PortLoad(Load):
    """Load that also records which route (port) answered each request."""

    def __init__(self, url: str, workers: int = 2):
        super().__init__(url, workers=workers)
        self.ports: list[tuple[float, int]] = []

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                try:
                    r = http.get(self.url)
                    if r.status_code == 200:
                        self.ok += 1
                        self.ports.append((time.monotonic(), r.json()["port"]))
                    else:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.01)


def _wait_route(api: Api, name: str, route_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        routes = {r["id"]: r for r in api.get(f"/services/{name}").json()["routes"]}
        if routes[route_id]["status"] == status:
            return
        time.sleep(0.1)
    raise AssertionError(f"route {route_id} did not become {status}: {routes[route_id]}")


def test_unhealthy_route_leaves_the_rotation_and_comes_back(api: Api) -> None:
    _folder(api, "toggle", {"model-definition.yaml": TOGGLE_DEFINITION % 30,
                            "toggle.py": TOGGLE_SERVER})
    r = api.post("/services", json={"name": "toggle", "image": "local", "model_folder": "toggle",
                                    "replicas": 2, "public": True,
                                    "resources": {"cpu": "0.5", "mem": "256m"}})
    assert r.status_code == 201, r.text
    try:
        info = _wait_service(api, "toggle", 2)
        sick, well = info["routes"]
        with PortLoad(info["endpoint"] + "v1/models") as load:
            # the route's health check starts failing (its requests would still be answered)
            r = api.put("/vfolders/toggle/files", params={"path": f"sick-{sick['port']}"},
                        content=b"")
            assert r.status_code == 201
            _wait_route(api, "toggle", sick["id"], "UNHEALTHY")
            out_since = time.monotonic()
            now = api.get("/services/toggle").json()
            assert now["status"] == "DEGRADED"
            assert "503" in next(r for r in now["routes"] if r["id"] == sick["id"])["status_info"]
            time.sleep(2)
            out_until = time.monotonic()
            # it passes again: back in the rotation
            r = api.post("/vfolders/toggle/rm", json={"path": f"sick-{sick['port']}"})
            assert r.status_code == 204, r.text
            _wait_route(api, "toggle", sick["id"], "HEALTHY")
            back_since = time.monotonic()
            time.sleep(1.5)
        assert load.failures == [] and load.ok > 20, load.failures[:5]
        # while it was out, only the healthy route answered; afterwards both did again
        # (a request already on its way when the route left may still land just after)
        during = [port for at, port in load.ports if out_since + 0.5 < at < out_until]
        after = {port for at, port in load.ports if at > back_since + 0.5}
        assert during and set(during) == {well["port"]}
        assert after == {sick["port"], well["port"]}
        info = api.get("/services/toggle").json()
        assert info["status"] == "HEALTHY" and [r["id"] for r in info["routes"]] == [
            sick["id"], well["id"]]  # the same routes: nothing was replaced
    finally:
        _remove(api, "toggle")


def test_health_path_that_never_answers_fails_with_the_reason(api: Api) -> None:
    hang = TOGGLE_SERVER.replace('os.path.exists(f"/models/hang-{PORT}")', "True")
    _folder(api, "hang", {"model-definition.yaml": TOGGLE_DEFINITION % 2, "toggle.py": hang})
    r = api.post("/services", json={"name": "hang", "image": "local", "model_folder": "hang",
                                    "replicas": 1, "public": True,
                                    "resources": {"cpu": "0.5", "mem": "256m"}})
    assert r.status_code == 201, r.text
    try:
        deadline = time.monotonic() + 90
        seen = set()
        while time.monotonic() < deadline:
            info = api.get("/services/hang").json()
            seen |= {r["status"] for r in info["routes"]}
            if info["status"] == "FAILED":
                break
            time.sleep(0.2)
        assert info["status"] == "FAILED", info
        assert "HEALTHY" not in seen
        route = info["routes"][0]
        assert route["status"] == "FAILED_TO_START"
        assert "health check never passed: /health: no answer within 1s" in route["status_info"]
        assert info["status_info"] == route["status_info"]
        # its session is stopped, and the endpoint says why nothing answers
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            session = api.get(f"/sessions/{route['session_id']}").json()
            if session["status"] in ("TERMINATED", "CANCELLED", "ERROR"):
                break
            time.sleep(0.2)
        assert session["status"] in ("TERMINATED", "CANCELLED", "ERROR"), session
        gone = httpx.get(info["endpoint"] + "health")
        assert gone.status_code == 503 and gone.json()["error"] == "no-healthy-route"
    finally:
        _remove(api, "hang")
