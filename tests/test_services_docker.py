"""Model services whose image is a Docker image: each route is a hardened container (non-root,
no capabilities) with the model folder mounted, its port published on 127.0.0.1 only and
reached by the endpoint proxy. ``nim`` runs against a FAKE NIM image built here (NGC is not
reachable from this machine)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from engine_proc import Api, EngineProcess, start_engine
from test_docker import dclient, docker_env, engine_containers, images, remove_engine_containers  # noqa: F401
from test_services import HERE, _folder, _remove, _wait_service

FAKE_LLM_IN_CONTAINER = """\
models:
  - name: fake-llm
    model_path: /models
    service:
      start_command: ["python3", "/models/fake_openai_server.py", "--port", "{port}",
                      "--host", "0.0.0.0", "--model", "fake-llm"]
      health_check: {path: /health, interval: 1, max_retries: 3, initial_delay: 60}
"""


@pytest.fixture()
def dsvc(tmp_path: Path, dclient: Any, images: dict[str, str]) -> Iterator[EngineProcess]:  # noqa: F811
    eng = start_engine(tmp_path / "eng", docker_env())
    yield eng
    eng.teardown()
    remove_engine_containers(dclient, eng)


def _route_containers(dclient: Any, eng: EngineProcess, info: dict[str, Any]) -> list[Any]:  # noqa: F811
    sessions = {r["session_id"] for r in info["routes"]}
    return [c for c in engine_containers(dclient, eng)
            if c.labels.get("ai.backend.bai.session-id") in sessions and c.status == "running"]


def test_docker_routes_are_hardened_containers_behind_the_endpoint(
        dsvc: EngineProcess, dclient: Any, images: dict[str, str]) -> None:  # noqa: F811
    openai = pytest.importorskip("openai")
    api = Api(dsvc)
    _folder(api, "dockllm", {"model-definition.yaml": FAKE_LLM_IN_CONTAINER,
                             "fake_openai_server.py": (HERE / "fake_openai_server.py").read_text()})
    r = api.post("/services", json={"name": "dock", "image": images["image"],
                                    "model_folder": "dockllm", "replicas": 2, "public": True,
                                    "resources": {"cpu": "0.5", "mem": "256m"}})
    assert r.status_code == 201, r.text
    try:
        info = _wait_service(api, "dock", 2)
        ports = {route["port"] for route in info["routes"]}
        assert len(ports) == 2 and 0 not in ports  # each its own published port
        containers = _route_containers(dclient, dsvc, info)
        assert len(containers) == 2
        for c in containers:
            host = c.attrs["HostConfig"]
            assert c.attrs["Config"]["User"] not in ("", "0", "root", "0:0")
            assert host["CapDrop"] == ["ALL"]
            bindings = c.attrs["NetworkSettings"]["Ports"]["8000/tcp"]
            assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
            assert int(bindings[0]["HostPort"]) in ports
            models = next(m for m in c.attrs["Mounts"] if m["Destination"] == "/models")
            assert models["RW"] is False
        llm = openai.OpenAI(base_url=info["endpoint"] + "v1", api_key="unused", max_retries=0)
        assert [m.id for m in llm.models.list().data] == ["fake-llm"]
        stream = llm.chat.completions.create(
            model="fake-llm", messages=[{"role": "user", "content": "hi"}], stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream)
        assert text.startswith("fake answer from port 8000")  # the container's own port
    finally:
        _remove(api, "dock")
    assert _route_containers(dclient, dsvc, info) == []


def test_nim_variant_with_a_fake_nim_image(dsvc: EngineProcess, dclient: Any,  # noqa: F811
                                           images: dict[str, str]) -> None:  # noqa: F811
    openai = pytest.importorskip("openai")
    api = Api(dsvc)
    _folder(api, "nimcache", {"fake-nim-model": "meta/llama3-8b-instruct\n"})
    body = {"name": "nim", "image": images["fake_nim"], "model_folder": "nimcache",
            "runtime_variant": "nim", "replicas": 1,
            "resources": {"cpu": "0.5", "mem": "256m"}}
    before = api.get("/services").json()["services"]
    r = api.post("/services", json=body)  # no NGC key: refused, nothing made
    assert r.status_code == 400 and "NGC_API_KEY" in r.json()["message"]
    r = api.post("/services", json={**body, "image": "local"})
    assert r.status_code == 400 and "needs a Docker image" in r.json()["message"]
    r = api.post("/services", json={**body, "image": "bai-no-such-image:1",
                                     "env": {"NGC_API_KEY": "k"}})
    assert r.status_code == 400 and "is not present on the Docker engine" in r.json()["message"]
    assert api.get("/services").json()["services"] == before
    key = "nvapi-fake-" + "k" * 20
    r = api.post("/services", json={**body, "env": {"NGC_API_KEY": key}})
    assert r.status_code == 201, r.text
    try:
        info = _wait_service(api, "nim", 1)
        token = api.post("/services/nim/token", json={"ttl": "1h"}).json()["token"]
        llm = openai.OpenAI(base_url=info["endpoint"] + "v1", api_key=token, max_retries=0)
        # the model folder is NIM's cache: the fake NIM serves the model named there
        assert [m.id for m in llm.models.list().data] == ["meta/llama3-8b-instruct"]
        chat = llm.chat.completions.create(model="meta/llama3-8b-instruct",
                                           messages=[{"role": "user", "content": "hi"}])
        assert "fake answer" in chat.choices[0].message.content
        (container,) = _route_containers(dclient, dsvc, info)
        config = container.attrs["Config"]
        # the key is in the container's environment, never on a command line
        assert f"NGC_API_KEY={key}" in config["Env"]
        argv = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or []),
                *container.attrs.get("Args", [])]
        assert argv and not any(key in a for a in argv)
        assert "python3 /opt/nim/fake_nim_server.py" in argv  # the image's own command
        cache = next(m for m in container.attrs["Mounts"]
                     if m["Destination"] == "/opt/nim/.cache")
        assert cache["RW"] is False
        session = api.get(f"/sessions/{info['routes'][0]['session_id']}").json()
        assert key not in str(session)
        assert key not in api.get("/services/nim").text
        assert httpx.get(info["endpoint"] + "v1/health/ready").status_code == 401
    finally:
        _remove(api, "nim")
