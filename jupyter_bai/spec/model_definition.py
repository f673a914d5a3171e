"""Backend.AI's ``model-definition.yaml``: parsed, checked, and errors that point at a line.

Keys may be snake_case or kebab-case (Backend.AI accepts both); keys this version does not know
are kept (``extra="allow"``) so a file written for a newer Backend.AI still loads. Every problem
becomes one :class:`InvalidRequest` line naming the file, the line and the field, never a
traceback. Pure: no I/O beyond reading the text it is given.
"""
from __future__ import annotations

from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InvalidRequest

__all__ = [
    "HealthCheck", "PreStartAction", "ServiceConfig", "ModelConfig", "ModelDefinition",
    "parse_model_definition", "DEFINITION_FILES",
]

DEFINITION_FILES = ("model-definition.yaml", "model-definition.yml")
"""Where Backend.AI looks for the definition in the model folder, in this order."""

ACTIONS = ("run_command", "write_file", "write_tempfile", "mkdir", "log")


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class HealthCheck(_Model):
    """Backend.AI's defaults: a route gets ``initial_delay`` seconds of grace to load."""

    path: str = "/"
    interval: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=10, ge=1)
    max_wait_time: float = Field(default=15.0, gt=0)
    expected_status_code: int = Field(default=200, ge=100, le=599)
    initial_delay: float = Field(default=60.0, ge=0)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"must start with '/', got {v!r}")
        return v


class PreStartAction(_Model):
    action: Literal["run_command", "write_file", "write_tempfile", "mkdir", "log"]
    args: dict[str, Any] = Field(default_factory=dict)
    ref: str | None = None

    @field_validator("action", mode="before")
    @classmethod
    def _action(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.replace("-", "_")
            if v not in ACTIONS:
                raise ValueError(f"unknown action {v!r} (known: {', '.join(ACTIONS)})")
        return v


class ServiceConfig(_Model):
    pre_start_actions: list[PreStartAction] = Field(default_factory=list)
    start_command: Union[str, list[str]]
    shell: str = "/bin/bash"
    port: int | None = Field(default=None, ge=1, le=65535)
    health_check: HealthCheck | None = None

    @field_validator("start_command")
    @classmethod
    def _command(cls, v: Union[str, list[str]]) -> Union[str, list[str]]:
        if (isinstance(v, str) and not v.strip()) or (isinstance(v, list) and not v):
            raise ValueError("must not be empty")
        return v


class ModelConfig(_Model):
    name: str = Field(min_length=1)
    model_path: str = Field(min_length=1)
    service: ServiceConfig | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ModelDefinition(_Model):
    models: list[ModelConfig] = Field(min_length=1)

    def servable(self) -> ModelConfig:
        """The first model that has a ``service`` section (what a route runs)."""
        for model in self.models:
            if model.service is not None:
                return model
        raise InvalidRequest("the model definition has no model with a 'service' section")


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that remembers the line of every mapping key, by path."""


def _snake(key: Any) -> Any:
    return key.replace("-", "_") if isinstance(key, str) else key


def _load_with_lines(text: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    node = yaml.compose(text, Loader=_LineLoader)
    lines: dict[tuple[Any, ...], int] = {}

    def walk(n: yaml.Node | None, path: tuple[Any, ...]) -> Any:
        if n is None:
            return None
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k, v in n.value:
                key = _snake(k.value)
                lines[path + (key,)] = k.start_mark.line + 1
                out[key] = walk(v, path + (key,))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [walk(item, path + (i,)) for i, item in enumerate(n.value)]
        return _scalar(n)

    return walk(node, ()), lines


def _scalar(node: yaml.ScalarNode) -> Any:
    """A scalar with YAML's own type resolution (``8000`` is an int, ``"8000"`` a string)."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _where(path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def _field(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_model_definition(text: str, filename: str = "model-definition.yaml") -> ModelDefinition:
    """Parse and check a definition; problems raise one ``file:line: field: why`` line."""
    try:
        data, lines = _load_with_lines(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise InvalidRequest(f"{filename}{line}: not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{filename}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"{filename}:1: expected a mapping with a 'models' list")
    try:
        return ModelDefinition.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        path = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("str", "list["))))
        line = _where(path, lines)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "is missing"
        at = f":{line}" if line else ""
        more = len(exc.errors()) - 1
        extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise InvalidRequest(f"{filename}{at}: {_field(path)}: {msg}{extra}") from None
