"""The WebSocket stream (and SSE resync) against a real engine: order, auth, replay, stall."""
from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import websocket

from engine_proc import Api, EngineProcess, start_engine

TERMINAL = ("TERMINATED", "ERROR", "CANCELLED")


def ws_url(eng: EngineProcess) -> str:
    return eng.url.replace("http://", "ws://") + "/bai/api/v1/ws"


def connect(eng: EngineProcess, token: str | None = None, **kw: Any) -> websocket.WebSocket:
    tok = eng.token if token is None else token
    header = [f"Authorization: token {tok}"] if tok else []
    return websocket.create_connection(ws_url(eng), header=header, timeout=30, **kw)


def recv(ws: websocket.WebSocket) -> dict[str, Any]:
    return json.loads(ws.recv())


def send(ws: websocket.WebSocket, **msg: Any) -> None:
    ws.send(json.dumps(msg))


def until(ws: websocket.WebSocket, pred: Any, limit: int = 5000) -> list[dict[str, Any]]:
    """Frames up to and including the first one ``pred`` accepts."""
    seen = []
    for _ in range(limit):
        msg = recv(ws)
        seen.append(msg)
        if pred(msg):
            return seen
    raise AssertionError(f"no matching frame in {limit}: {seen[-5:]}")


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture()
def ws(engine: EngineProcess) -> Iterator[websocket.WebSocket]:
    sock = connect(engine)
    yield sock
    sock.close()


def test_hello_then_a_sessions_status_changes_in_order(
    engine: EngineProcess, ws: websocket.WebSocket
) -> None:
    hello = recv(ws)
    assert hello["type"] == "hello" and hello["engine"] == "local" and isinstance(hello["seq"], int)
    send(ws, op="subscribe", channel="events", since=None)
    send(ws, op="snapshot")
    snap = recv(ws)
    assert snap["type"] == "resync" and snap["seq"] >= hello["seq"]
    assert set(snap["snapshot"]) == {"sessions", "vfolders", "resources", "pipelines", "services"}
    assert {"node", "runtimes"} <= set(snap["snapshot"]["resources"])  # as GET /resources
    assert {"capacity", "used", "free", "gpus"} <= set(snap["snapshot"]["resources"])
    name = uniq("wsb")
    Api(engine).create(name=name, type="batch", command="true")
    # The session's last change, TERMINATED, is followed in the same transaction by the release.
    frames = until(ws, lambda m: m.get("channel") == "events" and m["event"]["kind"] == "resources"
                   and m["event"]["session"] == name and m["event"]["action"] == "released")
    events = [f["event"] for f in frames if f.get("channel") == "events"]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] > snap["seq"]
    mine = [e for e in events if e["kind"] == "session" and e["name"] == name]
    assert [e["status"] for e in mine] == [
        "PENDING", "SCHEDULED", "PREPARING", "RUNNING", "TERMINATED"]
    assert [e["previous"] for e in mine] == [None, "PENDING", "SCHEDULED", "PREPARING", "RUNNING"]
    assert (mine[-1]["result"], mine[-1]["exit_code"]) == ("success", 0)
    res = [e for e in events if e["kind"] == "resources" and e["session"] == name]
    assert [e["action"] for e in res] == ["allocated", "released"]
    assert res[0]["seq"] == mine[1]["seq"] + 1 and res[1]["seq"] == mine[-1]["seq"] + 1
    assert {"used", "free", "capacity", "gpus"} <= set(res[1])
    # Control ops and bad ops on the same connection.
    send(ws, op="ping")
    assert until(ws, lambda m: m.get("type") == "pong")[-1] == {"type": "pong"}
    for bad, words in ((b"not json", "not valid JSON"), ({"op": "dance"}, "unknown op"),
                       ({"op": "subscribe", "channel": "tv"}, "unknown channel"),
                       ({"op": "subscribe", "channel": "events", "since": "x"}, "'since'")):
        ws.send(bad if isinstance(bad, bytes) else json.dumps(bad))
        err = until(ws, lambda m: m.get("type") == "error")[-1]
        assert words in err["message"]
    send(ws, op="ping")
    until(ws, lambda m: m.get("type") == "pong")


