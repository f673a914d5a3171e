"""Named engines: which backend ``jupyter bai``, ``%bai`` and scripts talk to.

``local`` is always there (this machine's jupyter-bai engine, found by
:func:`~jupyter_bai.client.connection.find_engine`). Others come from three places:

* ``jupyter bai engine add NAME --backendai URL --access-key AK``, kept in
  ``bai-engines.json`` in the Jupyter config dir (mode 0600: it holds secret keys);
* ``c.BaiApp.engines = {"lab": {"backendai": URL, "access_key": AK, "secret_key_env": VAR}}`` in
  ``jupyter_server_config.py``/``.json`` (a ``secret_key`` there works too; an env var is safer);
* Backend.AI's own ``BACKEND_ENDPOINT``/``BACKEND_ACCESS_KEY``/``BACKEND_SECRET_KEY``, offered as
  the engine ``env``.

The active engine is ``--engine NAME``, else ``$JUPYTER_BAI_ENGINE``, else this process's choice
(``%bai engine use`` in a kernel), else the stored default (``jupyter bai engine use``), else
``local``. Secret keys are never printed: :meth:`Engine.public` is what listings show.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_bai.spec.errors import BaiError, Conflict, InvalidRequest, NotFound

ENV_ENGINE = "JUPYTER_BAI_ENGINE"
ENV_STORE = "JUPYTER_BAI_ENGINES_FILE"
STORE_NAME = "bai-engines.json"
LOCAL = "local"
ENV_NAME = "env"
BACKEND_ENV = ("BACKEND_ENDPOINT", "BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY")

#: ``%bai engine use NAME`` in a kernel: this process only.
_process_choice: str | None = None


@dataclass(frozen=True)
class Engine:
    """One named backend; ``secret_key`` stays inside this object."""

    name: str
    kind: str  # "local" or "backendai"
    url: str = ""
    access_key: str = ""
    secret_key: str = ""
    source: str = "store"  # store | config | env | builtin
    vfolder_host: str = ""
    group: str = ""

    def __repr__(self) -> str:
        return f"Engine(name={self.name!r}, kind={self.kind!r}, url={self.url!r})"

    def public(self, active: bool = False) -> dict[str, Any]:
        """What listings and ``resources`` show (never the secret key)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "url": self.url or None,
                               "source": self.source, "active": active}
        if self.kind == "backendai":
            out["access_key"] = self.access_key
            out["secret_key"] = "set" if self.secret_key else "missing"
        return out


def store_path() -> Path:
    """``$JUPYTER_BAI_ENGINES_FILE``, else ``bai-engines.json`` in the Jupyter config dir."""
    override = os.environ.get(ENV_STORE, "").strip()
    if override:
        return Path(override)
    from jupyter_core.paths import jupyter_config_dir

    return Path(jupyter_config_dir()) / STORE_NAME


