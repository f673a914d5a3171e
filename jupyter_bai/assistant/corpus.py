"""Documents to index: one per API operation, function, CLI verb or Markdown section.

Everything here is plain data (``Doc``) so an index pickles safely. Sources a user adds with
``--learn`` are read by :func:`load_path`; a malformed file is a one-line
:class:`~jupyter_bai.spec.errors.InvalidRequest` naming the file and what is wrong.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..spec.errors import InvalidRequest
from .text import expand_identifiers, glossary_terms, split_identifier

#: The line before an operation's response field names in its text.
RESPONSE_HEAD = "\nresponse:\n"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
MARKDOWN_EXT = (".md", ".markdown")
OPENAPI_EXT = (".json", ".yaml", ".yml")
#: Files bigger than this in a learned folder are skipped (generated data, not docs).
MAX_FILE_BYTES = 50 << 20


#: What each HTTP method does, in the words people use for it (REST semantics, not any one API).
METHOD_WORDS = {
    "GET": "get read show see view look fetch retrieve",
    "HEAD": "check exists",
    "POST": "create add new make start run send submit do",
    "PUT": "put save replace set write upload update",
    "PATCH": "update change modify edit rename",
    "DELETE": "delete remove destroy discard close drop",
}


def is_action(method: str, path: str) -> bool:
    """``POST /things/{id}/stop``: a verb on one item, not the creation of something new."""
    parts = [p for p in path.split("/") if p]
    return method.upper() == "POST" and len(parts) >= 2 and "{" in parts[-2] and "{" not in parts[-1]


def operation_words(method: str, path: str) -> str:
    """Everyday words for an operation's shape: its method, and one item vs a whole collection."""
    words = "" if is_action(method, path) else METHOD_WORDS.get(method.upper(), "")
    if method.upper() == "GET":
        words += " one details info" if path.rstrip("/").endswith("}") else " list all which"
    return words


@dataclass
class Doc:
    """One retrievable unit. ``examples`` maps ``magic``/``client``/``http`` to runnable text."""

    id: str
    kind: str  # operation | client | cli | markdown | python | notebook
    title: str
    ref: str
    text: str
    source: str
    method: str | None = None
    path: str | None = None
    operation_id: str | None = None
    examples: dict[str, str] = field(default_factory=dict)
    #: An operation's distinctive path and operationId words (see :func:`mark_keywords`).
    keywords: str = ""

    def search_text(self) -> str:
        """What BM25 sees: the title twice (it is the strongest signal), then the body."""
        head = f"{self.title}\n{self.title}"
        if self.operation_id:
            head += f"\n{self.operation_id}"
        # the everyday words of the operation's own text, not of the fields it happens to return
        topic = f"{self.title}\n{self.text.split(RESPONSE_HEAD, 1)[0]}"
        shape = operation_words(self.method, self.path) if self.kind == "operation" and self.method and self.path else ""
        return expand_identifiers(f"{head}\n{self.text}") + "\n" + glossary_terms(topic) + "\n" + shape

    def embed_text(self) -> str:
        """What the embedding model sees: an operation's first sentence (its summary, run on into
        the description when the summary has no full stop), or its path words when it has neither.
        Method words, path words and parameter names in this text pulled the vectors of unrelated
        operations together (chosen on the tune halves of ``bench/corpora``); the distinctive path
        words go in a second text instead (:meth:`embed_texts`); BM25 sees all of them.
        A section: its title and opening."""
        if self.kind == "operation" and self.method and self.path:
            skip = ("operationId:", "parameter ", "  ", "tags:", "request body:", "response:")
            body = " ".join(ln for ln in self.text.splitlines()[1:] if not ln.startswith(skip))
            first = re.split(r"(?<=[.!?])\s", body, maxsplit=1)[0][:200].strip()
            return first or " ".join(w for w in re.split(r"[/{}_\-.]+", self.path) if w)
        return f"{self.title}. {self.text[:400]}"

    def embed_texts(self) -> list[str]:
        """The texts whose vectors are averaged into the document's vector (so its cosine is the
        weighted mean of theirs, see :func:`~.embed.mean_vectors`): :meth:`embed_text`, and for an operation a second, shorter view, its method's
        verb, its distinctive path and operationId words and its summary ("create auth approle
        login. Issue a token"), which says what the operation acts on where the first sentence
        alone does not. Chosen on the tune halves of ``bench/corpora``."""
        if not (self.kind == "operation" and self.method and self.path):
            return [self.embed_text()]
        summary = self.title.split(" — ", 1)[1] if " — " in self.title else ""
        verb = METHOD_WORDS.get(self.method.upper(), "").split(" ", 1)[0]
        shape = " ".join(w for w in (verb, self.keywords) if w) + (f". {summary}" if summary else "")
        return [self.embed_text(), shape]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- OpenAPI


