"""The API assistant end to end: REST route, client, CLI and magics against a real engine."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from engine_proc import start_engine
from fake_openai_server import FakeOpenAI
from jupyter_bai.chat import ANSWER_MIME
from jupyter_bai.cli import run
from jupyter_bai.spec.errors import InvalidRequest, NotFound


def api(engine: Any, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, f"{engine.url}/bai/api/v1{path}", timeout=60,
                         headers={"Authorization": f"token {engine.token}"}, **kw)


def test_ask_route_streams_ndjson_and_answers_json(engine: Any) -> None:
    r = api(engine, "POST", "/assistant/ask", json={"question": "how do I give my session half a GPU?", "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    msgs = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    assert msgs[0]["type"] == "sources" and msgs[-1]["type"] == "done"
    r = httpx.post(f"{engine.url}/bai/api/v1/assistant/ask", json={"question": "gpu"}, timeout=30)
    assert r.status_code == 403
    r = api(engine, "POST", "/assistant/ask", json={"question": "list my storage folders", "top_k": 3})
    body = r.json()
    assert r.status_code == 200 and len(body["sources"]) == 3
    assert body["sources"][0]["operation_id"] == "listVfolders" or "listVfolders" in body["answer"]


@pytest.mark.parametrize("body, message", [
    ({"question": ""}, "empty question"),
    ({"question": "gpu " * 800}, "question too long"),
    ({"question": "gpu", "top_k": 0}, "top_k must be"),
    ({"question": "gpu", "history": "nope"}, "'history' must be a list"),
])
def test_ask_route_rejects_bad_input(engine: Any, body: dict[str, Any], message: str) -> None:
    r = api(engine, "POST", "/assistant/ask", json=body)
    assert r.status_code == 400 and r.json()["error"] == "invalid-request" and message in r.json()["message"]


def test_client_ask_learn_sources_forget(client: Any, tmp_path: Path) -> None:
    result = client.ask("how do I give my session half a GPU?")
    assert not result["abstained"] and "POST /bai/api/v1/sessions" in result["answer"]
    assert any(s["operation_id"] == "createSession" for s in result["sources"])
    pieces: list[str] = []
    client.ask("follow the output of a running job live", on_delta=pieces.append)
    assert pieces and "getSessionLogs" in "".join(pieces)
    docs = tmp_path / "team-docs"
    docs.mkdir()
    (docs / "howto.md").write_text("# Frobnicator\nTo calibrate the frobnicator run `calibrate_frob`.\n")
    learned = client.assistant_learn(docs)
    assert learned["docs"] == 1 and learned["source"] == str(docs)
    srcs = client.assistant_sources()["sources"]
    assert any(s["source"] == str(docs) and s["kind"] == "learned" for s in srcs)
    ans = client.ask("how do I calibrate the frobnicator?")
    assert ans["sources"][0]["ref"].startswith(str(docs / "howto.md"))
    client.assistant_forget(docs)
    assert all(s["source"] != str(docs) for s in client.assistant_sources()["sources"])
    assert client.ask("how do I calibrate the frobnicator?")["abstained"]
    with pytest.raises(NotFound, match="has not learned"):
        client.assistant_forget(docs)
    with pytest.raises(InvalidRequest, match="no such file or directory"):
        client.assistant_learn(tmp_path / "missing")
    bad = tmp_path / "bad.yaml"
    bad.write_text("openapi: 3.0.0\npaths: 12\n")
    with pytest.raises(InvalidRequest, match=r"bad.yaml: 'paths' is missing or is not a mapping"):
        client.assistant_learn(bad)
    assert all(s["source"] != str(bad) for s in client.assistant_sources()["sources"])


def test_cli_ask_json_and_text(engine_env: dict[str, str], tmp_path: Path) -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        code = run(["ask", "copy", "my", "local", "csv", "file", "into", "a", "storage", "folder", "--json", "--top-k", "4"])
    assert code == 0
    data = json.loads(out.getvalue())
    assert set(data) == {"answer", "sources"} and len(data["sources"]) == 4
    assert set(data["sources"][0]) == {"title", "ref", "kind", "method", "path", "operation_id", "score",
                                       "source", "api"}
    op = next(s for s in data["sources"] if s["kind"] == "operation")
    assert op["method"] and op["path"].startswith("/bai/api/v1") and op["operation_id"]
    assert any(s["operation_id"] == "uploadFile" for s in data["sources"])
    out = io.StringIO()
    with redirect_stdout(out):
        assert run(["ask", "what's the weather in Seoul tomorrow?"]) == 0
    assert "couldn't find anything" in out.getvalue()
    err = io.StringIO()
    assert run(["ask"], stderr=err) == 1 and "ask a question" in err.getvalue()
    err = io.StringIO()
    assert run(["ask", "--learn", str(tmp_path / "nope")], stderr=err) == 1
    assert err.getvalue().startswith("error: cannot learn") and err.getvalue().count("\n") == 1


@pytest.fixture()
def ip(engine_env: dict[str, str]) -> InteractiveShell:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jupyter_bai")
    return shell


def test_a_question_mark_is_not_ipython_help(ip: InteractiveShell) -> None:
    with capture_output() as cap:
        ip.run_cell("%bai ask how do I give my session half a GPU?")
    text = cap.stdout + "".join(str(o.data.get("text/markdown", "")) for o in cap.outputs)
    assert "not found" not in text and "POST /bai/api/v1/sessions" in text
    with capture_output() as cap:
        ip.run_cell("x = 1\n%bai ask --json   what's free on this node?\n")
    assert "not found" not in cap.stdout and "error" not in cap.stderr


def test_magic_ask_and_chat_with_follow_up_and_insert_button(ip: InteractiveShell) -> None:
    with capture_output() as cap:
        ip.run_line_magic("bai", "ask what's the way to upload a file into a folder?")
    text = cap.stdout + "".join(str(o.data.get("text/markdown", "")) + str(o.data.get("text/plain", "")) for o in cap.outputs)
    assert "PUT /bai/api/v1/vfolders/{name}/files" in text and "error" not in cap.stderr
    value = ip.run_line_magic("bai", "ask --json how do I list my sessions")
    assert value["sources"] and "answer" in value
    magics = ip.magics_manager.registry["BaiMagics"]
    magics.chat_history.clear()
    with capture_output() as cap:
        ip.run_cell_magic("bai", "chat", "How do I create a new storage folder?\n")
    assert len(magics.chat_history) == 1 and "createVfolder" in magics.chat_history[0]["answer"]
    with capture_output() as cap:
        ip.run_cell_magic("bai", "chat", "and how do I delete it?")
    assert len(magics.chat_history) == 2 and "deleteVfolder" in magics.chat_history[1]["answer"]
    # Sources and the example come as one answer bundle the JupyterLab renderer draws (with
    # the insert button); other front ends get its HTML and text.
    bundle = next(o.data for o in cap.outputs if ANSWER_MIME in o.data)
    answer = bundle[ANSWER_MIME]
    assert answer == magics.last_answer[ANSWER_MIME]
    assert json.loads(json.dumps(answer)) == answer  # plain JSON, as display data must be
    assert answer["example"].startswith("%bai vfolder delete")
    assert answer["question"] == "and how do I delete it?"
    assert any(s.get("operation_id") == "deleteVfolder" for s in answer["sources"])
    assert answer["example"] in bundle["text/plain"] and "<pre>%bai vfolder delete" in bundle["text/html"]
    with capture_output() as cap:
        ip.run_cell_magic("bai", "chat", "   ")
    assert "write the question in the cell" in cap.stderr


def test_engine_with_llm_configured_streams_and_falls_back(tmp_path: Path) -> None:
    with FakeOpenAI() as fake:
        eng = start_engine(tmp_path / "llm", extra_argv=[f"--BaiApp.assistant_llm_url={fake.url}",
                                                         "--BaiApp.assistant_llm_model=fake-model",
                                                         "--BaiApp.assistant_llm_timeout=1"])
        try:
            from jupyter_bai.client import Client

            with Client(eng.url, eng.token) as c:
                pieces: list[str] = []
                res = c.ask("how do I give my session half a GPU?", on_delta=pieces.append)
                assert res["mode"] == "llm" and res["answer"].startswith("FAKE-LLM") and len(pieces) > 3
                assert fake.requests[-1]["body"]["model"] == "fake-model"
                fake.mode = "down"
                res = c.ask("how do I give my session half a GPU?")
                assert res["mode"] == "fallback" and "HTTP 503" in res["note"]
                assert "POST /bai/api/v1/sessions" in res["answer"]
        finally:
            eng.stop()
