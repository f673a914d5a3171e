"""The built-in corpus: this platform's own ``openapi.yaml``, ``Client`` and CLI/magic verbs.

Operations are cross-linked to the client method and the ``%bai`` verb that call them by reading
the code itself (``_ops`` request builders, the methods that use them, the verbs that call those
methods), so examples follow the code instead of a hand-kept table. The client and CLI modules
are only read here (signatures, docstrings, click help), as documentation.
"""
from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any, Callable

from .corpus import Doc, markdown_docs, notebook_docs, openapi_docs, parse_spec_text, sha256_bytes

API_PREFIX = "/bai/api/v1"
PKG_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = PKG_DIR.parent
BASE_URL = "$JUPYTER_BAI_URL"


def _src(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _ops_routes() -> dict[str, tuple[str, str]]:
    """``_ops`` builder name → (METHOD, /bai/api/v1/path/{param})."""
    from ..client.operations import _ops

    routes: dict[str, tuple[str, str]] = {}
    for name, fn in vars(_ops).items():
        m = re.search(r'Call\(\s*"(\w+)",\s*f?"([^"]*)"', _src(getattr(_ops, name, fn)))
        if m:
            path = re.sub(r"\{_q\((\w+)\)\}", r"{\1}", m.group(2))
            routes[name] = (m.group(1).upper(), API_PREFIX + path)
    return routes


def _route_key(method: str, path: str) -> tuple[str, str]:
    return method, re.sub(r"\{[^}]+\}", "{}", path)


def client_methods() -> dict[str, tuple[Callable[..., Any], tuple[str, str] | None]]:
    """Public ``Client`` methods and the route each one calls (if any)."""
    from ..client.aio import AsyncClient
    from ..client.client import Client
    from ..client.http import HttpDriver

    def src(name: str, fn: Any) -> str:
        """The one implementation (AsyncClient's) plus the HTTP driver methods it calls."""
        text = _src(getattr(AsyncClient, name, fn))
        return text + "".join(_src(getattr(HttpDriver, d)) for d in
                              re.findall(r"self\.driver\.(\w+)\(", text) if hasattr(HttpDriver, d))

    routes = _ops_routes()
    out: dict[str, tuple[Callable[..., Any], tuple[str, str] | None]] = {}
    for name, fn in inspect.getmembers(Client, inspect.isfunction):
        if name.startswith("_"):
            continue
        used = re.findall(r"_ops\.(\w+)\(", src(name, fn))
        route = next((routes[u] for u in used if u in routes), None)
        out[name] = (fn, route)
    for name, (fn, route) in list(out.items()):  # run_code → iter_run's route, one level deep
        if route is None:
            called = re.findall(r"self\.(\w+)\(", src(name, fn))
            route = next((out[c][1] for c in called if c in out and out[c][1]), None)
            if route is None and "_RunHandler" in src(name, fn):
                route = out.get("iter_run", (None, None))[1]
            out[name] = (fn, route)
    return out


def client_call(name: str, fn: Callable[..., Any]) -> str:
    """``Client().name(ARG, ...)`` with the required parameters as placeholders."""
    args = []
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            placeholder = f'"{p.name.upper()}"'
            args.append(placeholder if p.kind != p.KEYWORD_ONLY else f"{p.name}={placeholder}")
    return f"from jupyter_bai import Client\nClient().{name}({', '.join(args)})"


def cli_verbs() -> list[tuple[str, Any]]:
    """``(path, command)`` for every leaf of the ``jupyter bai`` click tree."""
    import click

    from .. import cli as cli_mod

    out: list[tuple[str, Any]] = []

    def walk(cmd: Any, path: str) -> None:
        if isinstance(cmd, click.Group):
            for sub_name, sub in sorted(cmd.commands.items()):
                walk(sub, f"{path} {sub_name}".strip())
        else:
            out.append((path, cmd))

    walk(cli_mod.cli, "")
    return out


def _usage(path: str, cmd: Any) -> str:
    """``%bai session create IMAGE`` from the verb's required arguments."""
    import click

    args = [p.human_readable_name.upper() for p in cmd.params
            if isinstance(p, click.Argument) and p.required]
    return " ".join(["%bai", path, *args])


def _help_text(path: str, cmd: Any) -> str:
    import click

    lines = [f"%bai {path} / jupyter bai {path}", (cmd.help or "").strip()]
    for p in cmd.params:
        if isinstance(p, click.Option) and p.help:
            lines.append(f"{' / '.join(p.opts)}: {p.help}")
        elif isinstance(p, click.Argument):
            lines.append(f"argument {p.human_readable_name.upper()}")
    return "\n".join(x for x in lines if x)


def _verb_methods(path: str, cmd: Any) -> list[str]:
    """Client methods a verb calls, the one named like the verb first (``ask`` → ``ask``)."""
    used = list(dict.fromkeys(re.findall(r"client\.(\w+)\(", _src(cmd.callback))))
    last = path.split()[-1]
    return sorted(used, key=lambda m: 0 if m == last or m.endswith("_" + last) else 1)


def _doc_example(description: str, verb: str | None) -> str | None:
    """The first ``%bai <verb> ...`` example written in an operation's description."""
    for ex in re.findall(r"`(%bai [^`]+)`", description):
        if verb is None or ex.startswith(f"%bai {verb}"):
            return ex
    return None


def source_files() -> dict[str, Path]:
    """Built-in source id → file (README and notebooks only where this is a source checkout)."""
    files = {"builtin:openapi": PKG_DIR / "api" / "openapi.yaml",
             "builtin:client": PKG_DIR / "client" / "aio.py",
             "builtin:cli": PKG_DIR / "cli.py"}
    readme = REPO_DIR / "README.md"
    if readme.is_file():
        files["builtin:readme"] = readme
    nb_dir = REPO_DIR / "notebooks"
    if nb_dir.is_dir():
        for nb in sorted(nb_dir.glob("*.ipynb")):
            files[f"builtin:notebook:{nb.name}"] = nb
    return files


def source_hashes() -> dict[str, str]:
    """A hash per built-in source; the client/CLI sources also depend on openapi.yaml's links."""
    files = source_files()
    raw = {sid: sha256_bytes(p.read_bytes()) for sid, p in files.items()}
    linked = sha256_bytes("".join(raw[k] for k in ("builtin:openapi", "builtin:client", "builtin:cli")).encode())
    return {sid: (linked if sid in ("builtin:openapi", "builtin:client", "builtin:cli") else h)
            for sid, h in raw.items()}


def build_source(source: str) -> list[Doc]:
    """Documents of one built-in source."""
    files = source_files()
    if source == "builtin:openapi":
        return _operations(files[source])
    if source == "builtin:client":
        return _client_docs()
    if source == "builtin:cli":
        return _cli_docs()
    path = files[source]
    rel = str(path.relative_to(REPO_DIR))
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        return notebook_docs(text, rel, source)
    return markdown_docs(text, rel, source)


def _links() -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """route → client method name; client method name → CLI verb path."""
    verb_of: dict[str, str] = {}
    for path, cmd in cli_verbs():
        for used in _verb_methods(path, cmd):
            verb_of.setdefault(used, path)
    by_route: dict[tuple[str, str], str] = {}
    # a method a verb uses wins, then the shorter name (the plain call over its variants)
    ranked = sorted(client_methods().items(), key=lambda kv: (kv[0] not in verb_of, len(kv[0]), kv[0]))
    for name, (_fn, route) in ranked:
        if route is not None:
            by_route.setdefault(_route_key(*route), name)
    return by_route, verb_of


def _operations(openapi_path: Path) -> list[Doc]:
    spec = parse_spec_text(openapi_path.read_text(encoding="utf-8"), "openapi.yaml")
    docs = openapi_docs(spec, "openapi.yaml", "builtin:openapi", base_url=BASE_URL)
    methods = client_methods()
    by_route, verb_of = _links()
    verbs = dict(cli_verbs())
    descriptions = {
        (m.upper(), p): str(op.get("description") or "")
        for p, item in spec["paths"].items() for m, op in item.items() if isinstance(op, dict)
    }
    for d in docs:
        assert d.method and d.path
        name = by_route.get(_route_key(d.method, d.path))
        if name is None:
            continue
        d.examples["client"] = client_call(name, methods[name][0])
        d.text += f"\nPython client: Client().{name}"
        verb = verb_of.get(name)
        if verb is not None:
            d.examples["magic"] = _doc_example(descriptions.get((d.method, d.path), ""), verb) or _usage(verb, verbs[verb])
            d.text += f"\nmagic/CLI: %bai {verb}, jupyter bai {verb}"
    return docs


def _client_docs() -> list[Doc]:
    docs = []
    by_route, verb_of = _links()
    ops = {(_route_key(d.method or "", d.path or "")): d.operation_id
           for d in openapi_docs(parse_spec_text((PKG_DIR / "api" / "openapi.yaml").read_text(), "openapi.yaml"),
                                 "openapi.yaml", "builtin:openapi")}
    for name, (fn, route) in sorted(client_methods().items()):
        try:
            sig = f"Client.{name}{inspect.signature(fn, eval_str=True)}"
        except Exception:  # an annotation only importable for type checkers
            sig = f"Client.{name}{inspect.signature(fn)}"
        doc = inspect.getdoc(fn) or ""
        method = path = op_id = None
        if route is not None:
            method, path = route
            op_id = ops.get(_route_key(*route))
        examples = {"client": client_call(name, fn)}
        if name in verb_of:
            examples["magic"] = _usage(verb_of[name], dict(cli_verbs())[verb_of[name]])
        docs.append(Doc(id=f"client:{name}", kind="client", title=f"Client.{name}",
                        ref=f"jupyter_bai.Client.{name}", text=f"{sig}\n{doc}", source="builtin:client",
                        method=method, path=path, operation_id=op_id, examples=examples))
    return docs


def _cli_docs() -> list[Doc]:
    methods = client_methods()
    docs = []
    ops = {(_route_key(d.method or "", d.path or "")): d.operation_id
           for d in openapi_docs(parse_spec_text((PKG_DIR / "api" / "openapi.yaml").read_text(), "openapi.yaml"),
                                 "openapi.yaml", "builtin:openapi")}
    for path, cmd in cli_verbs():
        used = _verb_methods(path, cmd)
        route = next((methods[u][1] for u in used if u in methods and methods[u][1]), None)
        method = rpath = op_id = None
        if route is not None:
            method, rpath = route
            op_id = ops.get(_route_key(*route))
        docs.append(Doc(id=f"cli:{path}", kind="cli", title=f"%bai {path}", ref=f"jupyter bai {path}",
                        text=_help_text(path, cmd), source="builtin:cli", method=method, path=rpath,
                        operation_id=op_id, examples={"magic": _usage(path, cmd)}))
    return docs
