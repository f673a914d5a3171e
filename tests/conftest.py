"""Shared fixtures: a real engine process, and the rule that CI never skips."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from engine_proc import EngineProcess, start_engine

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, what: str) -> None:
    """Skip on a developer machine without ``what``; fail in CI, where it must exist."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required when CI=true")
    pytest.skip(f"{what} is not available")


@pytest.fixture(scope="session")
def bwrap() -> str:
    path = shutil.which("bwrap")
    require(path is not None, "bubblewrap (bwrap)")
    return str(path)


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory, bwrap: str) -> Iterator[EngineProcess]:
    """One real engine (``jupyter bai serve``) shared by the end-to-end tests."""
    eng = start_engine(
        tmp_path_factory.mktemp("engine"),
        {"JUPYTER_BAI_FAKE_GPUS": '[{"name": "Fake GPU A", "memory": "16g"}, '
                                  '{"name": "Fake GPU B", "memory": "16g"}]'},
    )
    yield eng
    eng.teardown()


@pytest.fixture()
def client(engine: EngineProcess):  # type: ignore[no-untyped-def]
    from jupyter_bai.client import Client

    c = Client(engine.url, engine.token)
    yield c
    c.close() if hasattr(c, "close") else None


@pytest.fixture()
def engine_env(engine: EngineProcess, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in engine.env.items():
        monkeypatch.setenv(key, value)
    return engine.env


@pytest.fixture()
def fresh_engine(tmp_path: Path, bwrap: str) -> Iterator[EngineProcess]:
    """A private engine for tests that kill or restart it."""
    eng = start_engine(tmp_path / "eng")
    yield eng
    eng.teardown()


@pytest.fixture(scope="session")
def backendai():  # type: ignore[no-untyped-def]
    """A real Backend.AI 23.09 halfstack (reused when one is up; else started once and stopped)."""
    from backendai_cluster import _ready, can_start, ensure_cluster

    if not _ready():
        missing = can_start()
        require(missing is None, f"the Backend.AI halfstack ({missing})")
    cluster = ensure_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session", autouse=True)
def _reap_what_tests_left_running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Sessions and endpoint proxies outlive their engine by design (a restart adopts them):
    at the end of the run, none of the engines made under pytest's temp dir leaves any."""
    yield
    from engine_proc import reap_leftovers

    reap_leftovers(tmp_path_factory.getbasetemp())