def _yaml_load(text: str, name: str) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidRequest(f"{name}: not valid YAML{where}: {problem}") from None


def parse_spec_text(text: str, name: str) -> Any:
    """JSON or YAML text → object; errors name the file and the line."""
    if name.endswith(".json") or text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{name}: not valid JSON at line {exc.lineno}: {exc.msg}") from None
    return _yaml_load(text, name)


def is_openapi(data: Any) -> bool:
    return isinstance(data, dict) and ("openapi" in data or "swagger" in data)


class _Refs:
    """Resolves local ``$ref`` pointers (cycles and missing targets end as empty schemas)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def get(self, node: Any, depth: int = 0) -> Any:
        while isinstance(node, dict) and "$ref" in node and depth < 20:
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#/"):
                return {}
            target: Any = self.spec
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, dict) else None
            node, depth = target if target is not None else {}, depth + 1
        return node if depth < 20 else {}


def _one_line(text: Any) -> str:
    """Descriptions span lines in many files; one line each keeps "parameter ..." lines whole."""
    return " ".join(str(text or "").split())


def _first_sentence(text: Any, limit: int = 160) -> str:
    return re.split(r"(?<=[.!?])\s", _one_line(text), maxsplit=1)[0][:limit]


def _schema_fields(refs: _Refs, schema: Any, prefix: str = "", depth: int = 0, limit: int = 60) -> list[str]:
    """``name (type): description`` for each property, one level of nesting; ``allOf``/``oneOf``/
    ``anyOf`` parts are merged (generated files compose most bodies that way)."""
    schema = refs.get(schema)
    if not isinstance(schema, dict) or depth > 1:
        return []
    out: list[str] = []
    if schema.get("description") and not prefix:
        out.append(_one_line(schema["description"]))
    props = schema.get("properties")
    if isinstance(props, dict):
        for key, sub in props.items():
            sub_r = refs.get(sub)
            typ = sub_r.get("type", "") if isinstance(sub_r, dict) else ""
            desc = _first_sentence(sub_r.get("description", "")) if isinstance(sub_r, dict) else ""
            out.append(f"{prefix}{key} ({typ}): {desc}".rstrip(": "))
            out.extend(_schema_fields(refs, sub_r, f"{prefix}{key}.", depth + 1))
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            out.extend(_schema_fields(refs, schema[key], prefix, depth + 1))
    for key in ("allOf", "oneOf", "anyOf"):
        for part in schema.get(key) or []:
            out.extend(_schema_fields(refs, part, prefix, depth))
    return list(dict.fromkeys(out))[:limit]


def _response_schema(refs: _Refs, op: dict[str, Any]) -> Any:
    """The schema of the first success response (OpenAPI 3 ``content`` or Swagger 2 ``schema``)."""
    responses = op.get("responses")
    if not isinstance(responses, dict):
        return None
    for code in sorted(str(c) for c in responses):
        if not code.startswith("2"):
            continue
        resp = refs.get(responses.get(code) if code in responses else responses.get(int(code)))
        if not isinstance(resp, dict):
            continue
        if resp.get("schema") is not None:
            return resp["schema"]
        for media in (resp.get("content") or {}).values():
            if isinstance(media, dict) and media.get("schema") is not None:
                return media["schema"]
    return None


def _example_value(refs: _Refs, schema: Any, depth: int = 0) -> Any:
    schema = refs.get(schema)
    if not isinstance(schema, dict) or depth > 3:
        return "VALUE"
    for key in ("example", "default"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    if schema.get("enum"):
        return schema["enum"][0]
    typ = schema.get("type")
    typ = typ[0] if isinstance(typ, list) and typ else typ
    if typ == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        required = schema.get("required") or list(props)[:3]
        return {k: _example_value(refs, props[k], depth + 1) for k in required if k in props}
    if typ == "array":
        return [_example_value(refs, schema.get("items", {}), depth + 1)]
    return {"integer": 1, "number": 1, "boolean": True}.get(str(typ), "VALUE")


def _http_example(method: str, path: str, base: str, params: list[dict[str, Any]], body: Any) -> str:
    url = path
    for p in params:
        if p.get("in") == "path":
            url = url.replace("{" + str(p.get("name")) + "}", str(p.get("name", "")).upper())
    query = [f"{p['name']}={str(p['name']).upper()}" for p in params
             if p.get("in") == "query" and p.get("required")]
    if query:
        url += "?" + "&".join(query)
    lines = [f'curl -X {method.upper()} "{base}{url}"', '-H "Authorization: token $JUPYTER_BAI_TOKEN"']
    if body is not None:
        lines.append('-H "Content-Type: application/json"')
        lines.append("-d " + shlex.quote(json.dumps(body)))
    return " \\\n  ".join(lines)


def openapi_docs(spec: Any, name: str, source: str, base_url: str | None = None) -> list[Doc]:
    """One :class:`Doc` per operation; raises InvalidRequest naming ``name`` on a bad document."""
    if not isinstance(spec, dict):
        raise InvalidRequest(f"{name}: an OpenAPI document must be a mapping at the top level")
    if not is_openapi(spec):
        raise InvalidRequest(f"{name}: not an OpenAPI document (no 'openapi' or 'swagger' key)")
    paths = spec.get("paths")
    if not isinstance(paths, dict):
        raise InvalidRequest(f"{name}: 'paths' is missing or is not a mapping")
    refs = _Refs(spec)
    if base_url is None:
        servers = spec.get("servers") or []
        base_url = servers[0].get("url", "") if servers and isinstance(servers[0], dict) else ""
        base_url = str(base_url).rstrip("/") or "$API_URL"
    docs: list[Doc] = []
    seen_ids: set[str] = set()
    for path, item in paths.items():
        if not isinstance(item, dict):
            raise InvalidRequest(f"{name}: path '{path}' must map methods to operations")
        shared = item.get("parameters") or []
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            if not isinstance(op, dict):
                raise InvalidRequest(f"{name}: operation {method.upper()} {path} is not a mapping")
            params = [refs.get(p) for p in [*shared, *(op.get("parameters") or [])]]
            params = [p for p in params if isinstance(p, dict) and p.get("name")]
            op_id = str(op.get("operationId") or f"{method}_{path}")
            doc_id = f"op:{source}:{method.upper()} {path}"
            if doc_id in seen_ids:
                continue
            seen_ids.add(doc_id)
            # a path item's own summary/description covers its operations that have none
            summary = _one_line(op.get("summary") or item.get("summary"))
            description = str(op.get("description") or item.get("description") or "").strip()
            lines = [f"{method.upper()} {path}", f"operationId: {op_id}"]
            if op.get("tags"):
                lines.append("tags: " + ", ".join(map(str, op["tags"])))
            if summary:
                lines.append(summary)
            if description and _one_line(description) != summary:
                lines.extend(ln for ln in (_one_line(par) for par in description.split("\n\n")) if ln)
            for p in params:
                desc = _one_line(p.get("description"))
                lines.append(f"parameter {p['name']} (in {p.get('in', '?')}): {desc}".rstrip(": "))
            body_schema = next((p.get("schema") for p in params if p.get("in") == "body"), None)  # Swagger 2
            rb = refs.get(op.get("requestBody"))
            if isinstance(rb, dict) and isinstance(rb.get("content"), dict):
                for media in rb["content"].values():
                    if isinstance(media, dict) and media.get("schema") is not None:
                        body_schema = media["schema"]
                        break
            if body_schema is not None:
                lines.append("request body:")
                lines.extend("  " + f for f in _schema_fields(refs, body_schema))
            answer = _response_schema(refs, op)
            if answer is not None:  # what comes back says what an operation is for ("its IP address")
                # field names only: their descriptions would outweigh the operation's own words
                fields = [m.group(1) for f in _schema_fields(refs, answer, limit=30)
                          if (m := re.match(r"([\w.\-]+) \(", f))]
                if fields:
                    lines.append(RESPONSE_HEAD.strip())
                    lines.append("    " + ", ".join(fields))
            body = _example_value(refs, body_schema) if body_schema is not None else None
            title = f"{method.upper()} {path}" + (f" — {summary}" if summary else "")
            docs.append(Doc(
                id=doc_id, kind="operation", title=title, ref=f"{name}#{op_id}",
                text="\n".join(lines), source=source, method=method.upper(), path=str(path),
                operation_id=op_id,
                examples={"http": _http_example(method, str(path), base_url, params, body)},
            ))
    return mark_keywords(drop_boilerplate(docs))


#: A path or operationId word found in more than this share of one file's operations names no
#: particular operation (Vault's "mount", "path"); files with fewer than
#: :data:`KEYWORD_MIN_OPS` operations keep every word. Chosen on the tune halves of ``bench/corpora``.
KEYWORD_SHARE = 0.15
KEYWORD_MIN_OPS = 20


def _name_words(doc: Doc) -> list[str]:
    """Words of an operation's path and of its operationId (not of a made-up ``get_/path`` id)."""
    words = [w for seg in re.split(r"[/{}]+", doc.path or "") for w in split_identifier(seg) if w]
    if doc.operation_id and "/" not in doc.operation_id:
        words += split_identifier(doc.operation_id)
    return list(dict.fromkeys(words))


