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

import os
from typing import Any

from jupyter_bai.backendai.registry import (  # noqa: F401 - the engine list's names, re-exported
    BACKEND_ENV,
    ENV_NAME,
    ENV_STORE,
    LOCAL,
    STORE_NAME,
    Engine,
    _from_entry,
    _read_store,
    _write_store,
    all_engines,
    configured_engines,
    get_engine,
    store_path,
)
from jupyter_bai.spec.errors import Conflict, InvalidRequest

ENV_ENGINE = "JUPYTER_BAI_ENGINE"

#: ``%bai engine use NAME`` in a kernel: this process only.
_process_choice: str | None = None


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
    from jupyter_bai.client.backendai import BackendAIDriver

    if not engine.secret_key:
        raise InvalidRequest(f"engine {engine.name!r} has no secret key "
                             "(set it again with `engine add --replace`, or its secret_key_env)")
    return BackendAIDriver(engine.config(), **({} if timeout is None else {"timeout": timeout}))


def make_client(name: str | None = None) -> Any:
    """A sync :class:`~jupyter_bai.client.Client` of the active (or named) engine."""
    from jupyter_bai.client.client import Client

    engine = get_engine(active_name(name))
    if engine.kind == LOCAL:
        return Client()
    return Client(driver=make_driver(engine))
