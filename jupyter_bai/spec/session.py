"""Compute sessions: types, statuses and the request that creates one. Pure; no I/O.

Names and the status life cycle are Backend.AI's so its users feel at home; every front end
validates a request through :class:`SessionSpec`, so they all reject the same inputs the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from jupyter_bai.spec.binds import HostBind, check_labels
from jupyter_bai.spec.errors import InvalidRequest, as_value_error
from jupyter_bai.spec.mounts import MAX_MOUNTS, MountSpec, validate_mounts
from jupyter_bai.spec.resources import ResourceSlots

__all__ = [
    "SessionType",
    "SessionStatus",
    "SessionResult",
    "ALLOWED_TRANSITIONS",
    "can_transition",
    "SESSION_NAME_RE",
    "ENV_NAME_RE",
    "IMAGE_RE",
    "MAX_TEXT",
    "MAX_ENV",
    "ExecRequest",
    "RunRequest",
    "RESERVED_ENV_PREFIXES",
    "RESERVED_ENV_NAMES",
    "SessionSpec",
    "parse_env",
    "spec_error",
]

# Checked with ``fullmatch`` (a bare ``match`` lets ``$`` accept a trailing newline); written with
# ``^...$`` because JSON Schema (ECMA-262) reads them the same way and openapi.yaml shows them.
SESSION_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_SESSION_NAME = re.compile(SESSION_NAME_RE)
ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,254}$"
_ENV_NAME = re.compile(ENV_NAME_RE)
IMAGE_RE = r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$"
"""An image reference (``local``, ``python:3.11``, ``repo/name@sha256:...``): Docker's ASCII
characters, at most 255 of them."""
_IMAGE = re.compile(IMAGE_RE)
MAX_TEXT = 32768
"""Longest command and env value, in characters: the kernel refuses a single argument or env
string over 128 KiB, and 32768 characters stay under it in any UTF-8."""
MAX_ENV = 256
"""Most env entries in one request."""
NO_NUL = r"^[^\x00]*$"

RESERVED_ENV_PREFIXES: tuple[str, ...] = ("BACKENDAI_", "CUDA_MPS_")
"""Set by the engine (session identity, fractional-GPU limits): a user may not override them."""
RESERVED_ENV_NAMES: frozenset[str] = frozenset({"CUDA_VISIBLE_DEVICES", "GPU_COUNT"})
"""Set by the engine from the GPU allocation; overriding them would escape the allocation."""


class _StrEnum(str, Enum):
    """``str`` enum that prints its value and looks values up case-insensitively."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, format_spec: str) -> str:
        return format(str(self.value), format_spec)

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            for member in cls:
                if member.value.lower() == value.strip().lower():
                    return member
        return None


class SessionType(_StrEnum):
    """What a session is for; ``batch`` runs a command and ends, ``inference`` backs a route."""

    interactive = "interactive"
    batch = "batch"
    inference = "inference"


class SessionResult(_StrEnum):
    """How a batch session ended; ``undefined`` until it ends (and for interactive ones)."""

    undefined = "undefined"
    success = "success"
    failure = "failure"


class SessionStatus(_StrEnum):
    """Backend.AI's life cycle: PENDING → SCHEDULED → PREPARING → RUNNING → TERMINATING →
    TERMINATED, or ERROR / CANCELLED."""

    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    PREPARING = "PREPARING"
    RUNNING = "RUNNING"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"

    ALLOWED_TRANSITIONS: ClassVar[dict[SessionStatus, frozenset[SessionStatus]]]

    @property
    def is_terminal(self) -> bool:
        """True once the session is over for good; nothing can follow."""
        return self in _TERMINAL

    @property
    def is_live(self) -> bool:
        """True while the session holds or waits for resources."""
        return self not in _TERMINAL

    def can_transition_to(self, other: SessionStatus | str) -> bool:
        """Same as :func:`can_transition` ``(self, other)``."""
        return can_transition(self, other)


_TERMINAL = frozenset({SessionStatus.TERMINATED, SessionStatus.ERROR, SessionStatus.CANCELLED})