def mark_keywords(docs: list[Doc]) -> list[Doc]:
    """Set each operation's :attr:`Doc.keywords`: its path and operationId words, less those
    that repeat across many operations of the file (they do not tell operations apart)."""
    names = {d.id: _name_words(d) for d in docs}
    counts: dict[str, int] = {}
    for words in names.values():
        for w in words:
            counts[w] = counts.get(w, 0) + 1
    limit = KEYWORD_SHARE * len(docs) if len(docs) >= KEYWORD_MIN_OPS else float("inf")
    for d in docs:
        d.keywords = " ".join(w for w in names[d.id] if counts[w] <= limit)
    return docs


#: A line found in more than this share of one file's operations (and in at least
#: :data:`BOILERPLATE_MIN` of them) is boilerplate: shared preconditions, common errors, auth notes.
BOILERPLATE_SHARE = 0.05
BOILERPLATE_MIN = 8


def drop_boilerplate(docs: list[Doc]) -> list[Doc]:
    """Remove lines that repeat across many operations of one file: they say nothing about
    which operation is meant, but they lengthen every document (diluting BM25) and every vector."""
    counts: dict[str, int] = {}
    for d in docs:
        for line in set(d.text.splitlines()[2:]):  # the method/path and operationId lines stay
            if line.strip():
                counts[line] = counts.get(line, 0) + 1
    limit = max(BOILERPLATE_MIN, BOILERPLATE_SHARE * len(docs))
    common = {line for line, n in counts.items() if n > limit}
    if common:
        for d in docs:
            lines = d.text.splitlines()
            d.text = "\n".join(lines[:2] + [ln for ln in lines[2:] if ln not in common])
    return docs


