"""Compute sessions: types, statuses and the request that creates one. Pure; no I/O.

Names and the status life cycle are Backend.AI's so its users feel at home; every front end
validates a request through :class:`SessionSpec`, so they all reject the same inputs the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from jupyter_bai.spec.binds import HostBind, check_labels
from jupyter_bai.spec.errors import InvalidRequest
from jupyter_bai.spec.mounts import MountSpec, validate_mounts
from jupyter_bai.spec.resources import ResourceSlots

__all__ = [
    "SessionType",
    "SessionStatus",
    "SessionResult",
    "ALLOWED_TRANSITIONS",
    "can_transition",
    "SESSION_NAME_RE",
    "ENV_NAME_RE",
    "RESERVED_ENV_PREFIXES",
    "RESERVED_ENV_NAMES",
    "SessionSpec",
    "parse_env",
    "spec_error",
]

SESSION_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_SESSION_NAME = re.compile(SESSION_NAME_RE)
ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ENV_NAME = re.compile(ENV_NAME_RE)

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
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        return f"invalid env name '{name}': use letters, digits and '_', not starting with a digit"
    if name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIXES):
        return f"env '{name}' is reserved: the engine sets it"
    return None


def _env_value_problem(name: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return f"env '{name}' must be a string, got {value!r}"
    if "\x00" in value:
        return f"env '{name}' may not contain a NUL character"
    return None


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


class SessionSpec(BaseModel):
    """A request to create a compute session, as the API receives it and the engine runs it."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="container image, or a local runtime image name")
    name: str | None = Field(default=None, description="unique per user; generated when absent")
    type: SessionType = SessionType.interactive
    command: str | None = Field(default=None, description="shell command line; needed for batch")
    resources: ResourceSlots = Field(default_factory=ResourceSlots)
    mounts: list[MountSpec] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    idle_timeout: float | None = Field(default=None, description="seconds; > 0")
    max_lifetime: float | None = Field(default=None, description="seconds; > 0")
    labels: dict[str, str] = Field(
        default_factory=dict, description="tags shown in session info (a kernel's id and notebook)"
    )
    binds: list[HostBind] = Field(
        default_factory=list, description="host directories under the Jupyter server's root_dir"
    )
    ports: list[int] = Field(
        default_factory=list, max_length=16,
        description="container ports published on 127.0.0.1 (docker runtime; a kernel's ZMQ ports)",
    )

    @field_validator("image")
    @classmethod
    def _check_image(cls, v: str) -> str:
        if not v or any(c.isspace() for c in v) or "\x00" in v:
            raise ValueError(
                f"invalid image '{v}': expected an image name without spaces like python:3.11"
            )
        return v

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str | None) -> str | None:
        if v is not None and not _SESSION_NAME.match(v):
            raise ValueError(
                f"invalid session name '{v}': use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return v

    @field_validator("command")
    @classmethod
    def _check_command(cls, v: str | None) -> str | None:
        if v is not None and "\x00" in v:
            raise ValueError("the command may not contain a NUL character")
        return v if v is not None and v.strip() else None

    @field_validator("resources")
    @classmethod
    def _check_resources(cls, v: ResourceSlots) -> ResourceSlots:
        try:
            return v.check_request()
        except InvalidRequest as err:
            raise ValueError(err.message) from None

    @field_validator("mounts")
    @classmethod
    def _check_mounts(cls, v: list[MountSpec]) -> list[MountSpec]:
        try:
            return validate_mounts(v)
        except InvalidRequest as err:
            raise ValueError(err.message) from None

    @field_validator("env", mode="before")
    @classmethod
    def _env_items(cls, v: Any) -> Any:
        """Accept ``["K=V", ...]`` as well as a mapping."""
        if isinstance(v, (list, tuple)):
            try:
                return parse_env(v)
            except InvalidRequest as err:
                raise ValueError(err.message) from None
        return v

    @field_validator("env")
    @classmethod
    def _check_env(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            problem = _env_name_problem(name) or _env_value_problem(name, value)
            if problem:
                raise ValueError(problem)
        return v

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


def _loc(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def spec_error(exc: ValidationError, what: str = "session spec") -> InvalidRequest:
    """One readable line from a pydantic error, e.g. ``invalid session spec: resources: ...``."""
    known: Mapping[str, Any] = SessionSpec.model_fields if exc.title == "SessionSpec" else {}
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
