"""Pipelines (Backend.AI FastTrack): a DAG of tasks, each run as a batch session. Pure; no I/O
except :func:`load_pipeline_file`, which reads the file it is given (and its notebooks).

Every front end loads a file through :func:`load_pipeline` (``${VAR}`` expanded from the
submitting environment), so a bad file is refused the same way everywhere, before any task
starts; the engine validates the resolved JSON again with :class:`PipelineSpec`.
"""
from __future__ import annotations

import graphlib
import math
import re
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InvalidRequest
from .mounts import MountSpec, validate_mounts
from .resources import ResourceSlots
from .session import ENV_NAME_RE, spec_error

__all__ = [
    "TaskStatus", "JobStatus", "TaskSpec", "TaskDefaults", "NotifySpec", "PipelineSpec",
    "expand_vars", "load_pipeline", "load_pipeline_file", "pipeline_from_data", "PIPELINE_ROOT",
]

PIPELINE_ROOT = "/pipeline"
"""Where a task finds ``outputs``, ``input1..N`` and ``inputs/<task>``."""
TASK_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$"
_TASK_NAME = re.compile(TASK_NAME_RE)
_ENV_NAME = re.compile(ENV_NAME_RE)
_VAR = re.compile(r"\$(\$)|\$\{([^}]*)\}")


class TaskStatus(str, Enum):
    """A task instance: WAITING for its dependencies, then a batch session's life."""

    WAITING = "WAITING"
    RUNNING = "RUNNING"      # a session exists for the current attempt
    RETRYING = "RETRYING"    # an attempt failed; the next one starts after the backoff
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"      # a dependency failed
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.SKIPPED,
                        TaskStatus.CANCELLED)


class JobStatus(str, Enum):
    RUNNING = "RUNNING"
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def _seconds(v: float | None) -> float | None:
    if v is not None and (not math.isfinite(v) or v <= 0):
        raise ValueError(f"expected seconds > 0, got {v:g}")
    return v


def _check_env(v: dict[str, str]) -> dict[str, str]:
    for name, value in v.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid env name '{name}'")
        if name.startswith("BACKENDAI_"):
            raise ValueError(f"env '{name}' is reserved: the engine sets it")
        if not isinstance(value, str):
            raise ValueError(f"env '{name}' must be a string")
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TaskDefaults(_Model):
    """What every task gets unless it says otherwise."""

    image: str = "local"
    resources: ResourceSlots = Field(default_factory=ResourceSlots)
    retries: int = Field(default=0, ge=0, le=20)
    backoff: float = Field(default=1.0, gt=0, description="seconds before the first retry; doubles")
    timeout: float | None = Field(default=None, description="seconds per attempt")

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: float | None) -> float | None:
        return _seconds(v)


class TaskSpec(_Model):
    name: str
    command: str | None = Field(default=None, description="a bash script (sh where the image has no bash)")
    notebook: str | None = Field(default=None, description="a notebook run headless (nbclient)")
    notebook_content: dict[str, Any] | None = Field(
        default=None, description="the notebook itself; filled in by the loader")
    parameters: dict[str, Any] = Field(default_factory=dict)
    image: str | None = None
    resources: ResourceSlots | None = None
    env: dict[str, str] = Field(default_factory=dict)
    mounts: list[MountSpec] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    retries: int | None = Field(default=None, ge=0, le=20)
    backoff: float | None = Field(default=None, gt=0)
    timeout: float | None = None
    cache: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _TASK_NAME.match(v):
            raise ValueError(f"invalid task name '{v}': use 1-48 letters, digits, '_' or '-'")
        return v

    @field_validator("resources")
    @classmethod
    def _resources(cls, v: ResourceSlots | None) -> ResourceSlots | None:
        try:
            return v.check_request() if v is not None else None
        except InvalidRequest as err:
            raise ValueError(err.message) from None

    @field_validator("mounts")
    @classmethod
    def _mounts(cls, v: list[MountSpec]) -> list[MountSpec]:
        for m in v:
            if m.target == PIPELINE_ROOT or m.target.startswith(PIPELINE_ROOT + "/"):
                raise ValueError(f"mount target {m.target} is under {PIPELINE_ROOT}, the engine's")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_env(v)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: float | None) -> float | None:
        return _seconds(v)

    @model_validator(mode="after")
    def _what(self) -> TaskSpec:
        if bool(self.command and self.command.strip()) == bool(self.notebook):
            raise ValueError(f"task '{self.name}' needs exactly one of command or notebook")
        if len(set(self.depends_on)) != len(self.depends_on):
            raise ValueError(f"task '{self.name}' lists a dependency twice")
        return self


class NotifySpec(_Model):
    on: list[Literal["success", "failure", "cancelled"]] = Field(
        default_factory=lambda: ["success", "failure", "cancelled"])
    webhook: str = Field(description="Slack-compatible incoming-webhook URL (POST {\"text\"})")

    @field_validator("webhook")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"webhook '{v}' is not an http(s) URL")
        return v