def _read_store() -> dict[str, Any]:
    path = store_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"engines": {}}
    except (OSError, ValueError) as err:
        raise BaiError(f"cannot read the engine list {path}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("engines", {}), dict):
        raise BaiError(f"the engine list {path} is not a JSON object of engines")
    data.setdefault("engines", {})
    return data


def _write_store(data: dict[str, Any]) -> None:
    """Atomic, owner-only (0600) write: the file holds secret keys."""
    path = store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".bai-engines-", suffix=".json", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _from_entry(name: str, entry: Any, source: str) -> Engine:
    if not isinstance(entry, dict):
        raise BaiError(f"engine {name!r} ({source}) must be a dict with 'backendai' and 'access_key'")
    url = str(entry.get("backendai") or entry.get("url") or "")
    secret = str(entry.get("secret_key") or "")
    if not secret and entry.get("secret_key_env"):
        secret = os.environ.get(str(entry["secret_key_env"]), "")
    return Engine(name=name, kind="backendai", url=url.rstrip("/"),
                  access_key=str(entry.get("access_key") or ""), secret_key=secret, source=source,
                  vfolder_host=str(entry.get("vfolder_host") or ""), group=str(entry.get("group") or ""))


def configured_engines() -> dict[str, Any]:
    """``c.BaiApp.engines`` from the Jupyter config files (``jupyter_server_config``)."""
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config.loader import ConfigFileNotFound, JSONFileConfigLoader, PyFileConfigLoader

    merged: dict[str, Any] = {}
    for directory in reversed(jupyter_config_path()):  # later (user) dirs win
        for loader_cls, fname in ((JSONFileConfigLoader, "jupyter_server_config.json"),
                                  (PyFileConfigLoader, "jupyter_server_config.py")):
            if not (Path(directory) / fname).is_file():
                continue
            try:
                cfg = loader_cls(fname, path=directory).load_config()
            except ConfigFileNotFound:
                continue
            except Exception as err:  # a broken user config must not break every command
                raise BaiError(f"cannot read {Path(directory) / fname}: {err}") from None
            engines = cfg.get("BaiApp", {}).get("engines")
            if engines:
                merged.update(dict(engines))
    return merged


def all_engines() -> dict[str, Engine]:
    """Every engine by name: local, env, configured, then stored (a stored name wins)."""
    out: dict[str, Engine] = {LOCAL: Engine(name=LOCAL, kind="local", source="builtin")}
    endpoint, ak, sk = (os.environ.get(v, "") for v in BACKEND_ENV)
    if endpoint:
        out[ENV_NAME] = Engine(name=ENV_NAME, kind="backendai", url=endpoint.rstrip("/"),
                               access_key=ak, secret_key=sk, source="env")
    for name, entry in configured_engines().items():
        out[str(name)] = _from_entry(str(name), entry, "config")
    for name, entry in _read_store()["engines"].items():
        out[str(name)] = _from_entry(str(name), entry, "store")
    return out


def active_name(explicit: str | None = None) -> str:
    """The engine in use (see the module doc for the order)."""
    for choice in (explicit, os.environ.get(ENV_ENGINE, "").strip() or None, _process_choice,
                   _read_store().get("active")):
        if choice:
            return str(choice)
    return LOCAL


def default_name() -> str:
    """The stored default (``jupyter bai engine use``, the sidebar's switch), else ``local``."""
    return str(_read_store().get("active") or LOCAL)


def get_engine(name: str) -> Engine:
    engines = all_engines()
    if name not in engines:
        raise NotFound(f"no engine named {name!r} (known: {', '.join(sorted(engines))}); "
                       "add one with `engine add NAME --backendai URL --access-key AK`")
    return engines[name]


def add_engine(name: str, url: str, access_key: str, secret_key: str, *,
               vfolder_host: str = "", group: str = "", replace: bool = False) -> Engine:
    """Store a Backend.AI engine (0600); refuses to shadow ``local`` or an existing name."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise InvalidRequest(f"invalid engine name {name!r}: use letters, digits, '-' and '_'")
    if name in (LOCAL, ENV_NAME):
        raise InvalidRequest(f"{name!r} is a built-in engine name; choose another")
    if not url.startswith(("http://", "https://")):
        raise InvalidRequest(f"invalid Backend.AI endpoint {url!r}: expected http(s)://HOST[:PORT]")
    if not access_key or not secret_key:
        raise InvalidRequest("a Backend.AI engine needs an access key and a secret key")
    data = _read_store()
    if name in data["engines"] and not replace:
        raise Conflict(f"engine {name!r} already exists (`engine rm {name}` first)")
    data["engines"][name] = {"backendai": url.rstrip("/"), "access_key": access_key,
                             "secret_key": secret_key, "vfolder_host": vfolder_host, "group": group}
    _write_store(data)
    return _from_entry(name, data["engines"][name], "store")


def remove_engine(name: str) -> None:
    data = _read_store()
    if name not in data["engines"]:
        engine = get_engine(name)  # NotFound for unknown names
        raise InvalidRequest(f"engine {name!r} comes from {engine.source} "
                             f"({'built in' if engine.source == 'builtin' else 'edit it there'}); "
                             "only engines added with `engine add` can be removed")
    del data["engines"][name]
    if data.get("active") == name:
        data.pop("active")
    _write_store(data)
    global _process_choice
    if _process_choice == name:
        _process_choice = None


def use_engine(name: str, *, persist: bool) -> Engine:
    """Make ``name`` active: stored as the default (``persist``) or for this process only."""
    engine = get_engine(name)
    global _process_choice
    if persist:
        data = _read_store()
        if name == LOCAL:
            data.pop("active", None)
        else:
            data["active"] = name
        _write_store(data)
        _process_choice = None
    else:
        _process_choice = name
    return engine


def make_driver(engine: Engine, timeout: float | None = None) -> Any:
    """The :class:`~jupyter_bai.client.driver.Driver` for a Backend.AI engine (``timeout``:
    seconds per request, the driver's default if None)."""
    from jupyter_bai.client.backendai import BackendAIConfig, BackendAIDriver

    if not engine.secret_key:
        raise InvalidRequest(f"engine {engine.name!r} has no secret key "
                             "(set it again with `engine add --replace`, or its secret_key_env)")
    return BackendAIDriver(BackendAIConfig(endpoint=engine.url, access_key=engine.access_key,
                                           secret_key=engine.secret_key,
                                           vfolder_host=engine.vfolder_host, group=engine.group),
                           **({} if timeout is None else {"timeout": timeout}))


def make_client(name: str | None = None) -> Any:
    """A sync :class:`~jupyter_bai.client.Client` of the active (or named) engine."""
    from jupyter_bai.client.client import Client

    engine = get_engine(active_name(name))
    if engine.kind == LOCAL:
        return Client()
    return Client(driver=make_driver(engine))
