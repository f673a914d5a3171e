"""The API's input rules end to end, on a real engine: each case here was a 500, a silent
default or a later failure before, and is now a one-line 400 at the request that caused it."""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import yaml

from engine_proc import Api, EngineProcess

JSON_POSTS = [
    "/sessions",
    "/sessions/{s}/exec",
    "/sessions/{s}/run",
    "/vfolders",
    "/vfolders/{v}/mkdir",
    "/vfolders/{v}/move",
    "/vfolders/{v}/rm",
    "/assistant/ask",
    "/assistant/sources",
]


@pytest.fixture()
def api(engine: EngineProcess) -> Iterator[Api]:
    a = Api(engine)
    yield a
    a.http.close()


def _tag() -> str:
    return "in-" + os.urandom(3).hex()


def _error(r: object, status: int = 400) -> str:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    assert r.headers["content-type"].startswith("application/json")  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert set(body) == {"error", "message"} and "\n" not in body["message"]
    return str(body["message"])


@pytest.fixture()
def folder(api: Api) -> Iterator[str]:
    name = _tag()
    assert api.post("/vfolders", json={"name": name}).status_code == 201
    yield name
    api.delete(f"/vfolders/{name}")


@pytest.mark.parametrize("route", JSON_POSTS)
@pytest.mark.parametrize("body", [b"\xff\xfe{}", b'{"a": "\xc3"}', b"{nope", b'{"x": NaN}',
                                  b"[1, 2]", b'{"q": ' + b"9" * 5000 + b"}", b"[" * 100000,
                                  b'{"name": "a\\ud800"}'])
def test_bodies_that_are_not_json_objects_are_400(
    api: Api, folder: str, route: str, body: bytes
) -> None:
    path = route.format(s="no-such-session", v=folder)
    r = api.http.post(api.base + path, content=body, headers={"Content-Type": "application/json"})
    message = _error(r)
    assert message.startswith("request body ")


def test_quota_above_the_largest_size_is_400(api: Api) -> None:
    name = _tag()
    r = api.post("/vfolders", json={"name": name, "quota": 2**64})
    assert "must be at most 9223372036854775807 bytes" in _error(r)
    assert api.get(f"/vfolders/{name}").status_code == 404
    r = api.post("/vfolders", json={"name": name, "quota": "99999999p"})
    assert "too large" in _error(r)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": "abc\n"}, r"invalid session name 'abc\n'"),
        ({"env": {"FOO\n": "1"}}, r"invalid env name 'FOO\n'"),
        ({"resources": {"cpu": 0}}, "cpu must be at least 0.1"),
        ({"resources": {"mem": 0}}, "mem must be at least 64m"),
        ({"resources": {"mem": 1}}, "mem must be at least 64m"),
        ({"resources": {"mem": "1"}}, "mem must be at least 64m"),
        ({"resources": "cpu=1"}, "expected an object"),
        ({"resources": ["cpu=1"]}, "expected an object"),
        ({"env": []}, "env: input should be a valid dictionary"),
        ({"mounts": ["data:/home/work/" + "a" * 5000]}, "longer than"),
        ({"mounts": [{"source": "data", "target": "/home/work/" + "a" * 4100}]},
         "target is longer than 4096 characters"),
        ({"type": "BATCH", "command": "true"}, "unknown session type 'BATCH'"),
        ({"idle_timeout": "60"}, "idle_timeout: input should be a valid number"),
    ],
)
def test_session_requests_refused_at_create(api: Api, body: dict, says: str) -> None:  # type: ignore[type-arg]
    before = len(api.get("/sessions").json()["sessions"])
    r = api.post("/sessions", json={"image": "local", **body})
    assert says in _error(r)
    assert len(api.get("/sessions").json()["sessions"]) == before  # nothing half-made


def test_vfolder_name_with_a_newline_is_refused(api: Api, folder: str) -> None:
    r = api.post("/vfolders", json={"name": folder + "\n"})
    assert "invalid vfolder name" in _error(r)
    names = [f["name"] for f in api.get("/vfolders").json()["vfolders"]]
    assert names.count(folder) == 1 and folder + "\n" not in names


