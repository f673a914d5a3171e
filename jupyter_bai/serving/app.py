"""The ASGI app (FastAPI) that serves a registry's endpoints, with readiness and OpenAPI.

Arguments are checked by pydantic models made from the functions' type hints: a bad request is
a 400 naming the field and the reason; an exception inside an endpoint is a 500 carrying its
message; a return value that is not JSON-serialisable is a 500 naming its type. Until start-up
has succeeded every route but ``/live`` and ``/health`` answers 503.
"""
# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations at run
# time, and they name models made inside the function that builds each route.

import inspect
import json
import typing
from dataclasses import dataclass
from typing import Any, Callable

from fastapi import Body, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, create_model
from pydantic_core import PydanticSerializationError, to_jsonable_python

from .decorators import Endpoint, Registry

__all__ = ["State", "build_app", "add_endpoints"]


@dataclass
class State:
    ready: bool = False
    detail: str = "starting"


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def _params(func: Callable[..., Any]) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(func).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # an unresolvable hint: take it as Any rather than refuse to serve
        return {}


def _arguments_model(ep: Endpoint) -> type[BaseModel]:
    hints = _hints(ep.func)
    fields: dict[str, Any] = {}
    for p in _params(ep.func):
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints.get(p.name, Any), default)
    name = "".join(part.capitalize() for part in ep.name.split("_")) + "Request"
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


def _single_model(ep: Endpoint) -> tuple[str, type[BaseModel]] | None:
    params = _params(ep.func)
    if len(params) != 1:
        return None
    hint = _hints(ep.func).get(params[0].name)
    if inspect.isclass(hint) and issubclass(hint, BaseModel):
        return params[0].name, hint
    return None


def _serialise(ep: Endpoint, value: Any) -> Response:
    try:
        body = json.dumps(to_jsonable_python(value), allow_nan=False)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        return _error(500, "not-serialisable",
                      f"endpoint '{ep.name}' returned a value of type "
                      f"'{type(value).__name__}', which is not JSON-serialisable: {exc}")
    return Response(body, media_type="application/json")


def _route(ep: Endpoint) -> tuple[Callable[..., Any], Any]:
    """The handler FastAPI calls (its signature drives validation and the document)."""
    is_async = inspect.iscoroutinefunction(ep.func)

    async def call(kwargs: dict[str, Any]) -> Response:
        try:
            value = await ep.func(**kwargs) if is_async else await run_in_threadpool(ep.func, **kwargs)
        except Exception as exc:
            return _error(500, "endpoint-error",
                          f"endpoint '{ep.name}' raised {type(exc).__name__}: {exc}")
        return _serialise(ep, value)

    single = _single_model(ep)
    model = _arguments_model(ep)
    if ep.method == "GET":
        async def get_handler(args: model = Depends()) -> Response:  # type: ignore[valid-type]
            return await call({k: getattr(args, k) for k in model.model_fields})
        return get_handler, model
    if single is not None:
        pname, pmodel = single

        async def model_handler(body: pmodel = Body(...)) -> Response:  # type: ignore[valid-type]
            return await call({pname: body})
        return model_handler, pmodel

    async def post_handler(body: model = Body(...)) -> Response:  # type: ignore[valid-type]
        return await call({k: getattr(body, k) for k in model.model_fields})
    return post_handler, model


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query")]
    return ".".join(parts) or "body"


def build_app(title: str, state: State) -> FastAPI:
    """An app with ``/live``, ``/health`` and ``/openapi.json``; endpoints are added once
    the notebook's cells have registered them (:func:`add_endpoints`)."""
    app = FastAPI(title=title, version="1", redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            msg = str(err.get("msg", "invalid"))
            if err.get("type") == "json_invalid":
                msg = "the body is not valid JSON"
            parts.append(f"{_where(tuple(err.get('loc', ())))}: {msg}")
        return _error(400, "invalid-request", "; ".join(parts) or "invalid request")

    @app.middleware("http")
    async def _not_ready(request: Request, call_next: Callable[..., Any]) -> Response:
        if not state.ready and request.url.path not in ("/live", "/health"):
            return _error(503, "not-ready", f"the service is {state.detail}")
        return await call_next(request)

    @app.get("/live", include_in_schema=False)
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/health", include_in_schema=False)
    async def health() -> Response:
        if state.ready:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "detail": state.detail}, status_code=503)

    return app


def add_endpoints(app: FastAPI, registry: Registry) -> None:
    for ep in registry.endpoints.values():
        handler, model = _route(ep)
        doc = inspect.getdoc(ep.func) or None
        app.add_api_route(
            ep.path, handler, methods=[ep.method], name=ep.name, operation_id=ep.name,
            summary=doc.splitlines()[0] if doc else ep.name, description=doc,
            response_class=JSONResponse,
            responses={400: {"description": "a parameter is missing or has the wrong type"},
                       500: {"description": "the endpoint raised, or returned something that "
                                            "is not JSON"}},
        )
    app.openapi_schema = None  # rebuilt with the endpoints on the next request
