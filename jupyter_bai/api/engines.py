"""``/engines``: which engines are configured, the stored default, and a cluster's state.

The sidebar reads these to show and switch the default engine (``jupyter bai engine use``)
and, when a Backend.AI cluster is the default, its capacity and sessions. Adding or removing
an engine stays in the CLI and ``%bai engine``: a secret key never goes through the browser,
and no answer here carries a key (not even the access key).
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from pydantic import Field

from ..spec.errors import BaiError
from ..spec.models import ApiModel, Resources, SessionList
from .base import BaiHandler, api_method

T = TypeVar("T")
#: A cluster that does not answer within this many seconds is reported (the sidebar polls).
CLUSTER_TIMEOUT = 10.0


class EngineInfo(ApiModel):
    """One configured engine, without its keys."""

    name: str
    kind: Literal["local", "backendai"]
    url: str | None = Field(description="The Backend.AI manager's endpoint; null for `local`.")
    source: Literal["builtin", "store", "config", "env"] = Field(
        description="`store`: `engine add`; `config`: `c.BaiApp.engines`; `env`: `BACKEND_ENDPOINT`.")
    active: bool = Field(description="The stored default (`jupyter bai engine use`).")
    secret_key: Literal["set", "missing", "none"] = Field(
        description="Whether a cluster's secret key is available (`none` for `local`); never the key.")


class EngineList(ApiModel):
    engines: list[EngineInfo]
    active: str = Field(description="The stored default: what `jupyter bai` and new kernels talk to "
                        "unless `--engine`, `$JUPYTER_BAI_ENGINE` or `%bai engine use` says otherwise.")
    override: str | None = Field(default=None, description="`$JUPYTER_BAI_ENGINE` of the server, "
                                 "which wins over the stored default for processes it starts.")


class ActiveEngine(ApiModel):
    name: str = Field(description="An engine from `GET /engines`.", min_length=1, max_length=200)


def _info(engine: Any, active: str) -> dict[str, Any]:
    public = engine.public(active=engine.name == active)
    return {"name": engine.name, "kind": engine.kind, "url": engine.url or None,
            "source": engine.source, "active": engine.name == active,
            "secret_key": public.get("secret_key", "none")}


def _listing() -> dict[str, Any]:
    """Reads the engine list (a file) and the Jupyter config files: run in a thread."""
    from ..client import engines

    found = engines.all_engines()
    active = engines.default_name()
    if active not in found:  # a default whose config entry was removed: what the CLI would refuse
        active = engines.LOCAL
    return {"engines": [_info(e, active) for e in found.values()], "active": active,
            "override": os.environ.get(engines.ENV_ENGINE, "").strip() or None}


async def _in_thread(fn: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


class EnginesHandler(BaiHandler):
    @api_method("read", operation_id="listEngines", tag="engines", response=EngineList,
                summary="Configured engines and the stored default; never their keys.",
                returns="The engines.", errors=(400,))
    async def get(self) -> None:
        """Example: `jupyter bai engine ls --json` (which also shows the access key).
        Engines are added with `jupyter bai engine add` or `%bai engine add` (the secret key is
        read from a prompt, stdin or `$BACKEND_SECRET_KEY`), or in `c.BaiApp.engines`."""
        self.reply(await _in_thread(_listing))


class ActiveEngineHandler(BaiHandler):
    @api_method("write", operation_id="setActiveEngine", tag="engines", request=ActiveEngine,
                response=EngineList, summary="Make an engine the stored default.",
                returns="The engines, with the new default.", errors=(400, 404))
    async def put(self) -> None:
        """As `jupyter bai engine use NAME`: the CLI and kernels started afterwards talk to it.
        A kernel that ran `%bai engine use` keeps its own choice. Unknown name: 404."""
        from ..client import engines

        name = self.body_model(ActiveEngine, "engine choice").name

        def switch() -> dict[str, Any]:
            engines.use_engine(name, persist=True)
            return _listing()

        self.reply(await _in_thread(switch))


async def _on_engine(name: str, local: Callable[[], Awaitable[Any]],
                     remote: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``local()`` for the local engine, else ``remote(driver)`` on the cluster's driver.

    A cluster's own failure (unreachable, keys rejected, its error) is a 502 that keeps the
    driver's one-line message and code: the request was fine, the cluster behind it was not.
    """
    from ..client import engines

    engine = await _in_thread(lambda: engines.get_engine(name))
    if engine.kind == engines.LOCAL:
        return await local()
    driver = engines.make_driver(engine, timeout=CLUSTER_TIMEOUT)
    try:
        return await remote(driver)
    except BaiError as exc:
        raise BaiError(f"engine {name}: {exc}", status=502, code=exc.code) from None
    finally:
        await driver.aclose()


class EngineResourcesHandler(BaiHandler):
    @api_method("read", operation_id="getEngineResources", tag="engines", response=Resources,
                summary="An engine's capacity: the local node's, or a Backend.AI cluster's with its presets.",
                returns="The engine's resources.", errors=(400, 404, 502, 503))
    async def get(self, name: str) -> None:
        """Example: `jupyter bai --engine NAME resources --json`. A cluster that cannot be reached
        or refuses the keys answers 502 with its reason."""
        loop = asyncio.get_running_loop()
        self.reply(await _on_engine(
            name, lambda: loop.run_in_executor(None, self.engine.resources), lambda d: d.resources()))


class EngineSessionsHandler(BaiHandler):
    @api_method("read", operation_id="listEngineSessions", tag="engines", response=SessionList,
                summary="An engine's sessions (read-only here), live and finished.",
                returns="The sessions, newest first.", errors=(400, 404, 502, 503))
    async def get(self, name: str) -> None:
        """Example: `jupyter bai --engine NAME session ls --json`."""
        async def local() -> Any:
            return await _in_thread(lambda: {"sessions": self.engine.sessions.list(None)})

        async def remote(driver: Any) -> Any:
            return {"sessions": await driver.list_sessions(None)}

        self.reply(await _on_engine(name, local, remote))
