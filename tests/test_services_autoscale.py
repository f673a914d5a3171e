"""``gpu_util`` autoscaling on a GPU-less machine: the engine's fake GPUs read their utilisation
from a file (the fake stands in for NVML), the metrics collector turns it into each route
session's ``gpu_util``, and the engine's rule fires on it."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import pytest

from engine_proc import Api, EngineProcess, start_engine
from test_services import FAKE_OPENAI_DEFINITION, HERE, _folder, _remove, _wait_service


@pytest.fixture()
def util_file(tmp_path: Path) -> Path:
    path = tmp_path / "fake-gpu-util"
    path.write_text("10\n")
    return path


@pytest.fixture()
def gpu_engine(tmp_path: Path, bwrap: str, util_file: Path) -> Iterator[EngineProcess]:
    gpus = [{"name": "Fake GPU A", "memory": "16g", "utilization_file": str(util_file)}]
    eng = start_engine(tmp_path / "eng", {"JUPYTER_BAI_FAKE_GPUS": json.dumps(gpus)})
    yield eng
    eng.teardown()


def test_gpu_util_rule_scales_out_on_the_routes_gpu_utilisation(
        gpu_engine: EngineProcess, util_file: Path) -> None:
    api = Api(gpu_engine)
    _folder(api, "gpullm", {"model-definition.yaml": FAKE_OPENAI_DEFINITION,
                            "fake_openai_server.py": (HERE / "fake_openai_server.py").read_text()})
    r = api.post("/services", json={"name": "gpu", "image": "local", "model_folder": "gpullm",
                                    "replicas": 1, "public": True,
                                    "resources": {"cpu": "0.5", "mem": "256m",
                                                  "cuda.shares": "0.5"}})
    assert r.status_code == 201, r.text
    try:
        info = _wait_service(api, "gpu", 1)
        r = api.post("/services/gpu/autoscale", json={
            "metric": "gpu_util", "comparator": "gt", "threshold": 80, "step": 1,
            "cooldown": 1, "min_replicas": 1, "max_replicas": 2})
        assert r.status_code == 201, r.text
        rule = r.json()["autoscaling_rules"][0]
        # the route session's utilisation is sampled (10%): below the threshold, nothing fires
        sid = info["routes"][0]["session_id"]
        deadline = time.monotonic() + 30
        seen = None
        while time.monotonic() < deadline and seen != 10:
            latest = api.get("/metrics").json()["latest"]
            seen = next((s["gpu_util"] for s in latest["sessions"] if s["id"] == sid), None)
            time.sleep(0.2)
        assert seen == 10
        now = api.get("/services/gpu").json()
        assert now["replicas"] == 1 and now["scaling_decisions"] == []
        # the GPU gets busy: the rule fires and records why
        util_file.write_text("95\n")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and api.get("/services/gpu").json()["replicas"] < 2:
            time.sleep(0.2)
        now = api.get("/services/gpu").json()
        assert now["replicas"] == 2
        decision = now["scaling_decisions"][0]
        assert (decision["rule"], decision["metric"], decision["value"], decision["from"],
                decision["to"]) == (rule["id"], "gpu_util", 95, 1, 2)
        _wait_service(api, "gpu", 2)  # the new route shares the one fake GPU (0.5 each)
    finally:
        _remove(api, "gpu")