def load_openapi_file(path: Path, source: str | None = None) -> list[Doc]:
    text = _read_text(path)
    data = parse_spec_text(text, str(path))
    return openapi_docs(data, str(path), source or str(path))


# --------------------------------------------------------------------------- Markdown / Python / notebooks


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def markdown_docs(text: str, name: str, source: str, kind: str = "markdown") -> list[Doc]:
    """Split at headings (outside code fences); each section keeps its heading path as title."""
    docs: list[Doc] = []
    trail: list[str] = []
    body: list[str] = []
    fence = False

    def flush() -> None:
        content = "\n".join(body).strip()
        if content or trail:
            title = " › ".join(trail) if trail else Path(name).name
            if content:
                docs.append(Doc(id=f"md:{source}:{len(docs)}", kind=kind, title=f"{Path(name).name} › {title}",
                                ref=f"{name}#{trail[-1] if trail else ''}", text=content, source=source))
        body.clear()

    for line in text.splitlines():
        if line.strip().startswith("```"):
            fence = not fence
        m = None if fence else _HEADING.match(line)
        if m:
            flush()
            level = len(m.group(1))
            trail[:] = trail[: level - 1] + [m.group(2)]
        else:
            body.append(line)
    flush()
    return docs


def python_docs(text: str, name: str, source: str) -> list[Doc]:
    """Module docstring and each public function/class/method: signature plus docstring."""
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise InvalidRequest(f"{name}: not valid Python at line {exc.lineno}: {exc.msg}") from None
    docs: list[Doc] = []
    mod_doc = ast.get_docstring(tree)
    if mod_doc:
        docs.append(Doc(id=f"py:{source}:{name}", kind="python", title=Path(name).name, ref=name,
                        text=mod_doc, source=source))

    def visit(nodes: Iterable[ast.stmt], prefix: str) -> None:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name.startswith("_"):
                    continue
                qual = f"{prefix}{node.name}"
                if isinstance(node, ast.ClassDef):
                    sig = f"class {qual}"
                else:
                    sig = f"def {qual}({ast.unparse(node.args)})"
                doc = ast.get_docstring(node) or ""
                docs.append(Doc(id=f"py:{source}:{name}:{qual}", kind="python", title=qual,
                                ref=f"{name}:{node.lineno}", text=f"{sig}\n{doc}".strip(), source=source,
                                examples={"client": f"{qual}(...)"}))
                if isinstance(node, ast.ClassDef):
                    visit(node.body, qual + ".")

    visit(tree.body, "")
    return docs


#: Cells that put questions to the assistant are questions, not documentation.
_ASKS = re.compile(r"^\s*%%bai chat|%bai ask|\.ask\(", re.M)


