"""Host binds and labels on a session request. Pure; no I/O.

A host bind makes a host directory appear in the session (the notebook's folder for a
kernel session). Which host paths are allowed is the engine's decision (only under the
Jupyter server's ``root_dir``); here only the shape is checked.
"""
from __future__ import annotations

import posixpath
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jupyter_bai.spec.mounts import _clean_target, _target_problem

__all__ = ["HostBind", "LABEL_KEY_RE", "check_labels"]

LABEL_KEY_RE = r"^[a-z0-9][a-z0-9._/-]{0,63}$"
_LABEL_KEY = re.compile(LABEL_KEY_RE)
MAX_LABELS = 32
MAX_LABEL_VALUE = 1024


class HostBind(BaseModel):
    """``{"source": "/abs/host/dir", "target": "/home/work/NAME", "perm": "rw"}``."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="absolute host directory (under the server's root_dir)")
    target: str = Field(description="absolute path inside the session, like /home/work/notebooks")
    perm: Literal["ro", "rw"] = "rw"

    @field_validator("source")
    @classmethod
    def _check_source(cls, v: str) -> str:
        clean = v.rstrip("/") or "/"
        if not clean.startswith("/") or "\x00" in clean or posixpath.normpath(clean) != clean:
            raise ValueError(f"bind source '{v}' must be a normalised absolute host path")
        return clean

    @field_validator("target", mode="before")
    @classmethod
    def _check_target(cls, v: object) -> object:
        v = _clean_target(v)
        problem = _target_problem(v)
        if problem:
            raise ValueError(problem)
        return v


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Labels are short tags shown in ``session info``; keys like ``kernel-id``."""
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels")
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            raise ValueError(
                f"invalid label '{key}': use 1-64 lowercase letters, digits, '.', '_', '/' or '-'"
            )
        if not isinstance(value, str) or "\x00" in value or len(value) > MAX_LABEL_VALUE:
            raise ValueError(f"label '{key}' must be a string of at most {MAX_LABEL_VALUE} characters")
    return labels
