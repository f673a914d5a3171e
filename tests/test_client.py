"""The client: engine discovery, error mapping, stream parsing, and a real engine end to end.

``FakeApiServer`` is a canned-answer HTTP server used only where the real engine cannot be
made to answer on demand: HTTP error mapping (odd statuses, non-JSON bodies) and SSE parsing.
Everything else runs against the real engine fixture.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jupyter_bai.client import AsyncClient, BaiError, Client, EngineConnection, find_engine
from jupyter_bai.client.wire import SSEParser, _LineSplitter, _plan_upload, error_from_response
from jupyter_bai.client.connection import (
    EngineNotFound,
    read_connection_file,
    remove_connection_file,
    write_connection_file,
)
from jupyter_bai.spec.errors import (
    Conflict,
    InsufficientResources,
    InvalidRequest,
    InvalidState,
    NotFound,
    QuotaExceeded,
    RuntimeUnavailable,
)

# --------------------------------------------------------------------------- discovery


@pytest.fixture()
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    rd = tmp_path / "runtime"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(rd))
    monkeypatch.delenv("JUPYTER_BAI_URL", raising=False)
    monkeypatch.delenv("JUPYTER_BAI_TOKEN", raising=False)
    return rd


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_env_wins_over_connection_file(runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_connection_file(EngineConnection("http://file:1", "ftok"), os.getpid(), "/s")
    monkeypatch.setenv("JUPYTER_BAI_URL", "http://env:2")
    monkeypatch.setenv("JUPYTER_BAI_TOKEN", "etok")
    assert find_engine() == EngineConnection("http://env:2", "etok")


def test_connection_file_in_jupyter_runtime_dir(runtime_dir: Path) -> None:
    path = write_connection_file(EngineConnection("http://127.0.0.1:9", "tok"), os.getpid(), "/state")
    assert path == runtime_dir / "bai-engine.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "url": "http://127.0.0.1:9", "token": "tok", "pid": os.getpid(), "state_dir": "/state",
    }
    assert [p.name for p in runtime_dir.iterdir()] == ["bai-engine.json"]  # no temp file left
    conn = find_engine()
    assert conn == EngineConnection("http://127.0.0.1:9", "tok")
    assert conn.api_url == "http://127.0.0.1:9/bai/api/v1"


def test_dead_pid_file_is_ignored(runtime_dir: Path) -> None:
    write_connection_file(EngineConnection("http://127.0.0.1:9", "tok"), _dead_pid(), "/s")
    assert read_connection_file() is None
    with pytest.raises(EngineNotFound) as info:
        find_engine()
    assert str(info.value) == (
        "no jupyter-bai engine is running: start JupyterLab with `make lab` or run `jupyter bai serve`"
    )
    assert isinstance(info.value, BaiError)


@pytest.mark.parametrize("content", ["", "not json", "[]", '{"token": "x"}', '{"url": "", "pid": 1}'])
def test_broken_connection_file_is_ignored(runtime_dir: Path, content: str) -> None:
    runtime_dir.mkdir(parents=True)
    (runtime_dir / "bai-engine.json").write_text(content)
    with pytest.raises(EngineNotFound):
        find_engine()


def test_no_engine_at_all(runtime_dir: Path) -> None:
    with pytest.raises(EngineNotFound, match="no jupyter-bai engine is running"):
        Client()


def test_remove_connection_file_respects_pid(tmp_path: Path) -> None:
    path = write_connection_file(EngineConnection("http://x", "t"), 4242, "/s", path=tmp_path / "c.json")
    remove_connection_file(path, pid=1111)  # another engine's file: left alone
    assert path.exists()
    remove_connection_file(path, pid=4242)
    assert not path.exists()
    remove_connection_file(path)  # already gone: fine


# --------------------------------------------------------------------------- pure helpers


def test_sse_parser_follows_the_event_stream_rules() -> None:
    p = SSEParser()
    lines = [
        ": connected", "",
        "id: 7", "event: session", 'data: {"kind": "session", "name": "a",', 'data:  "status": "RUNNING"}', "",
        ": ping", "",
        "retry: 1000", "id: 8", "event: vfolder", 'data: {"kind": "vfolder", "name": "d", "seq": 8}', "\r",
        "data: plain text", "",
    ]
    events = [e for e in (p.feed(line) for line in lines) if e is not None]
    assert events == [
        {"kind": "session", "name": "a", "status": "RUNNING", "event": "session", "seq": 7},
        {"kind": "vfolder", "name": "d", "seq": 8, "event": "vfolder"},
        {"data": "plain text", "event": "message", "seq": 8},  # the last id carries over
    ]
    assert p.last_id == "8"


def test_line_splitter_only_splits_on_newline() -> None:
    s = _LineSplitter()
    assert s.feed('{"text": "a\u2028b"}\r\n{"x"') == ['{"text": "a\u2028b"}']
    assert s.feed(": 1}\n\n") == ['{"x": 1}', ""]
    assert s.feed("tail") == []
    assert s.flush() == ["tail"]


@pytest.mark.parametrize(
    ("status", "body", "cls", "message"),
    [
        (400, {"error": "invalid-request", "message": "bad mount 'x::'"}, InvalidRequest, "bad mount 'x::'"),
        (400, {"error": "insufficient-resources", "message": "too big"}, InsufficientResources, "too big"),
        (404, {"error": "not-found", "message": "no such session 'zz'"}, NotFound, "no such session 'zz'"),
        (409, {"error": "conflict", "message": "taken"}, Conflict, "taken"),
        (409, {"error": "invalid-state", "message": "not running"}, InvalidState, "not running"),
        (413, {"error": "quota-exceeded", "message": "over quota"}, QuotaExceeded, "over quota"),
        (503, {"error": "runtime-unavailable", "message": "no bwrap"}, RuntimeUnavailable, "no bwrap"),
        (400, {"error": "invalid-request", "message": "line one\nline two"}, InvalidRequest, "line one line two"),
    ],
)
def test_error_codes_map_to_classes(status: int, body: dict[str, str], cls: type[BaiError], message: str) -> None:
    err = error_from_response(status, json.dumps(body).encode(), url="http://e")
    assert type(err) is cls
    assert err.status == status
    assert str(err) == message


def test_kv_items_are_validated_before_sending() -> None:
    c = Client("http://127.0.0.1:9", "t")
    with pytest.raises(InvalidRequest, match="given twice"):
        c.create_session("local", resources=["cpu=1", "cpu=2"])
    with pytest.raises(InvalidRequest, match="unknown resource slot 'gpu'"):
        c.create_session("local", resources=["gpu=1"])
    with pytest.raises(InvalidRequest, match="invalid env"):
        c.create_session("local", env=["NOEQUALS"])
    with pytest.raises(InvalidRequest, match="reserved"):
        c.create_session("local", env=["CUDA_VISIBLE_DEVICES=0"])


def test_upload_plan_expands_directories(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "empty").mkdir()
    (tmp_path / "d" / "a.txt").write_text("aa")
    (tmp_path / "d" / "sub" / "b.txt").write_text("bbb")
    (tmp_path / "f.csv").write_text("x")
    plan = _plan_upload([tmp_path / "f.csv", tmp_path / "d"], "/in/")
    assert [(u.kind, u.remote, u.size) for u in plan] == [
        ("file", "in/f.csv", 1),
        ("dir", "in/d", 0),
        ("dir", "in/d/empty", 0),
        ("dir", "in/d/sub", 0),
        ("file", "in/d/a.txt", 2),
        ("file", "in/d/sub/b.txt", 3),
    ]
    with pytest.raises(InvalidRequest, match="no such local file"):
        _plan_upload([tmp_path / "f.csv", tmp_path / "missing"], "")


# --------------------------------------------------------------------------- FakeApiServer


class FakeApiServer:
    """A canned-answer HTTP server (a named fake) for HTTP error mapping and SSE parsing only."""

    def __init__(self, routes: dict[tuple[str, str], tuple[int, str, bytes]]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = self.path.split("?", 1)[0]
                outer.requests.append((self.command, self.path, dict(self.headers)))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, ctype, body = outer.routes.get((self.command, path), (404, "text/html", b"<html>nope</html>"))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


API = "/bai/api/v1"


def _json(status: int, data: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(data).encode()


SSE_BODY = (
    b": connected\n\n"
    b'id: 1\nevent: session\ndata: {"seq": 1, "kind": "session", "name": "s1", "status": "PENDING"}\n\n'
    b": ping\n\n"
    b'id: 2\r\nevent: vfolder\r\ndata: {"seq": 2, "kind": "vfolder", "name": "d",\r\ndata: "action": "created"}\r\n\r\n'
    b'id: 40\nevent: resync\ndata: {"kind": "resync", "seq": 40}\n\n'
)

FAKE_ROUTES = {
    ("GET", f"{API}/sessions/missing"): _json(404, {"error": "not-found", "message": "no such session 'missing'"}),
    ("DELETE", f"{API}/sessions/busy"): _json(409, {"error": "invalid-state", "message": "session 'busy' is TERMINATING"}),
    ("GET", f"{API}/vfolders/odd"): _json(418, {"error": "teapot", "message": "I am a teapot"}),
    ("GET", f"{API}/resources"): (403, "text/html", b"<html>Forbidden</html>"),
    ("GET", f"{API}/vfolders"): (500, "text/html", b"<html>Internal error</html>"),
    ("GET", f"{API}/events"): (200, "text/event-stream", SSE_BODY),
    ("POST", f"{API}/sessions/s1/exec"): (
        200, "application/x-ndjson",
        b'{"type": "stream", "name": "stdout", "text": "hi\\n"}\n'
        b'{"type": "done", "status": "error", "ename": "invalid-state", "evalue": "session ended"}\n',
    ),
}


@pytest.fixture()
def fake_api() -> Iterator[FakeApiServer]:
    with FakeApiServer(FAKE_ROUTES) as srv:
        yield srv


def test_http_errors_become_bai_errors(fake_api: FakeApiServer) -> None:
    with Client(fake_api.url, "sekret") as c:
        with pytest.raises(NotFound) as nf:
            c.get_session("missing")
        assert (str(nf.value), nf.value.status, nf.value.code) == ("no such session 'missing'", 404, "not-found")
        with pytest.raises(InvalidState, match="is TERMINATING"):
            c.destroy_session("busy")
        with pytest.raises(BaiError) as odd:
            c.get_vfolder("odd")
        assert (odd.value.code, odd.value.status, str(odd.value)) == ("teapot", 418, "I am a teapot")
        with pytest.raises(BaiError, match="refused the request .403.*JUPYTER_BAI_TOKEN") as forbidden:
            c.resources()
        assert forbidden.value.status == 403
        with pytest.raises(BaiError, match="^the engine answered 500") as boom:
            c.list_vfolders()
        assert "\n" not in str(boom.value)
        with pytest.raises(InvalidState, match="session ended"):
            c.exec("s1", ["true"], on_output=lambda s, t: None)
    _, path, headers = fake_api.requests[0]
    assert path == f"{API}/sessions/missing"
    assert headers["Authorization"] == "token sekret"


def test_sse_events_through_http(fake_api: FakeApiServer) -> None:
    with Client(fake_api.url, "t") as c:
        events = list(c.events(since=0))
    assert events == [
        {"seq": 1, "kind": "session", "name": "s1", "status": "PENDING", "event": "session"},
        {"seq": 2, "kind": "vfolder", "name": "d", "action": "created", "event": "vfolder"},
        {"kind": "resync", "seq": 40, "event": "resync"},
    ]
    assert [e.is_resync for e in events] == [False, False, True]  # passed through, not swallowed
    assert events[-1].seq == 40 and events[-1]["kind"] == "resync"
    assert fake_api.requests[-1][1] == f"{API}/events?since=0"


def test_async_client_maps_errors_and_parses_sse(fake_api: FakeApiServer) -> None:
    async def go() -> list[dict[str, Any]]:
        async with AsyncClient(fake_api.url, "t") as c:
            with pytest.raises(NotFound, match="no such session 'missing'"):
                await c.get_session("missing")
            with pytest.raises(BaiError, match="refused the request"):
                await c.resources()
            return [e async for e in c.events()]

    events = asyncio.run(go())
    assert [e["seq"] for e in events] == [1, 2, 40]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_names_the_url() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with Client(url, "t") as c, pytest.raises(EngineNotFound) as info:
        c.list_sessions()
    assert url in str(info.value)
    assert "jupyter bai serve" in str(info.value)

    async def go() -> None:
        async with AsyncClient(url, "t") as ac:
            await ac.list_sessions()

    with pytest.raises(EngineNotFound, match="connection refused"):
        asyncio.run(go())


# --------------------------------------------------------------------------- real engine


def test_sessions_end_to_end(client: Client, tmp_path: Path) -> None:
    name = f"cl-{os.getpid()}"
    seen: list[str] = []
    sess = client.create_session(
        "local", name=name, resources={"cpu": 1, "mem": "512m"}, env=["GREETING=hello"],
        wait=True, timeout=60, progress=lambda s: seen.append(s["status"]),
    )
    try:
        assert sess["status"] == "RUNNING"
        assert seen[0] in ("PENDING", "SCHEDULED", "PREPARING", "RUNNING") and seen[-1] == "RUNNING"
        assert name in [s["name"] for s in client.list_sessions(status="RUNNING")]
        out: list[tuple[str, str]] = []
        code = client.exec(name, "echo $GREETING; echo oops >&2; exit 3", on_output=lambda s, t: out.append((s, t)))
        assert code == 3
        assert "".join(t for s, t in out if s == "stdout") == "hello\n"
        assert "".join(t for s, t in out if s == "stderr") == "oops\n"
        assert client.exec(name, ["sh", "-c", "test -d /home/work"], on_output=lambda s, t: None) == 0

        chunks: list[str] = []
        done = client.run_code(name, "x = 40\nprint('set')", on_output=lambda s, t: chunks.append(t))
        assert done["status"] == "ok" and "".join(chunks) == "set\n"
        results: list[str] = []
        done = client.run_code(name, "x + 2", on_output=lambda s, t: None, on_result=results.append)
        assert results == ["42"] and done["result"] == "42"
        done = client.run_code(name, "1/0", on_output=lambda s, t: None)
        assert done["status"] == "error" and done["ename"] == "ZeroDivisionError"
        assert any("ZeroDivisionError" in line for line in done["traceback"])

        # Ctrl-C equivalent: interrupt from another thread while code sleeps
        timer = threading.Timer(0.5, lambda: client.interrupt(name))
        timer.start()
        t0 = time.monotonic()
        done = client.run_code(name, "import time\ntime.sleep(30)", on_output=lambda s, t: None,
                               interrupt_on_ctrl_c=False)
        assert time.monotonic() - t0 < 15
        assert done["status"] == "error" and done["ename"] == "KeyboardInterrupt"

        assert "hello" not in client.session_logs(name, tail=0)
        with pytest.raises(NotFound):
            client.get_session("no-such-session-xyz")
    finally:
        gone = client.destroy_session(name)
    assert gone["status"] in ("TERMINATING", "TERMINATED")
    final = client.wait_session(name, {"TERMINATED"}, timeout=30)
    assert final["status"] == "TERMINATED"
    with pytest.raises(InvalidState):
        client.run_code(name, "1")


def test_batch_wait_and_follow_logs(client: Client) -> None:
    name = f"batch-{os.getpid()}"
    sess = client.create_session("local", name=name, type="batch",
                                 command="echo one; sleep 0.3; echo two", wait=True, timeout=60)
    assert sess["status"] == "TERMINATED" and sess["result"] == "success" and sess["exit_code"] == 0
    assert "".join(client.follow_logs(name)).count("two") == 1
    assert "one" in client.session_logs(name)


def test_vfolder_transfer_round_trip(client: Client, tmp_path: Path) -> None:
    folder = f"xfer{os.getpid()}"
    src = tmp_path / "src"
    (src / "deep" / "er").mkdir(parents=True)
    big = os.urandom(3 * (1 << 20) + 17)  # several chunks
    (src / "big.bin").write_bytes(big)
    (src / "deep" / "er" / "note.txt").write_text("hi")
    (src / "empty.txt").write_bytes(b"")
    client.create_vfolder(folder, usage_mode="data", quota="100m")
    try:
        ticks: list[tuple[int, int]] = []
        entries = client.upload(folder, [src], "in", progress=lambda d, t, _: ticks.append((d, t)))
        assert {e["path"] for e in entries} >= {"in/src/big.bin", "in/src/deep/er/note.txt", "in/src/empty.txt"}
        total = len(big) + 2
        assert ticks[-1] == (total, total) and len(ticks) > 3
        names = {f["name"]: f for f in client.list_files(folder, "in/src")}
        assert names["big.bin"]["size"] == len(big) and names["deep"]["type"] == "dir"

        out = tmp_path / "out"
        got = client.download(folder, ["in/src"], out)
        assert (out / "src" / "big.bin").read_bytes() == big
        assert (out / "src" / "deep" / "er" / "note.txt").read_text() == "hi"
        assert set(got) == {out / "src" / "big.bin", out / "src" / "deep" / "er" / "note.txt", out / "src" / "empty.txt"}
        assert not list(out.rglob("*.bai-part"))

        client.mkdir(folder, "a/b", parents=True)
        moved = client.move(folder, "in/src/deep/er/note.txt", "a/b/note.txt")
        assert moved["path"] == "a/b/note.txt"
        client.rm(folder, "in", recursive=True)
        assert sorted(f["name"] for f in client.list_files(folder)) == ["a"]
        with pytest.raises(NotFound):
            client.download(folder, "nope.txt", out)
        with pytest.raises(BaiError):
            client.list_files(folder, "../..")
        assert client.get_vfolder(folder)["usage_mode"] == "data"
    finally:
        client.delete_vfolder(folder)
    assert folder not in [v["name"] for v in client.list_vfolders()]


def test_events_report_session_changes(client: Client) -> None:
    name = f"ev-{os.getpid()}"
    got: list[dict[str, Any]] = []

    def listen() -> None:
        with Client(client.connection) as c2:
            for e in c2.events(since=0):
                if e.get("name") == name:
                    got.append(e)
                    if e.get("status") == "RUNNING":
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    client.create_session("local", name=name, wait=True, timeout=60)
    t.join(20)
    client.destroy_session(name, forced=True)
    assert got and got[-1]["status"] == "RUNNING" and got[-1]["kind"] == "session"
    assert all(isinstance(e["seq"], int) for e in got)


def test_async_client_end_to_end(engine: Any) -> None:
    name = f"as-{os.getpid()}"

    async def go() -> tuple[dict[str, Any], int, dict[str, Any]]:
        async with AsyncClient(engine.url, engine.token) as c:
            sess = await c.create_session("local", name=name, wait=True, timeout=60)
            out: list[str] = []
            code = await c.exec(name, ["echo", "async"], on_output=lambda s, t: out.append(t))
            await c.run_code(name, "y = 5", on_output=lambda s, t: None)
            done = await c.run_code(name, "y * 2", on_output=lambda s, t: None)
            assert "".join(out) == "async\n"
            await c.destroy_session(name)
            return sess, code, done

    sess, code, done = asyncio.run(go())
    assert sess["status"] == "RUNNING" and code == 0 and done["result"] == "10"


def test_upload_to_a_missing_folder_fails_before_progress(client: Client, tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(os.urandom(1 << 20))
    ticks: list[tuple[int, int, str]] = []
    with pytest.raises(NotFound, match="no-such-folder-c"):
        client.upload("no-such-folder-c", [tmp_path / "f.bin"], progress=lambda *a: ticks.append(a))
    assert ticks == []