_S = SessionStatus
ALLOWED_TRANSITIONS: dict[SessionStatus, frozenset[SessionStatus]] = {
    # PENDING → CANCELLED: destroyed while waiting for resources.
    _S.PENDING: frozenset({_S.SCHEDULED, _S.ERROR, _S.CANCELLED}),
    # SCHEDULED → CANCELLED: destroyed after it got resources but before a runtime launched
    # anything (Backend.AI cancels such a session too); the allocation is released.
    _S.SCHEDULED: frozenset({_S.PREPARING, _S.ERROR, _S.CANCELLED}),
    # PREPARING → TERMINATING: destroyed while the runtime starts it (it is stopped, not lost).
    # PREPARING → PENDING: the engine restarted while starting it and the runtime had launched
    # nothing; the allocation is released and the session waits again in FIFO order (a
    # jupyter-bai addition: Backend.AI's manager does not restart mid-start this way).
    _S.PREPARING: frozenset({_S.RUNNING, _S.TERMINATING, _S.ERROR, _S.CANCELLED, _S.PENDING}),
    # RUNNING → TERMINATED directly: a batch command (or an interactive process) that ended
    # by itself.
    _S.RUNNING: frozenset({_S.TERMINATING, _S.TERMINATED, _S.ERROR}),
    _S.TERMINATING: frozenset({_S.TERMINATED, _S.ERROR}),
    _S.TERMINATED: frozenset(),
    _S.ERROR: frozenset(),
    _S.CANCELLED: frozenset(),
}
"""Which status may follow which. Every status change of the engine goes through one function
(``SessionManager._transition``) that checks this table and refuses (raises, logs, writes
nothing) any other change; a new status is never the same as the current one."""
SessionStatus.ALLOWED_TRANSITIONS = ALLOWED_TRANSITIONS
del _S


def can_transition(current: SessionStatus | str, new: SessionStatus | str) -> bool:
    """True when a session in ``current`` may move to ``new`` (never to itself)."""
    return SessionStatus(new) in ALLOWED_TRANSITIONS[SessionStatus(current)]


# ---------------------------------------------------------------------------- env


def _env_name_problem(name: Any) -> str | None:
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        return (
            f"invalid env name {name!r}: use 1-255 letters, digits and '_', "
            "not starting with a digit"
        )
    if name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIXES):
        return f"env '{name}' is reserved: the engine sets it"
    return None


def _env_value_problem(name: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return f"env '{name}' must be a string, got {value!r}"
    if "\x00" in value:
        return f"env '{name}' may not contain a NUL character"
    if len(value) > MAX_TEXT:
        return f"env '{name}' is longer than {MAX_TEXT} characters"
    return None


def check_env(env: Mapping[str, Any]) -> dict[str, str]:
    """An env mapping checked name by name; one :class:`InvalidRequest` for the first problem."""
    if len(env) > MAX_ENV:
        raise InvalidRequest(f"at most {MAX_ENV} env entries, got {len(env)}")
    for name, value in env.items():
        problem = _env_name_problem(name) or _env_value_problem(name, value)
        if problem:
            raise InvalidRequest(problem)
    return dict(env)


def _env_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "maxProperties": MAX_ENV,
        "propertyNames": {"pattern": ENV_NAME_RE},
        "additionalProperties": {"type": "string", "maxLength": MAX_TEXT, "pattern": NO_NUL},
        "description": "Extra environment; `BACKENDAI_*`, `CUDA_MPS_*`, `CUDA_VISIBLE_DEVICES` "
        "and `GPU_COUNT` are reserved.",
    }


def parse_env(items: Iterable[str] | str) -> dict[str, str]:
    """``{"K": "V"}`` from CLI ``-e K=V`` items (the value may contain ``=`` and be empty)."""
    if isinstance(items, str):
        items = [items]
    env: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise InvalidRequest(f"invalid env '{item}': expected NAME=VALUE like DEBUG=1")
        name, _, value = item.partition("=")
        problem = _env_name_problem(name) or _env_value_problem(name, value)
        if problem:
            raise InvalidRequest(problem)
        if name in env:
            raise InvalidRequest(f"env '{name}' is given twice")
        env[name] = value
    return env


# ---------------------------------------------------------------------------- spec


def _schema(**extra: Any) -> dict[str, Any]:
    """``json_schema_extra`` that documents a check the validator makes with a clearer message."""
    return extra


