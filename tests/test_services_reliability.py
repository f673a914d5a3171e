"""The endpoint keeps serving: a proxy killed with -9 comes back on its port with the same
routes; a killed and restarted engine re-adopts proxy, services, routes and tokens while a
steady load through the endpoint sees no failure."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from engine_proc import Api, EngineProcess
from test_services import FAKE_OPENAI_DEFINITION, Load, _folder, _remove, _wait_service

HERE = Path(__file__).parent


def _proxy_pid(endpoint: str) -> int:
    base = endpoint.split("/services/")[0]
    return int(httpx.get(base + "/_bai/health", timeout=5).json()["pid"])


def test_proxy_and_engine_restarts_keep_the_endpoint(fresh_engine: EngineProcess) -> None:
    api = Api(fresh_engine)
    _folder(api, "relllm", {"model-definition.yaml": FAKE_OPENAI_DEFINITION,
                            "fake_openai_server.py": (HERE / "fake_openai_server.py").read_text()})
    r = api.post("/services", json={"name": "rel", "image": "local", "model_folder": "relllm",
                                    "replicas": 2, "resources": {"cpu": "0.5", "mem": "256m"}})
    assert r.status_code == 201, r.text
    try:
        info = _wait_service(api, "rel", 2)
        token = api.post("/services/rel/token", json={"ttl": "1h"}).json()["token"]
        url = info["endpoint"] + "v1/models"
        routes = [(r["id"], r["session_id"], r["port"]) for r in info["routes"]]

        # kill -9 of the proxy: a new one serves on the same port, with the same routes
        old = _proxy_pid(info["endpoint"])
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 30
        new = None
        while time.monotonic() < deadline:
            try:
                new = _proxy_pid(info["endpoint"])
                if new != old:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        assert new is not None and new != old
        ok = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200, ok.text

        # kill -9 of the engine under load: the endpoint answers throughout
        with Load(url, token) as load:
            time.sleep(0.5)
            fresh_engine.kill9()
            time.sleep(1.0)
            fresh_engine.start()
            time.sleep(1.0)
            after = api.get("/services/rel").json()
            time.sleep(0.5)
        assert load.failures == [] and load.ok > 10, load.failures[:5]
        assert [(r["id"], r["session_id"], r["port"]) for r in after["routes"]] == routes
        assert after["status"] == "HEALTHY" and after["endpoint"] == info["endpoint"]
        assert _proxy_pid(info["endpoint"]) == new  # adopted, not restarted
    finally:
        _remove(api, "rel")