def test_subscribe_since_replays_what_was_missed(engine: EngineProcess) -> None:
    api = Api(engine)
    start = connect(engine)
    seq = recv(start)["seq"]
    start.close()
    name = uniq("wsr")
    api.create(name=name, type="batch", command="true")
    api.wait(name, ())
    late = connect(engine)
    try:
        recv(late)
        send(late, op="subscribe", channel="events", since=seq)
        frames = until(late, lambda m: m.get("event", {}).get("status") == "TERMINATED"
                       and m["event"]["name"] == name)
        statuses = [f["event"]["status"] for f in frames
                    if f["event"]["kind"] == "session" and f["event"]["name"] == name]
        assert statuses == ["PENDING", "SCHEDULED", "PREPARING", "RUNNING", "TERMINATED"]
        assert frames[0]["event"]["seq"] == seq + 1
    finally:
        late.close()


def test_unauthenticated_websocket_is_refused(engine: EngineProcess) -> None:
    for token in ("", "wrong-token"):
        with pytest.raises(websocket.WebSocketBadStatusException) as err:
            connect(engine, token=token)
        assert err.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as err:  # the token in the URL
        websocket.create_connection(ws_url(engine) + "?token=nope", timeout=30)
    assert err.value.status_code == 403
    ok = websocket.create_connection(ws_url(engine) + f"?token={engine.token}", timeout=30)
    assert recv(ok)["type"] == "hello"
    ok.close()


def test_metrics_channel_and_route(engine: EngineProcess, ws: websocket.WebSocket) -> None:
    recv(ws)
    send(ws, op="subscribe", channel="metrics")
    sample = until(ws, lambda m: m.get("channel") == "metrics")[-1]["sample"]
    assert 0 <= sample["cpu"]["percent"] <= 100 * sample["cpu"]["count"]
    assert 0 < sample["mem"]["used"] < sample["mem"]["total"]
    # The engine fixture declares two fake GPUs: their allocation, never a made-up utilisation.
    assert [(g["source"], g["utilization"], g["mem_used"]) for g in sample["gpus"]] == [
        ("fake", None, None), ("fake", None, None)]
    second = until(ws, lambda m: m.get("channel") == "metrics")[-1]["sample"]
    assert second["at"] > sample["at"]
    send(ws, op="unsubscribe", channel="metrics")
    body = Api(engine).get("/metrics").json()
    assert body["latest"]["at"] >= second["at"] and body["history"][-1] == body["latest"]
    assert len(body["history"]) <= 120 and body["interval"] == 1.0


def test_sse_replay_that_cannot_be_whole_starts_with_resync(engine: EngineProcess) -> None:
    with httpx.stream("GET", f"{engine.url}/bai/api/v1/events", params={"since": 10**9},
                      headers={"Authorization": f"token {engine.token}"}, timeout=30) as r:
        lines = r.iter_lines()
        for line in lines:
            if line.startswith("event:"):
                assert line == "event: resync"
                data = json.loads(next(lines).removeprefix("data: "))
                assert data["kind"] == "resync" and data["seq"] < 10**9
                break


@pytest.fixture()
def small_buffer_engine(tmp_path: Path, bwrap: str) -> Iterator[EngineProcess]:
    eng = start_engine(tmp_path / "eng", extra_argv=["--BaiApp.event_buffer=4"])
    yield eng
    eng.teardown()


def test_stalled_websocket_client_gets_resync_with_a_snapshot(
    small_buffer_engine: EngineProcess,
) -> None:
    eng = small_buffer_engine
    api = Api(eng)
    # A client that stops reading: a tiny receive window, and no recv() while events happen.
    stalled = connect(eng, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    recv(stalled)
    send(stalled, op="subscribe", channel="events", since=None)
    folder = uniq("stall")
    assert api.post("/vfolders", json={"name": folder}).status_code == 201
    time.sleep(0.2)
    for i in range(600):  # ~200 KB of events: well past the socket buffers and 4 queued events
        r = api.put(f"/vfolders/{folder}/files", params={"path": f"{i:04d}-" + "x" * 240},
                    content=b"x")
        assert r.status_code in (200, 201), r.text
    marker = uniq("last")
    api.post("/vfolders", json={"name": marker})
    frames = until(stalled, lambda m: m.get("event", {}).get("name") == marker or (
        m.get("type") == "resync" and marker in [v["name"] for v in m["snapshot"]["vfolders"]]
    ), limit=2000)
    stalled.close()
    resyncs = [i for i, f in enumerate(frames) if f.get("type") == "resync"]
    assert resyncs, "a stalled subscriber must be told to resync"
    assert len(frames) < 600  # the backlog was dropped, not delivered late
    first = frames[resyncs[0]]
    assert folder in [v["name"] for v in first["snapshot"]["vfolders"]]
    after = [f["event"]["seq"] for f in frames[resyncs[0] + 1:] if f.get("channel") == "events"]
    assert all(s > first["seq"] for s in after) and after == sorted(after)
