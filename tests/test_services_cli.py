"""`jupyter bai service ...` and the client's service calls against a real engine."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from test_services import FAKE_OPENAI_DEFINITION

HERE = Path(__file__).parent
REPO = HERE.parent


@pytest.fixture()
def bai(engine: Any, tmp_path: Path) -> Any:
    env = {**os.environ, **engine.env, "PYTHONPATH": str(REPO)}

    def call(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "jupyter_bai.cli", *args], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=180)
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    return call


def test_service_verbs_from_the_cli(bai: Any, tmp_path: Path) -> None:
    (tmp_path / "model-definition.yaml").write_text(FAKE_OPENAI_DEFINITION)
    (tmp_path / "fake_openai_server.py").write_text((HERE / "fake_openai_server.py").read_text())
    bai("vfolder", "create", "clillm", "-m", "model")
    bai("vfolder", "upload", "clillm", "model-definition.yaml", "fake_openai_server.py")
    out = bai("service", "create", "local", "clillm", "2", "-t", "clisvc", "-r", "cpu=0.5",
              "-r", "mem=256m", "-e", "BACKEND_MODEL_NAME=fake-llm", "--wait", "--json")
    try:
        info = json.loads(out.stdout)
        assert info["status"] == "HEALTHY"
        info = json.loads(bai("service", "info", "clisvc", "--json").stdout)
        assert {"name", "status", "endpoint", "public", "replicas", "routes"} <= set(info)
        assert info["public"] is False and info["replicas"] == 2
        assert all({"id", "status", "session_id", "port"} <= set(r) for r in info["routes"])
        assert [r["status"] for r in info["routes"]] == ["HEALTHY", "HEALTHY"]
        listed = json.loads(bai("service", "ls", "--json").stdout)
        assert "clisvc" in [s["name"] for s in listed]
        assert "clisvc" in bai("service", "ls").stdout
        tok = json.loads(bai("service", "token", "clisvc", "--ttl", "1h", "--json").stdout)
        assert set(tok) == {"token", "expires_at"}
        r = httpx.get(info["endpoint"] + "v1/models",
                      headers={"Authorization": f"Bearer {tok['token']}"})
        assert r.status_code == 200 and r.json()["data"][0]["id"] == "fake-llm"
        assert httpx.get(info["endpoint"] + "v1/models").status_code == 401
        assert "==> route" in bai("service", "logs", "clisvc", "--tail", "5").stdout
        ruled = json.loads(bai("service", "autoscale", "add", "clisvc", "--metric", "inflight",
                               "--comparator", "gt", "--threshold", "8", "--step", "1",
                               "--cooldown", "30", "--min", "1", "--max", "3", "--json").stdout)
        rule = ruled["autoscaling_rules"][0]
        assert (rule["metric"], rule["threshold"], rule["max_replicas"]) == ("inflight", 8, 3)
        assert "inflight gt 8" in bai("service", "info", "clisvc").stdout
        assert json.loads(bai("service", "autoscale", "rm", "clisvc", rule["id"], "--json")
                          .stdout)["autoscaling_rules"] == []
        scaled = json.loads(bai("service", "scale", "clisvc", "1", "--json").stdout)
        assert scaled["replicas"] == 1
        # user errors: one line, exit 1
        for args, text in [
            (("service", "info", "nope"), "service 'nope' not found"),
            (("service", "scale", "clisvc", "--", "-1"), "Invalid value"),
            (("service", "token", "clisvc", "--ttl", "later"), "invalid ttl 'later'"),
            (("service", "create", "local", "clillm", "1", "-t", "x2",
              "--runtime-variant", "tgi"), "unknown runtime variant 'tgi'"),
        ]:
            proc = bai(*args, check=False)
            assert proc.returncode != 0
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], proc.stderr
    finally:
        bai("service", "rm", "clisvc", check=False)


def test_client_service_calls(client: Any, tmp_path: Path) -> None:
    client.create_vfolder("clientllm", usage_mode="model")
    (tmp_path / "model-definition.yaml").write_text(FAKE_OPENAI_DEFINITION)
    (tmp_path / "fake_openai_server.py").write_text((HERE / "fake_openai_server.py").read_text())
    client.upload("clientllm", [str(tmp_path / "model-definition.yaml"),
                                str(tmp_path / "fake_openai_server.py")])
    info = client.create_service("local", "clientllm", 1, name="clientsvc", public=True,
                                 resources={"cpu": "0.5", "mem": "256m"}, wait=True, timeout=120)
    try:
        assert info.status == "HEALTHY" and info.routes[0].status == "HEALTHY"
        assert httpx.get(info.endpoint + "v1/models").status_code == 200
        with pytest.raises(Exception, match="invalid replica count"):
            client.scale_service("clientsvc", -1)
        assert client.get_service("clientsvc").name == "clientsvc"
    finally:
        client.delete_service("clientsvc")