class PipelineSpec(_Model):
    """A pipeline as the engine runs it: ``${VAR}`` already expanded, notebooks inlined."""

    name: str = "pipeline"
    description: str | None = None
    engine: str | None = Field(default=None, description=(
        "A Backend.AI engine from the engine list (`engine add`): the local engine runs the job "
        "and starts each task as a batch session on that cluster. None: this engine's sessions."))
    env: dict[str, str] = Field(default_factory=dict)
    defaults: TaskDefaults = Field(default_factory=TaskDefaults)
    mounts: list[MountSpec] = Field(default_factory=list)
    notify: list[NotifySpec] = Field(default_factory=list)
    tasks: list[TaskSpec]

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", v):
            raise ValueError(f"invalid pipeline name '{v}'")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_env(v)

    @model_validator(mode="after")
    def _dag(self) -> PipelineSpec:
        if not self.tasks:
            raise ValueError("the pipeline has no tasks")
        names: set[str] = set()
        for t in self.tasks:
            if t.name in names:
                raise ValueError(f"two tasks are named '{t.name}'")
            names.add(t.name)
        for t in self.tasks:
            for dep in t.depends_on:
                if dep not in names:
                    raise ValueError(f"task '{t.name}' depends on unknown task '{dep}'")
                if dep == t.name:
                    raise ValueError(f"task '{t.name}' depends on itself")
            try:
                validate_mounts([*self.mounts, *t.mounts])
            except InvalidRequest as err:
                raise ValueError(f"task '{t.name}': {err.message}") from None
        try:
            self.order()
        except graphlib.CycleError as err:
            cycle = list(err.args[1])
            raise ValueError(f"dependency cycle: {' -> '.join(cycle)}") from None
        return self

    def order(self) -> list[str]:
        """Task names in an order where each comes after its dependencies."""
        graph = {t.name: t.depends_on for t in self.tasks}
        return list(graphlib.TopologicalSorter(graph).static_order())

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)

    @classmethod
    def from_json(cls, data: Any) -> PipelineSpec:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise spec_error(exc, "pipeline") from None


def expand_vars(value: Any, environ: Mapping[str, str], where: str = "") -> Any:
    """``${VAR}`` in every string from ``environ`` (``$$`` is a literal ``$``); undefined is an
    error. Task ``command``s are left to the task's shell, which sees the task's env."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1):
                return "$"
            name = m.group(2)
            if not _ENV_NAME.match(name):
                raise InvalidRequest(f"{where or 'pipeline'}: invalid variable '${{{name}}}'")
            if name not in environ:
                raise InvalidRequest(
                    f"{where or 'pipeline'}: ${{{name}}} is not set in the environment")
            return environ[name]
        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [expand_vars(v, environ, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: v if k == "command" else expand_vars(v, environ, f"{where}.{k}" if where else k)
                for k, v in value.items()}
    return value


def load_pipeline(
    text: str, environ: Mapping[str, str], source: str = "<pipeline>",
    base_dir: Path | None = None,
) -> PipelineSpec:
    """Parse, expand and validate a pipeline file's text; one clear line on any problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidRequest(f"{source}{line}: YAML syntax error: {problem}") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"{source}: expected a mapping with 'tasks', got {type(data).__name__}")
    for entry in data.get("notify") or []:
        if isinstance(entry, dict) and True in entry:  # YAML 1.1 reads a bare `on:` key as true
            entry["on"] = entry.pop(True)
    return pipeline_from_data(data, environ, source, base_dir)


def pipeline_from_data(
    data: dict[str, Any], environ: Mapping[str, str], source: str = "<pipeline>",
    base_dir: Path | None = None,
) -> PipelineSpec:
    """A parsed pipeline (from YAML or a Python definition): ``${VAR}`` expanded, notebooks
    read from ``base_dir``, validated; one clear line on any problem."""
    data = expand_vars(data, environ)
    for task in data.get("tasks") or []:
        if isinstance(task, dict) and task.get("notebook") and base_dir is not None:
            task["notebook_content"] = _read_notebook(base_dir, str(task["notebook"]), source)
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        err = spec_error(exc, "pipeline")
        raise InvalidRequest(f"{source}: {err.message}") from None


def _read_notebook(base_dir: Path, name: str, source: str) -> dict[str, Any]:
    import json

    path = base_dir / name
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidRequest(f"{source}: notebook '{name}' not found (looked at {path})") from None
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"{source}: notebook '{name}' cannot be read: {exc}") from None
    if not isinstance(content, dict) or "cells" not in content:
        raise InvalidRequest(f"{source}: '{name}' is not a notebook")
    return content


def load_pipeline_file(path: str | Path, environ: Mapping[str, str]) -> PipelineSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidRequest(f"cannot read pipeline file {path}: {exc.strerror or exc}") from None
    return load_pipeline(text, environ, source=str(path), base_dir=path.parent)
