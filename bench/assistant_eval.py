"""Evaluate the API assistant's retrieval and declining, per corpus, per retrieval mode, per split.

Corpora: this workbench's own docs (``bench/assistant_questions.yaml``) and three vendored
third-party OpenAPI descriptions (``bench/corpora/*/``: Jupyter Server, Docker Engine, Vault),
each learned into a fresh index next to the workbench's own docs, as a user would. For each it
prints recall@1, recall@5, MRR@10 (distinct operations, the workbench's own docs competing),
abstention (share of off-topic questions declined) and answered (share of answerable questions
not declined), and query latency p50/p95, for the tune and held-out halves separately. Then it
times learning the 1,049-operation Vault file and a generated 700-operation one (vectors
included). Numbers are printed, never asserted; the machine is shared, so timings are noisy.

    python bench/assistant_eval.py [--corpus NAME ...] [--modes bm25,dense,hybrid] [--show-misses]
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jupyter_bai.assistant import embed  # noqa: E402
from jupyter_bai.assistant.answer import extractive  # noqa: E402
from jupyter_bai.assistant.index import Hit  # noqa: E402
from jupyter_bai.assistant.library import Library  # noqa: E402

CORPORA = ROOT / "bench" / "corpora"
OWN = "own docs"


@dataclass
class Case:
    q: str
    split: str
    gold: set[str] = field(default_factory=set)  # empty: off-topic


def load_cases(path: Path) -> tuple[str, Path | None, list[Case]]:
    """(name, OpenAPI file or None for the own docs, cases)."""
    data = yaml.safe_load(path.read_text())
    if "corpus" not in data:  # the own-docs set: operationIds, no split
        cases = [Case(i["q"], "all", set(i["ops"])) for i in data["answerable"]]
        cases += [Case(q, "all") for q in data["unanswerable"]]
        return OWN, None, cases
    cases = [Case(i["q"], i["split"], set(i["gold"])) for i in data["answerable"]]
    cases += [Case(i["q"], i["split"]) for i in data["offtopic"]]
    return path.parent.name, path.parent / data["file"], cases


def op_key(hit: Hit, source: str | None) -> str:
    """What a hit counts as: ``METHOD path`` of the learned file's operation, or something else."""
    d = hit.doc
    if source is None:  # own docs: as before, client/CLI docs count as the operation they call
        if not d.source.startswith("builtin:"):
            return f"other:{d.id}"  # a learned API's operation above the workbench's is a miss
        return d.operation_id or ""
    if d.source == source and d.method and d.path:
        return f"{d.method} {d.path}"
    return f"other:{d.id}"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def score(cases: list[Case], ask: Callable[[str], tuple[list[Hit], bool]], source: str | None) -> dict[str, Any]:
    r1 = r5 = mrr = 0.0
    answered = declined = 0
    lat: list[float] = []
    misses: list[str] = []
    answerable = [c for c in cases if c.gold]
    offtopic = [c for c in cases if not c.gold]
    for c in cases:
        t0 = time.perf_counter()
        hits, abstained = ask(c.q)
        lat.append((time.perf_counter() - t0) * 1000)
        if not c.gold:
            declined += abstained
            continue
        answered += not abstained
        ranking = [k for k in dict.fromkeys(op_key(h, source) for h in hits) if k][:10]
        rank = next((i for i, o in enumerate(ranking) if o in c.gold), None)
        r1 += rank == 0
        r5 += rank is not None and rank < 5
        mrr += 1 / (rank + 1) if rank is not None else 0
        if rank is None or rank > 0:
            misses.append(f"{c.q!r} -> rank {rank}; top: {ranking[:2]}")
    n = max(1, len(answerable))
    return {"R@1": r1 / n, "R@5": r5 / n, "MRR@10": mrr / n, "n": len(answerable), "u": len(offtopic),
            "declined_n": declined, "answered_n": answered,
            "abstain": declined / len(offtopic) if offtopic else float("nan"),
            "answered": answered / n, "p50": statistics.median(lat), "p95": pct(lat, 95), "misses": misses}


