"""``--llm SERVICE``: the API assistant's answers written by a model service of this workbench.

The model is the FAKE OpenAI-compatible server (an external LLM is outside this machine), deployed
as a real private model service (``custom`` variant, a real bubblewrap route behind the engine's
token-guarded endpoint proxy), as tests/test_services.py deploys it.
"""
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

from engine_proc import Api, EngineProcess
from jupyter_bai.cli import run
from jupyter_bai.spec.errors import InvalidState, NotFound
from test_services import FAKE_OPENAI_DEFINITION, _folder, _remove, _wait_service

HERE = Path(__file__).parent
QUESTION = "how do I list my storage folders?"


def ask(api: Api, **body: Any) -> httpx.Response:
    return api.post("/assistant/ask", json={"question": QUESTION, **body})


def test_ask_with_a_model_service_writes_the_answer_and_keeps_sources_and_examples(
        engine: EngineProcess, client: Any, engine_env: dict[str, str]) -> None:
    api = Api(engine)
    # no such service: a 404 with one line, before anything is retrieved
    r = ask(api, llm="no-such-llm")
    assert r.status_code == 404 and r.json()["error"] == "not-found"
    assert "no model service named 'no-such-llm'" in r.json()["message"]
    err = io.StringIO()
    assert run(["ask", "--llm", "no-such-llm", "list", "my", "folders"], stderr=err) == 1
    assert err.getvalue().count("\n") == 1 and "no model service named 'no-such-llm'" in err.getvalue()
    with pytest.raises(NotFound, match="no model service named"):
        client.ask(QUESTION, llm="no-such-llm")

    _folder(api, "asstllm", {"model-definition.yaml": FAKE_OPENAI_DEFINITION,
                             "fake_openai_server.py": (HERE / "fake_openai_server.py").read_text()})
    r = api.post("/services", json={"name": "asst-llm", "image": "local", "model_folder": "asstllm",
                                    "replicas": 0, "resources": {"cpu": "0.5", "mem": "256m"}})
    assert r.status_code == 201, r.text
    try:
        # a service with no healthy route: a 409 that says so
        r = ask(api, llm="asst-llm", stream=True)
        assert r.status_code == 409 and r.json()["error"] == "invalid-state"
        assert "model service 'asst-llm' is not healthy (status STOPPED)" in r.json()["message"]
        with pytest.raises(InvalidState, match="not healthy"):
            client.ask(QUESTION, llm="asst-llm")

        assert api.post("/services/asst-llm/scale", json={"replicas": 1}).status_code == 200
        info = _wait_service(api, "asst-llm", 1)
        assert info["public"] is False  # the engine issues itself a token to reach it

        # REST, streamed: sources first, the model's words as deltas, then the runnable examples
        r = ask(api, llm="asst-llm", stream=True)
        assert r.status_code == 200, r.text
        msgs = [json.loads(line) for line in r.text.splitlines() if line.strip()]
        assert msgs[0]["type"] == "sources" and msgs[-1]["type"] == "done"
        done = msgs[-1]
        top = done["sources"][0]["title"]
        assert done["mode"] == "llm" and done["note"] is None
        # the fake model quotes the first retrieved passage: the retrieval went into the prompt
        assert done["answer"].startswith(f"fake answer from port {info['routes'][0]['port']}: use {top} [1].")
        assert "listVfolders" in json.dumps(done["sources"]) and done["examples"]["http"]
        assert done["examples"]["http"] in done["answer"]  # the runnable example stays in the answer
        deltas = [m["text"] for m in msgs if m["type"] == "delta"]
        assert len(deltas) > 5 and "".join(deltas) == done["answer"]

        # the client, the CLI and the magic take --llm too
        pieces: list[str] = []
        res = client.ask(QUESTION, llm="asst-llm", on_delta=pieces.append)
        assert res["mode"] == "llm" and res["answer"].startswith("fake answer from port") and len(pieces) > 5
        out = io.StringIO()
        with redirect_stdout(out):
            assert run(["ask", "--llm", "asst-llm", "list", "my", "storage", "folders"]) == 0
        assert "fake answer from port" in out.getvalue() and "[1]" in out.getvalue()
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "jupyter_bai")
        with capture_output() as cap:
            shell.run_line_magic("bai", f"ask --llm asst-llm {QUESTION}")
        shown = cap.stdout + "".join(str(o.data.get("text/markdown", "")) for o in cap.outputs)
        assert "fake answer from port" in shown and "error" not in cap.stderr
        magics = shell.magics_manager.registry["BaiMagics"]
        magics.chat_history.clear()
        with capture_output() as cap:
            shell.run_cell_magic("bai", "chat --llm asst-llm", QUESTION)
        assert magics.chat_history[-1]["answer"].startswith("fake answer from port"), cap.stderr

        # an off-topic question is still declined, without asking the model
        off = api.post("/assistant/ask", json={"question": "what's the best pasta recipe?",
                                               "llm": "asst-llm"}).json()
        assert off["abstained"] and off["mode"] == "extractive"
    finally:
        _remove(api, "asst-llm")
    # a service that goes away: asking with it is refused again
    assert ask(api, llm="asst-llm").status_code == 404
