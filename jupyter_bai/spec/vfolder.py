"""VFolder data: names, modes, and the shapes the API returns. Pure; no I/O.

Backend.AI's vocabulary (usage mode ``general | data | model``, permission ``rw | ro``)
so its users recognise it; validation lives here so every front end rejects the same inputs.
"""
from __future__ import annotations

import re
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jupyter_bai.spec.errors import InvalidRequest
from jupyter_bai.spec.mounts import VFOLDER_NAME_RE
from jupyter_bai.spec.resources import MAX_BYTES, SIZE_PATTERN, parse_size

__all__ = [
    "VFOLDER_NAME_RE",
    "UsageMode",
    "Permission",
    "VFolderCreate",
    "VFolderInfo",
    "FileEntry",
    "validate_vfolder_name",
    "parse_quota",
    "MkdirRequest",
    "MoveRequest",
    "RemoveRequest",
    "MAX_PATH",
    "MAX_NAME",
    "path_problem",
]

MAX_PATH = 4096
"""Longest path inside a folder, in bytes (Linux ``PATH_MAX``)."""
MAX_NAME = 255
"""Longest file name, in bytes (Linux ``NAME_MAX``)."""
_PATH_SCHEMA = {"maxLength": MAX_PATH, "pattern": r"^[^\x00]*$"}

#: One grammar for names, shared with the mount parser (``^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$``).
_NAME = re.compile(VFOLDER_NAME_RE)
_SIZE = re.compile(SIZE_PATTERN)


class UsageMode(str, Enum):
    """What a folder is for; ``model`` folders can back a model service."""

    general = "general"
    data = "data"
    model = "model"


class Permission(str, Enum):
    """How sessions mount the folder by default (the owner can always manage it)."""

    rw = "rw"
    ro = "ro"


def validate_vfolder_name(name: str) -> str:
    """Return ``name`` or raise :class:`InvalidRequest`; shared by the spec and the engine."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        raise InvalidRequest(
            f"invalid vfolder name {shown}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def parse_quota(value: Any) -> int | None:
    """Quota as bytes: an int, or a size string such as ``"10m"``; 1 to 2^63-1 bytes."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"invalid quota {value!r}")
    if isinstance(value, str):
        if _SIZE.fullmatch(value) is None:
            raise ValueError(f"invalid quota {value!r}: give bytes or a size like '10g'")
        try:
            value = parse_size(value)
        except (InvalidRequest, ValueError) as err:
            raise ValueError(str(err)) from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(f"invalid quota {value!r}: give bytes or a size like '10g'")
    if value <= 0:
        raise ValueError(f"invalid quota {value!r}: must be greater than 0")
    if value > MAX_BYTES:
        raise ValueError(f"invalid quota {value}: must be at most {MAX_BYTES} bytes")
    return value


class VFolderCreate(BaseModel):
    """A request to create a vfolder."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(json_schema_extra={"pattern": VFOLDER_NAME_RE, "minLength": 1,
                                          "maxLength": 64})
    usage_mode: UsageMode = UsageMode.general
    permission: Permission = Permission.rw
    quota: int | None = Field(
        default=None,
        description='Bytes, or a size string such as "10g"; at most 2^63-1 bytes.',
        json_schema_extra={"anyOf": [
            {"type": "integer", "minimum": 1, "maximum": MAX_BYTES},
            {"type": "string", "pattern": SIZE_PATTERN},
            {"type": "null"},
        ]},
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        try:
            return validate_vfolder_name(v)
        except InvalidRequest as err:
            raise ValueError(err.message) from None

    @field_validator("quota", mode="before")
    @classmethod
    def _check_quota(cls, v: Any) -> int | None:
        return parse_quota(v)

    @classmethod
    def from_json(cls, data: Any) -> VFolderCreate:
        """Validate API/CLI input; any problem becomes one :class:`InvalidRequest` line."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            parts = []
            for err in exc.errors(include_url=False):
                loc = ".".join(str(p) for p in err["loc"])
                if err["type"] == "extra_forbidden":
                    parts.append(f"unknown field '{loc}'")
                elif err["type"] == "missing":
                    parts.append(f"missing field '{loc}'")
                else:
                    msg = err["msg"].removeprefix("Value error, ")
                    parts.append(f"{loc}: {msg}" if loc else msg)
            raise InvalidRequest("invalid vfolder request: " + "; ".join(parts)) from None


def _check_path(v: str) -> str:
    """A path inside a folder the kernel can take: no NUL, at most PATH_MAX and NAME_MAX."""
    problem = path_problem(v)
    if problem:
        raise ValueError(problem)
    return v


def path_problem(path: str) -> str | None:
    """Why ``path`` can never name a file in a folder, or ``None`` (escapes are the engine's)."""
    if "\x00" in path:
        return "a path may not contain a NUL character"
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH:
        return f"a path is longer than {MAX_PATH} bytes"
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME for part in path.split("/")):
        return f"a path has a component longer than {MAX_NAME} bytes"
    return None


class _FileRequest(BaseModel):
    """Base of the JSON bodies of file operations: known fields only, exact JSON types."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @classmethod
    def from_json(cls, data: Any) -> Any:
        """Validate a request body; any problem becomes one :class:`InvalidRequest` line."""
        from jupyter_bai.spec.session import spec_error

        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise spec_error(exc, "request", cls) from None


class MkdirRequest(_FileRequest):
    """``POST /vfolders/{name}/mkdir``."""

    path: str = Field(description="Directory path relative to the folder root.",
                      json_schema_extra=_PATH_SCHEMA)
    parents: bool = Field(default=False,
                          description="Like `mkdir -p`: create parents, no error if it exists.")

    _path = field_validator("path")(_check_path)


class MoveRequest(_FileRequest):
    """``POST /vfolders/{name}/move``."""

    src: str = Field(json_schema_extra=_PATH_SCHEMA)
    dst: str = Field(json_schema_extra=_PATH_SCHEMA)

    _paths = field_validator("src", "dst")(_check_path)


class RemoveRequest(_FileRequest):
    """``POST /vfolders/{name}/rm``."""

    path: str = Field(json_schema_extra=_PATH_SCHEMA)
    recursive: bool = False

    _path = field_validator("path")(_check_path)


class VFolderInfo(BaseModel):
    """A vfolder as the API shows it, with its current usage."""

    id: str
    name: str
    usage_mode: UsageMode
    permission: Permission
    quota: int | None
    usage_bytes: int
    file_count: int
    created_at: float
    host: str = "local"


class FileEntry(BaseModel):
    """One entry of a folder listing; ``path`` is relative to the vfolder root."""

    name: str
    path: str
    type: Literal["file", "dir", "symlink"]
    size: int
    mtime: float
    mode: str