def notebook_docs(text: str, name: str, source: str) -> list[Doc]:
    """Markdown cells become sections; code cells are kept under the section they follow."""
    try:
        nb = json.loads(text)
        cells = nb["cells"]
    except (ValueError, KeyError, TypeError):
        raise InvalidRequest(f"{name}: not a Jupyter notebook (expected JSON with 'cells')") from None
    parts: list[str] = []
    for cell in cells:
        src = cell.get("source", "") if isinstance(cell, dict) else ""
        src = "".join(src) if isinstance(src, list) else str(src)
        if cell.get("cell_type") == "markdown":
            parts.append(src)
        elif cell.get("cell_type") == "code" and src.strip() and not _ASKS.search(src):
            parts.append("```\n" + src + "\n```")
    docs = markdown_docs("\n\n".join(parts), name, source, kind="notebook")
    for d in docs:  # code in a section is its example
        code = re.findall(r"```\n(.*?)\n```", d.text, flags=re.S)
        if code:
            d.examples = {"magic" if code[0].lstrip().startswith("%") else "client": code[0]}
    return docs


# --------------------------------------------------------------------------- learned paths


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from None


def file_docs(path: Path, source: str, in_folder: bool) -> list[Doc]:
    """Documents of one file; in a folder, JSON/YAML that is not OpenAPI is skipped."""
    name = str(path)
    suffix = path.suffix.lower()
    if suffix in MARKDOWN_EXT:
        return markdown_docs(_read_text(path), name, source)
    if suffix == ".py":
        return python_docs(_read_text(path), name, source)
    if suffix == ".ipynb":
        return notebook_docs(_read_text(path), name, source)
    if suffix in OPENAPI_EXT:
        text = _read_text(path)
        if in_folder and not re.search(r"""^\s*["']?(openapi|swagger)["']?\s*:""", text[:4096], re.M):
            return []
        return openapi_docs(parse_spec_text(text, name), name, source)
    if in_folder:
        return []
    raise InvalidRequest(
        f"{name}: cannot learn this kind of file (use Markdown, Python, notebooks, or an OpenAPI JSON/YAML file)"
    )


def folder_files(root: Path) -> list[Path]:
    """Files under ``root`` that can be learned, sorted, hidden folders and big files skipped."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in ("node_modules", "__pycache__"))
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            if p.suffix.lower() in (*MARKDOWN_EXT, ".py", ".ipynb", *OPENAPI_EXT):
                try:
                    if p.stat().st_size <= MAX_FILE_BYTES:
                        found.append(p)
                except OSError:
                    continue
    return found


def path_hash(path: Path) -> str:
    """Hash of a learned file, or of every learnable file of a folder (names and contents)."""
    h = hashlib.sha256()
    files = folder_files(path) if path.is_dir() else [path]
    for f in files:
        h.update(str(f).encode() + b"\0")
        try:
            h.update(f.read_bytes())
        except OSError as exc:
            raise InvalidRequest(f"cannot read {f}: {exc.strerror or exc}") from None
    return h.hexdigest()


def check_learnable(path: Path) -> Path:
    """Absolute, existing and readable, or a one-line error."""
    try:
        path = path.expanduser()
    except RuntimeError:  # ~name of a user that does not exist
        raise InvalidRequest(f"cannot learn {str(path)!r}: no such user's home folder") from None
    if not path.is_absolute():
        path = Path.cwd() / path
    try:
        is_dir = path.is_dir() if path.exists() else None
    except PermissionError:  # a parent folder we may not enter
        raise InvalidRequest(f"cannot learn {path}: permission denied") from None
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidRequest(f"cannot learn {str(path)[:200]!r}: {reason}") from None
    if is_dir is None:
        raise InvalidRequest(f"cannot learn {path}: no such file or directory")
    if not os.access(path, os.R_OK | (os.X_OK if is_dir else 0)):
        raise InvalidRequest(f"cannot learn {path}: permission denied")
    return path


def load_path(path: Path) -> list[Doc]:
    """Documents of a learned file or folder (the source id is the absolute path)."""
    path = check_learnable(path)
    source = str(path)
    if path.is_dir():
        docs: list[Doc] = []
        for f in folder_files(path):
            docs.extend(file_docs(f, source, in_folder=True))
        if not docs:
            raise InvalidRequest(f"{path}: found nothing to learn (no Markdown, Python, notebooks or OpenAPI files)")
        return docs
    docs = file_docs(path, source, in_folder=False)
    if not docs:
        raise InvalidRequest(f"{path}: found nothing to learn in this file")
    return docs