def retrieval(lib: Library, mode: str, source: str | None, scoped: bool) -> Callable[[str], tuple[list[Hit], bool]]:
    index = lib.index()
    by_op = {d.operation_id: d for d in index.docs if d.kind == "operation" and d.operation_id}
    kwargs: dict[str, Any] = {"sources": [source]} if scoped and source else {}

    def ask(q: str) -> tuple[list[Hit], bool]:
        hits = index.search(q, 10, mode=mode, **kwargs)
        return hits, extractive(q, hits, by_op)["abstained"]
    return ask


def wait_dense(lib: Library) -> float:
    """Block until background vectors are ready (when the library computes them in the background)."""
    t0 = time.perf_counter()
    wait = getattr(lib, "wait_vectors", None)
    if wait is not None:
        wait()
    return time.perf_counter() - t0


def make_openapi(n_ops: int, seed: int = 7) -> dict[str, Any]:
    """A generated OpenAPI 3 document with ``n_ops`` CRUD operations over many resources."""
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
                            "components": {"schemas": {}}}
    count = i = 0
    while count < n_ops:
        noun = nouns[i % len(nouns)] + ("" if i < len(nouns) else f"_{i // len(nouns)}")
        i += 1
        cap = "".join(w.title() for w in noun.split("_"))
        spec["components"]["schemas"][cap] = {
            "type": "object", "required": ["name"],
            "properties": {"id": {"type": "string", "description": f"The {noun} id."},
                           "name": {"type": "string", "description": f"Display name of the {noun}."},
                           rnd.choice(["priority", "region", "owner", "status"]): {"type": "string"}}}
        for method, verb, summary in verbs:
            if count >= n_ops:
                break
            coll = f"/{noun}s"
            path = coll if verb in ("list", "create") else f"{coll}/{{{noun}_id}}" + (
                f"/{verb}" if verb in ("archive", "history") else "")
            op: dict[str, Any] = {"operationId": f"{verb}{cap}", "tags": [noun],
                                  "summary": summary.format(p=noun + "s", s=noun),
                                  "responses": {"200": {"description": "OK"}}}
            if "{" in path:
                op["parameters"] = [{"name": f"{noun}_id", "in": "path", "required": True,
                                     "schema": {"type": "string"}}]
            if method in ("post", "patch") and verb != "archive":
                op["requestBody"] = {"content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{cap}"}}}}
            spec["paths"].setdefault(path, {})[method] = op
            count += 1
    return spec


