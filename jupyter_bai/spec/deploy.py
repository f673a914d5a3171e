"""Notebook deploy requests (the REST contract of ``/deploy/check`` and ``/services/{name}/deploy``). Pure."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import as_value_error
from .resources import ResourceSlots
from .session import spec_error

__all__ = ["DeployCheckRequest", "DeployRequest"]


class DeployCheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notebook: str = Field(min_length=1, max_length=4096,
                          description="path of the .ipynb, relative to the Jupyter root_dir")

    @classmethod
    def from_json(cls, data: Any) -> "DeployCheckRequest":
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise spec_error(exc, "deploy check") from None


class DeployRequest(DeployCheckRequest):
    """``deploy NOTEBOOK -t NAME --replicas N [--public] [-r K=V]... [--files F...]``."""

    replicas: int = Field(default=1, ge=1, le=64, description="number of routes")
    resources: ResourceSlots = Field(default_factory=ResourceSlots, description="per route")
    public: bool = Field(default=False, description="serve without a token")
    files: list[str] = Field(default_factory=list, max_length=256,
                             description="files or folders (relative to the root_dir) packed "
                                         "next to the notebook, at /models/<name>")
    image: str = Field(default="local", description="the routes' image (`local` in this version)")

    @field_validator("resources")
    @classmethod
    def _resources(cls, v: ResourceSlots) -> ResourceSlots:
        return as_value_error(ResourceSlots.check_request, v)

    @classmethod
    def from_json(cls, data: Any) -> "DeployRequest":
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise spec_error(exc, "deploy request") from None
