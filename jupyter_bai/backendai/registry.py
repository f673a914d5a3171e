"""The engine list (``bai-engines.json``, ``c.BaiApp.engines``, ``BACKEND_*``), read by the client
to pick a backend and by the engine to find the keypair of the cluster a pipeline job runs on.
:mod:`jupyter_bai.client.engines` has the verbs (add, use, rm) and the module doc.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_bai.spec.errors import BaiError, NotFound

from .._files import write_private_json
from .rest import BackendAIConfig

ENV_STORE = "JUPYTER_BAI_ENGINES_FILE"
STORE_NAME = "bai-engines.json"
LOCAL = "local"
ENV_NAME = "env"
BACKEND_ENV = ("BACKEND_ENDPOINT", "BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY")


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

    def config(self) -> BackendAIConfig:
        """How to reach this (Backend.AI) engine."""
        return BackendAIConfig(endpoint=self.url, access_key=self.access_key,
                               secret_key=self.secret_key, vfolder_host=self.vfolder_host,
                               group=self.group, name=self.name)


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
    write_private_json(store_path(), data, prefix=".bai-engines-")


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


def get_engine(name: str) -> Engine:
    engines = all_engines()
    if name not in engines:
        raise NotFound(f"no engine named {name!r} (known: {', '.join(sorted(engines))}); "
                       "add one with `engine add NAME --backendai URL --access-key AK`")
    return engines[name]