def _replace_schema(**schema: Any) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` that replaces pydantic's type keywords with ``schema``."""

    def update(generated: dict[str, Any]) -> None:
        for key in ("anyOf", "type", "items"):
            generated.pop(key, None)
        generated.update(schema)

    return update


def _no_nul(what: str) -> dict[str, Any]:
    return _schema(pattern=NO_NUL, maxLength=MAX_TEXT, description=what)


class SessionSpec(BaseModel):
    """A request to create a compute session, as the API receives it and the engine runs it.

    The JSON forms are exactly the documented ones (resources and env are objects, mounts a
    list); what people type (``-r cpu=1``, ``-e K=V``) is parsed by the front ends first.
    """

    model_config = ConfigDict(extra="forbid")

    image: str = Field(
        description="Image to run; `local` runs on this machine's runtime.",
        json_schema_extra=_schema(pattern=IMAGE_RE, minLength=1, maxLength=255,
                                  examples=["local"]),
    )
    name: str | None = Field(
        default=None,
        description="Unique among live sessions; generated when absent.",
        json_schema_extra=_schema(pattern=SESSION_NAME_RE, minLength=1, maxLength=64),
    )
    type: SessionType = SessionType.interactive
    command: str | None = Field(
        default=None,
        json_schema_extra=_no_nul("Shell command line; required for batch sessions."),
    )
    resources: ResourceSlots = Field(
        default_factory=ResourceSlots, json_schema_extra=_schema(default={})
    )
    mounts: list[MountSpec] = Field(default_factory=list, max_length=MAX_MOUNTS)
    env: dict[str, str] = Field(default_factory=dict, json_schema_extra=_env_schema())
    idle_timeout: float | None = Field(
        default=None, strict=True, description="Seconds idle before the engine ends the session.",
        json_schema_extra=_schema(exclusiveMinimum=0),
    )
    max_lifetime: float | None = Field(
        default=None, strict=True, description="Seconds before the engine ends the session.",
        json_schema_extra=_schema(exclusiveMinimum=0),
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="tags shown in session info (a kernel's id and notebook)"
    )
    binds: list[HostBind] = Field(
        default_factory=list, description="host directories under the Jupyter server's root_dir"
    )
    ports: list[Annotated[int, Field(strict=True, ge=1, le=65535)]] = Field(
        default_factory=list, max_length=16,
        description="container ports published on 127.0.0.1 (docker runtime; a kernel's ZMQ ports)",
    )

    @field_validator("type", mode="before")
    @classmethod
    def _exact_type(cls, v: Any) -> Any:
        """The API takes the documented lower-case names only (``SessionType`` itself is lenient)."""
        if isinstance(v, str) and v not in SessionType._value2member_map_:
            raise ValueError(
                f"unknown session type {_short(v)} (known: {', '.join(t.value for t in SessionType)})"
            )
        return v

    @field_validator("image")
    @classmethod
    def _check_image(cls, v: str) -> str:
        if not _IMAGE.fullmatch(v):
            raise ValueError(
                f"invalid image {_short(v)}: expected an image reference like python:3.11 "
                "(letters, digits and ._/:@+-, at most 255 characters)"
            )
        return v

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str | None) -> str | None:
        if v is not None and not _SESSION_NAME.fullmatch(v):
            raise ValueError(
                f"invalid session name {_short(v)}: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return v

    @field_validator("command")
    @classmethod
    def _check_command(cls, v: str | None) -> str | None:
        if v is not None and "\x00" in v:
            raise ValueError("the command may not contain a NUL character")
        if v is not None and len(v) > MAX_TEXT:
            raise ValueError(f"the command is longer than {MAX_TEXT} characters")
        return v if v is not None and v.strip() else None

    @field_validator("resources")
    @classmethod
    def _check_resources(cls, v: ResourceSlots) -> ResourceSlots:
        return as_value_error(ResourceSlots.check_request, v)

    @field_validator("mounts")
    @classmethod
    def _check_mounts(cls, v: list[MountSpec]) -> list[MountSpec]:
        return as_value_error(validate_mounts, v)

    @field_validator("env")
    @classmethod
    def _check_env(cls, v: dict[str, str]) -> dict[str, str]:
        return as_value_error(check_env, v)

    @field_validator("idle_timeout", "max_lifetime")
    @classmethod
    def _check_seconds(cls, v: float | None) -> float | None:
        if v is not None and (not math.isfinite(v) or v <= 0):
            raise ValueError(f"expected seconds > 0, got {v:g}")
        return v

    @field_validator("ports")
    @classmethod
    def _check_ports(cls, v: list[int]) -> list[int]:
        for port in v:
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is not between 1 and 65535")
        if len(set(v)) != len(v):
            raise ValueError("a port is listed twice")
        return v

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, v: dict[str, str]) -> dict[str, str]:
        return check_labels(v)

    @model_validator(mode="after")
    def _check_batch(self) -> SessionSpec:
        if self.type is SessionType.batch and not self.command:
            raise ValueError("a batch session needs a command (-c)")
        return self

    @model_validator(mode="after")
    def _check_bind_targets(self) -> SessionSpec:
        targets = [m.target for m in self.mounts] + [b.target for b in self.binds]
        for i, a in enumerate(targets):
            for b in targets[i + 1:]:
                if a == b or a.startswith(b + "/") or b.startswith(a + "/"):
                    raise ValueError(f"binds and mounts may not overlap: {a} and {b}")
        return self

    @classmethod
    def from_json(cls, data: Any) -> SessionSpec:
        """Validate API input; any problem becomes one :class:`InvalidRequest` line."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise spec_error(exc) from None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (slots as decimal strings, mounts as objects); ``from_json`` reads it back."""
        return self.model_dump(mode="json")


class ExecRequest(BaseModel):
    """``POST /sessions/{name}/exec``: a command (a shell line or an argv list) and extra env."""

    model_config = ConfigDict(extra="forbid")

    command: str | list[str] = Field(
        description="An argv list, or a string run through the shell.",
        json_schema_extra=_replace_schema(oneOf=[
            {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": NO_NUL},
            {"type": "array", "minItems": 1, "maxItems": 4096,
             "items": {"type": "string", "maxLength": MAX_TEXT, "pattern": NO_NUL}},
        ]),
    )
    env: dict[str, str] = Field(default_factory=dict, json_schema_extra=_env_schema())

    @field_validator("command")
    @classmethod
    def _check_command(cls, v: str | list[str]) -> str | list[str]:
        parts = [v] if isinstance(v, str) else v
        if not v or (isinstance(v, str) and not v.strip()):
            raise ValueError("'command' must be a non-empty string or list of strings")
        if len(parts) > 4096:
            raise ValueError("'command' has more than 4096 arguments")
        for part in parts:
            if "\x00" in part:
                raise ValueError("the command may not contain a NUL character")
            if len(part) > MAX_TEXT:
                raise ValueError(f"a command argument is longer than {MAX_TEXT} characters")
        return v

    @field_validator("env")
    @classmethod
    def _check_env(cls, v: dict[str, str]) -> dict[str, str]:
        return as_value_error(check_env, v)


class RunRequest(BaseModel):
    """``POST /sessions/{name}/run``: Python source for the session's interpreter."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Python source.", json_schema_extra=_schema(pattern=NO_NUL))

    @field_validator("code")
    @classmethod
    def _check_code(cls, v: str) -> str:
        if "\x00" in v:
            raise ValueError("the code may not contain a NUL character")
        return v


def _loc(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def spec_error(
    exc: ValidationError, what: str | None = None, model: type[BaseModel] | None = None
) -> InvalidRequest:
    """One readable line from a pydantic error, e.g. ``invalid session spec: resources: ...``."""
    if model is None and exc.title == "SessionSpec":
        model = SessionSpec
    if what is None:
        what = "session spec" if model is SessionSpec else "request"
    known: Mapping[str, Any] = model.model_fields if model is not None else {}
    parts: list[str] = []
    for err in exc.errors(include_url=False):
        loc, kind, msg = _loc(err["loc"]), err["type"], err["msg"]
        if kind == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif kind == "extra_forbidden":
            hint = f" (known: {', '.join(known)})" if known else ""
            parts.append(f"unknown field '{loc}'{hint}")
            continue
        elif kind == "missing":
            parts.append(f"missing field '{loc}'")
            continue
        else:
            msg = f"{msg[:1].lower()}{msg[1:]} (got {_short(err.get('input'))})"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return InvalidRequest(f"invalid {what}: " + "; ".join(parts))
