"""A cache key is computed off the event loop: hashing a large input does not stall the
engine, which keeps answering requests meanwhile (engine in this process, real sessions)."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_bai.client import Client
from jupyter_bai.client.inprocess import EngineDriver
from jupyter_bai.engine.pipelines import PipelineManager


@pytest.fixture()
def inproc(tmp_path: Path, bwrap: str) -> Iterator[Client]:
    c = Client(driver=EngineDriver.starting(tmp_path / "state", docker=False, stop_grace=1.0))
    yield c
    c.close()


def test_engine_serves_requests_while_a_large_input_is_hashed(
        inproc: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started, release, done = threading.Event(), threading.Event(), threading.Event()
    real = PipelineManager._cache_key

    def held(self: PipelineManager, *args: Any) -> str:
        """The real hash, held open until the test has made its request."""
        started.set()
        try:
            release.wait(60)
            return real(self, *args)
        finally:
            done.set()

    monkeypatch.setattr(PipelineManager, "_cache_key", held)
    small = {"cpu": "0.25", "mem": "128m"}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"name": "bighash", "tasks": [
        {"name": "src", "resources": small,
         "command": "head -c 67108864 /dev/urandom > /pipeline/outputs/big"},
        {"name": "use", "resources": small, "cache": True, "depends_on": ["src"],
         "command": "sha256sum /pipeline/input1/big > /pipeline/outputs/sum"},
    ]}))
    job = inproc.run_pipeline(tmp_path / "p.yaml")
    deadline = time.monotonic() + 120
    while not started.wait(0.2):
        assert time.monotonic() < deadline, inproc.get_pipeline_job(job["id"])
    # The hash is under way: the engine's loop answers (were it hashing there, this request
    # would wait for the hash, which waits for this request to have been answered).
    during = inproc.get_pipeline_job(job["id"])
    sessions = inproc.list_sessions()
    assert not done.is_set()
    assert {t["name"]: t["status"] for t in during["tasks"]} == {"src": "SUCCEEDED",
                                                                   "use": "WAITING"}
    assert any(s["id"] == during["tasks"][0]["session_id"] for s in sessions)
    release.set()
    job = inproc.wait_pipeline_job(job["id"], timeout=120)
    use = {t["name"]: t for t in job["tasks"]}["use"]
    assert (job["status"], use["status"], use["cached"]) == ("SUCCEEDED", "SUCCEEDED", False)
