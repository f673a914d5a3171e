"""Every route asks the server's Authorizer, with the right action, on the resource ``bai``.

A real ``ReadOnlyAuthorizer`` (tests/readonly_authorizer.py) is configured on a real engine;
every operation of ``route_table()`` is called: reads pass the check, everything else is a
403 ``{"error": "forbidden", ...}`` and changes nothing.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from tornado.websocket import WebSocketHandler

from engine_proc import EngineProcess, start_engine
from jupyter_bai.api.routes import route_table

METHODS = ("get", "post", "put", "delete")
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def readonly_engine(tmp_path_factory: pytest.TempPathFactory, bwrap: str) -> Iterator[EngineProcess]:
    base = tmp_path_factory.mktemp("authz")
    log = base / "authz.log"
    eng = start_engine(
        base,
        {"PYTHONPATH": str(TESTS), "BAI_TEST_AUTHZ_LOG": str(log)},
        ["--ServerApp.authorizer_class=readonly_authorizer.ReadOnlyAuthorizer"],
    )
    yield eng
    eng.teardown()


def operations() -> list[tuple[str, str, str]]:
    """(method, concrete path, declared action) for every route and method."""
    out = []
    for pattern, handler in route_table():
        if issubclass(handler, WebSocketHandler):
            continue  # authorized at the upgrade; a plain HTTP GET never reaches it
        path = re.sub(r"\(\?P<\w+>[^)]*\)", "nosuch", pattern)
        for method in METHODS:
            if method in vars(handler):
                out.append((method.upper(), path, vars(handler)[method].operation.action))
    return out


def expected_action(method: str, path: str) -> str:
    if path.endswith(("/exec", "/run", "/interrupt")):
        return "execute"
    if method == "GET" or path.endswith(("/assistant/ask", "/deploy/check")):
        return "read"
    return "write"


def test_every_route_checks_its_action_and_a_read_only_user_can_only_read(readonly_engine: EngineProcess) -> None:
    log = Path(readonly_engine.extra_env["BAI_TEST_AUTHZ_LOG"])
    headers = {"Authorization": f"token {readonly_engine.token}"}
    ops = operations()
    assert len(ops) >= 26
    with httpx.Client(base_url=readonly_engine.url, headers=headers, timeout=60) as h:
        for method, path, declared in ops:
            assert declared == expected_action(method, path), (method, path)
            log.write_text("")
            body: dict[str, Any] = {"content": b"x"} if method == "PUT" else {"json": {}} if method == "POST" else {}
            if path.endswith("/events"):
                with h.stream(method, path, params={"since": 0}) as r:
                    status, data = r.status_code, None
            else:
                r = h.request(method, path, params={"path": "a", "source": "/x"}, **body)
                status, data = r.status_code, r
            checks = [json.loads(line) for line in log.read_text().splitlines()]
            assert checks == [{"method": method, "path": path, "action": declared, "resource": "bai"}], (method, path)
            if declared == "read":
                assert status != 403, (method, path)
            else:
                assert status == 403, (method, path, status)
                assert data is not None and data.headers["content-type"].startswith("application/json")
                assert data.json() == {"error": "forbidden", "message": f"not allowed to {declared} bai resources"}
        # nothing was made by the refused writes
        assert h.get("/bai/api/v1/sessions").json() == {"sessions": []}
        assert h.get("/bai/api/v1/vfolders").json() == {"vfolders": []}


def test_a_refused_upload_does_not_break_the_next_request(engine: EngineProcess) -> None:
    """An upload refused before its body is read (wrong token: xsrf/auth) closes the connection
    instead of leaving unread bytes on it; the client's next request on its pool must work."""
    base = f"{engine.url}/bai/api/v1"
    for _ in range(30):
        with httpx.Client(headers={"Authorization": "token wrong"}, timeout=30) as h:
            r = h.put(f"{base}/vfolders/x/files", params={"path": "a"}, content=b"x" * 1000)
            assert r.status_code == 403 and r.json()["error"] == "forbidden"
            assert h.get(f"{base}/sessions").status_code == 403
