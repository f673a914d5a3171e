"""Per-session metrics of a Docker session come from its container's cgroup."""
from __future__ import annotations

import time
from pathlib import Path

import docker_image
from conftest import require
from engine_proc import Api, start_engine
from test_docker import _docker_client, remove_engine_containers

from jupyter_bai.engine.metrics import docker_cgroup_dirs


def test_docker_session_memory_is_read_from_its_container_cgroup(tmp_path: Path) -> None:
    client = _docker_client()
    require(client is not None, "a Docker engine (dockerd answering on DOCKER_HOST or the socket)")
    images = docker_image.build(client)
    binds = ",".join(docker_image.HOST_BINDS)
    eng = start_engine(tmp_path / "eng", {"JUPYTER_BAI_DOCKER_BINDS": binds})
    try:
        api = Api(eng)
        s = api.create(image=images["image"], name="dmetrics", type="batch", command="sleep 60")
        assert api.wait("dmetrics")["status"] == "RUNNING"
        row = None
        for _ in range(100):
            body = api.get("/metrics").json()
            mine = [x for x in body["latest"]["sessions"] if x["id"] == s["id"]]
            if mine and mine[0]["mem_used"] is not None:
                row = mine[0]
                break
            time.sleep(0.2)
        container = client.containers.list(
            filters={"label": f"ai.backend.bai.session-id={s['id']}"})[0]
        visible = any((d / "memory.usage_in_bytes").exists() or (d / "memory.current").exists()
                      for d in docker_cgroup_dirs(container.id))
        if visible:
            assert row is not None and row["mem_used"] > 0
        else:  # the daemon's cgroups are not visible from here: say nothing rather than guess
            assert row is None
        api.delete("/sessions/dmetrics", params={"forced": "true"})
    finally:
        eng.stop()
        remove_engine_containers(client, eng)
