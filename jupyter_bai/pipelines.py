"""Pipelines as Python, for those who prefer code to YAML; the same :class:`PipelineSpec`.

    from jupyter_bai.pipelines import Pipeline, task

    with Pipeline("slack-pipeline-0", env={"PROJECT": "demo"}) as p:
        train = task("model-training-task", command="sleep 3; echo 0.9 > /pipeline/outputs/r")
        task("slack-alarm-task", command="cat /pipeline/input1/r", depends_on=[train])
    Client().run_pipeline(p)        # or p.spec(), p.to_yaml()

Such a file (``pipeline.py``) is also a pipeline file: ``jupyter bai pipeline run pipeline.py``
and ``%bai pipeline run pipeline.py`` run it (see :func:`load_file`).
"""
from __future__ import annotations

import contextvars
import os
import runpy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .spec.errors import InvalidRequest
from .spec.pipeline import PipelineSpec, load_pipeline_file, pipeline_from_data

__all__ = ["Pipeline", "Task", "task", "load_file"]

_current: contextvars.ContextVar[Pipeline | None] = contextvars.ContextVar(
    "bai_pipeline", default=None)


class Task:
    """A task added to a pipeline; pass it (or its name) in another task's ``depends_on``."""

    def __init__(self, name: str, fields: dict[str, Any]):
        self.name = name
        self.fields = fields

    def __repr__(self) -> str:
        return f"Task({self.name!r})"


class Pipeline:
    def __init__(self, name: str = "pipeline", **fields: Any):
        """``fields``: the YAML's pipeline-level keys (``env``, ``defaults``, ``mounts``,
        ``notify``, ``description``)."""
        self.name = name
        self.fields = fields
        self.tasks: list[Task] = []
        self._token: contextvars.Token[Pipeline | None] | None = None

    def task(self, name: str, *, depends_on: list[Task | str] | None = None,
             **fields: Any) -> Task:
        """Add a task; ``fields`` are the YAML's task keys (``command``, ``image``, ...)."""
        deps = [d.name if isinstance(d, Task) else d for d in depends_on or []]
        t = Task(name, {**fields, **({"depends_on": deps} if deps else {})})
        self.tasks.append(t)
        return t

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **self.fields,
                "tasks": [{"name": t.name, **t.fields} for t in self.tasks]}

    def spec(self) -> PipelineSpec:
        """Validated as a YAML file is (a cycle, an unknown dependency, ... raise)."""
        return PipelineSpec.from_json(self.to_json())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.spec().model_dump(mode="json", exclude_defaults=True),
                              sort_keys=False)

    def __enter__(self) -> Pipeline:
        self._token = _current.set(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None


def task(name: str, *, depends_on: list[Task | str] | None = None, **fields: Any) -> Task:
    """Add a task to the pipeline of the enclosing ``with Pipeline(...)`` block."""
    pipeline = _current.get()
    if pipeline is None:
        raise RuntimeError("task() is used inside 'with Pipeline(...):'; or call pipeline.task()")
    return pipeline.task(name, depends_on=depends_on, **fields)


def load_file(path: str | os.PathLike[str], environ: Mapping[str, str]) -> PipelineSpec:
    """A pipeline file: YAML, or Python (``.py``) that builds a :class:`Pipeline` (the one
    named ``pipeline``, or the only one). The Python runs here, in the submitting process,
    under ``__name__ == "__bai_pipeline__"``; the result gets the YAML's treatment (``${VAR}``,
    notebooks relative to the file, validation), so both give the same spec."""
    path = Path(path)
    if path.suffix != ".py":
        return load_pipeline_file(path, environ)
    if not path.is_file():
        raise InvalidRequest(f"cannot read pipeline file {path}: no such file")
    try:
        namespace = runpy.run_path(str(path), run_name="__bai_pipeline__")
    except SyntaxError as exc:
        raise InvalidRequest(f"{path}:{exc.lineno}: Python syntax error: {exc.msg}") from None
    except Exception as exc:  # the user's code: its error in one line
        raise InvalidRequest(f"{path}: {type(exc).__name__}: {exc}") from None
    found = namespace.get("pipeline")
    if not isinstance(found, Pipeline):
        candidates = [v for v in namespace.values() if isinstance(v, Pipeline)]
        if len(candidates) != 1:
            raise InvalidRequest(f"{path}: defines {len(candidates) or 'no'} Pipelines; name the "
                                 "one to run `pipeline`")
        found = candidates[0]
    return pipeline_from_data(found.to_json(), environ, source=str(path), base_dir=path.parent)