def time_learn(tmp: Path, path: Path, dense: bool) -> str:
    lib = Library(tmp, dense=dense)
    lib.index()
    wait_dense(lib)  # the workbench's own vectors first: only the new file is timed
    t0 = time.perf_counter()
    summary = lib.learn(str(path))
    bm25_s = time.perf_counter() - t0
    vec_s = wait_dense(lib) if dense else 0.0
    index = lib.index()
    lat = []
    for q in ("archive a shipment", "list my folders", "rotate an encryption key", "who am I"):
        t0 = time.perf_counter()
        index.search(q, 10, mode="hybrid" if dense else "bm25")
        lat.append((time.perf_counter() - t0) * 1000)
    return (f"{summary['docs']:5d} docs: answers with BM25 after {bm25_s:5.2f} s, vectors ready "
            f"{bm25_s + vec_s:5.2f} s after the start; then a query {statistics.median(lat):.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", action="append", help="only these corpora (folder names, or 'own')")
    ap.add_argument("--modes", default="bm25,dense,hybrid")
    ap.add_argument("--split", default="tune,held-out")
    ap.add_argument("--show-misses", action="store_true")
    ap.add_argument("--own-with", default="jupyter_server",
                    help="learn this corpus next to the own docs for the own-docs questions ('' for none)")
    ap.add_argument("--no-timing", action="store_true", help="skip the learn-time measurements")
    args = ap.parse_args()
    files = [ROOT / "bench" / "assistant_questions.yaml", *sorted(CORPORA.glob("*/questions.yaml"))]
    modes = [m for m in args.modes.split(",") if m == "bm25" or embed.available()]
    dense = any(m != "bm25" for m in modes)
    print(f"modes: {', '.join(modes)}" + ("" if embed.available() else " (no embedding model installed)"))
    head = (f"{'corpus':16} {'mode':14} {'split':9} {'n':>3} {'R@1':>5} {'R@5':>5} {'MRR@10':>6} "
            f"{'abstain':>7} {'answered':>8} {'p50 ms':>6} {'p95 ms':>6}")
    rows: list[str] = [head, "-" * len(head)]
    misses: list[str] = []
    pooled: dict[tuple[str, str], list[int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(f, None) for f in files]
        if args.own_with:  # the own-docs questions again, with a third-party file learned too
            runs.insert(1, (files[0], args.own_with))
        for qfile, extra in runs:
            name, spec, cases = load_cases(qfile)
            if args.corpus and not ({name, "own" if spec is None else name} & set(args.corpus)):
                continue
            lib = Library(Path(tmp) / f"{name}{extra or ''}".replace(" ", "_"), dense=dense)
            source = None
            if spec is not None:
                source = lib.learn(str(spec))["source"]
            elif extra:
                lib.learn(str(CORPORA / extra / yaml.safe_load((CORPORA / extra / "questions.yaml").read_text())["file"]))
                name = f"own+{extra}"[:16]
            lib.index()
            if dense:
                wait_dense(lib)
            variants = [(m, False) for m in modes]
            if source is not None and "sources" in inspect.signature(lib.index().search).parameters:
                variants += [(m, True) for m in modes if m == modes[-1]]
            for mode, scoped in variants:
                ask = retrieval(lib, mode, source, scoped)
                label = mode + (" --in" if scoped else "")
                splits = ["all"] if spec is None else args.split.split(",")
                for split in splits:
                    r = score([c for c in cases if c.split == split], ask, source)
                    rows.append(f"{name:16} {label:14} {split:9} {r['n']:3d} {r['R@1']:5.2f} {r['R@5']:5.2f} "
                                f"{r['MRR@10']:6.2f} {r['abstain']:7.2f} {r['answered']:8.2f} {r['p50']:6.1f} {r['p95']:6.1f}")
                    misses += [f"  [{name} {label} {split}] {m}" for m in r["misses"]]
                    if spec is not None:  # pooled declining over the third-party sets
                        tot = pooled.setdefault((label, split), [0, 0, 0, 0])
                        for j, v in enumerate((r["declined_n"], r["u"], r["answered_n"], r["n"])):
                            tot[j] += v
                print(rows[-1], flush=True)
        print()
        print("\n".join(rows))
        print("\ndeclining, third-party sets pooled (off-topic declined / answerable answered):")
        for (label, split), (dec, u, ans, n) in pooled.items():
            print(f"  {label:14} {split:9} declined {dec}/{u} = {dec / max(1, u):.2f}, answered {ans}/{n} = {ans / max(1, n):.2f}")
        if args.show_misses:
            print("\nmisses (gold not first):")
            print("\n".join(misses))
        if not args.no_timing:
            print(f"\nlearning a file ({os.cpu_count()} CPUs shared with other processes; load average "
                  f"{os.getloadavg()[0]:.1f} now):")
            big = Path(tmp) / "generated_700.json"
            big.write_text(json.dumps(make_openapi(700)))
            for label, path in (("generated 700-op", big), ("Vault 1,049-op", CORPORA / "vault" / "openapi.json")):
                print(f"  {label:17} {time_learn(Path(tmp) / ('t-' + path.stem), path, dense)}", flush=True)


if __name__ == "__main__":
    main()