def test_the_smallest_allowed_session_starts_and_runs(api: Api) -> None:
    """64m and 0.1 cpu are real minimums: such a session runs code (mem=1 used to end in ERROR)."""
    name = _tag()
    api.create(name=name, resources={"cpu": "0.1", "mem": "64m"})
    try:
        s = api.wait(name)
        assert s["status"] == "RUNNING", s
        assert s["resources"]["mem"] == str(64 * 2**20)
        text, _ = api.run(name, "print(sum(range(10)))")
        assert text.strip() == "45"
    finally:
        api.delete(f"/sessions/{name}", params={"forced": "true"})


def test_openapi_document_is_served_as_yaml(api: Api) -> None:
    r = api.get("/openapi.yaml")
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "application/yaml"
    assert yaml.safe_load(r.text)["openapi"].startswith("3.1")


def test_empty_followed_log_is_text(api: Api) -> None:
    name = _tag()
    api.create(name=name, type="batch", command="true", resources={"cpu": "0.1", "mem": "64m"})
    assert api.wait(name, ("TERMINATED",))["status"] == "TERMINATED"
    r = api.get(f"/sessions/{name}/logs", params={"follow": "true"})
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "text/plain"
    assert api.get(f"/sessions/{name}/logs").headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("path", "params", "says"),
    [
        ("/sessions/x/logs", {"tail": "-1"}, "query parameter 'tail' must be between 0 and"),
        ("/sessions/x/logs", {"tail": "9" * 30}, "query parameter 'tail' must be an integer"),
        ("/sessions/x/logs", {"follow": "maybe"}, "query parameter 'follow' must be true or false"),
        ("/events", {"since": "99999999999999999999"}, "query parameter 'since'"),
        ("/sessions", {"all": "null"}, "query parameter 'all' must be true or false"),
        ("/sessions", {"all": ""}, "query parameter 'all' must be true or false, got ''"),
        ("/sessions/x/logs", {"tail": ""}, "query parameter 'tail' must be an integer, got ''"),
    ],
)
def test_query_parameters_are_checked(api: Api, path: str, params: dict, says: str) -> None:  # type: ignore[type-arg]
    assert says in _error(api.get(path, params=params))


def test_destroy_with_a_bad_flag_is_400(api: Api) -> None:
    assert "'forced' must be true or false" in _error(
        api.delete("/sessions/x", params={"forced": "null"})
    )


@pytest.mark.parametrize(
    ("route", "body", "says"),
    [
        ("/vfolders/{v}/mkdir", {"path": "a", "parents": "yes"}, "parents: input should be a valid boolean"),
        ("/vfolders/{v}/mkdir", {"path": "a" * 300}, "component longer than 255 bytes"),
        ("/vfolders/{v}/mkdir", {"path": "a", "mode": 7}, "unknown field 'mode'"),
        ("/vfolders/{v}/move", {"src": "a", "dst": 5}, "dst: input should be a valid string"),
        ("/vfolders/{v}/rm", {"path": "a", "recursive": 1}, "recursive: input should be a valid boolean"),
        ("/sessions/x/exec", {"command": "ls", "env": []}, "env: input should be a valid dictionary"),
        ("/sessions/x/exec", {"command": []}, "non-empty"),
        ("/sessions/x/run", {"code": 5}, "code: input should be a valid string"),
        ("/assistant/ask", {"question": "q", "top_k": True}, "top_k must be an integer from 1 to 50, got True"),
        ("/assistant/ask", {"question": "q", "stream": "yes"}, "stream: input should be a valid boolean"),
        ("/assistant/ask", {"question": "q", "history": [{"question": 5}]}, "history[0].question"),
    ],
)
def test_bodies_take_exactly_their_documented_types(
    api: Api, folder: str, route: str, body: dict, says: str  # type: ignore[type-arg]
) -> None:
    assert says in _error(api.post(route.format(v=folder), json=body))


def test_file_paths_the_kernel_cannot_take_are_400(api: Api, folder: str) -> None:
    long_name = "a" * 256
    for method, path in (("GET", "files"), ("GET", "download"), ("PUT", "files")):
        r = api.http.request(method, f"{api.base}/vfolders/{folder}/{path}",
                             params={"path": long_name}, content=b"x" if method == "PUT" else None)
        assert "component longer than 255 bytes" in _error(r)


@pytest.mark.parametrize("last_id", ["9" * 30, "-1", "abc", "1.5"])
def test_a_foreign_last_event_id_is_ignored(api: Api, last_id: str) -> None:
    """An id that is not one of ours is ignored: the stream starts as if none was sent."""
    with api.http.stream("GET", api.base + "/events", headers={"Last-Event-ID": last_id}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert next(r.iter_lines()) == ": connected"
