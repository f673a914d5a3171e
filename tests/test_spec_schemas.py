"""openapi.yaml's request schemas say what the spec's request models accept: same fields, same
patterns, same minimums (the fuzz test checks the server against them on a live engine)."""
from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from jupyter_bai.api.base import OPENAPI_PATH
from jupyter_bai.spec.assistant import AskRequest, LearnRequest
from jupyter_bai.spec.mounts import MAX_MOUNTS, MAX_TARGET, VFOLDER_NAME_RE
from jupyter_bai.spec.resources import COUNT_PATTERN, MIN_REQUEST, SIZE_PATTERN, SLOT_NAMES
from jupyter_bai.spec.session import (
    ENV_NAME_RE,
    IMAGE_RE,
    MAX_ENV,
    SESSION_NAME_RE,
    ExecRequest,
    RunRequest,
    SessionSpec,
)
from jupyter_bai.spec.vfolder import MkdirRequest, MoveRequest, RemoveRequest, VFolderCreate

DOC: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text())
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]


def _body(path: str, method: str = "post") -> dict[str, Any]:
    schema = DOC["paths"][f"/bai/api/v1{path}"][method]["requestBody"]["content"][
        "application/json"]["schema"]
    return SCHEMAS[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/sessions", SessionSpec),
        ("/sessions/{name}/exec", ExecRequest),
        ("/sessions/{name}/run", RunRequest),
        ("/vfolders", VFolderCreate),
        ("/vfolders/{name}/mkdir", MkdirRequest),
        ("/vfolders/{name}/move", MoveRequest),
        ("/vfolders/{name}/rm", RemoveRequest),
        ("/assistant/ask", AskRequest),
        ("/assistant/sources", LearnRequest),
    ],
)
def test_documented_fields_are_the_models(path: str, model: type[BaseModel]) -> None:
    body = _body(path)
    assert set(body["properties"]) == set(model.model_fields)
    assert body.get("additionalProperties") is False
    assert set(body.get("required", [])) == {n for n, f in model.model_fields.items() if f.is_required()}


def test_documented_patterns_and_minimums_are_the_specs() -> None:
    session = SCHEMAS["SessionSpec"]["properties"]
    assert session["name"]["pattern"] == SESSION_NAME_RE
    assert session["image"]["pattern"] == IMAGE_RE
    assert session["mounts"]["maxItems"] == MAX_MOUNTS
    target = session["mounts"]["items"]["anyOf"][1]["properties"]["target"]
    assert target["maxLength"] == MAX_TARGET
    env = session["env"]
    assert env["propertyNames"]["pattern"] == ENV_NAME_RE and env["maxProperties"] == MAX_ENV
    assert SCHEMAS["VFolderCreate"]["properties"]["name"]["pattern"] == VFOLDER_NAME_RE
    slots = session["resources"]
    assert list(slots["properties"]) == list(SLOT_NAMES) and slots["additionalProperties"] is False
    assert slots["properties"]["mem"]["anyOf"][1]["pattern"] == SIZE_PATTERN
    assert slots["properties"]["cpu"]["anyOf"][1]["pattern"] == COUNT_PATTERN
    assert slots["properties"]["cpu"]["anyOf"][0]["minimum"] == float(MIN_REQUEST["cpu"])
    assert slots["properties"]["mem"]["anyOf"][0]["minimum"] == int(MIN_REQUEST["mem"])


def test_model_schemas_carry_the_same_rules() -> None:
    """What a generator of openapi.yaml reads from the models."""
    spec = SessionSpec.model_json_schema()
    assert spec["additionalProperties"] is False
    assert spec["properties"]["name"]["pattern"] == SESSION_NAME_RE
    assert spec["properties"]["resources"]["properties"]["mem"]["anyOf"][1]["pattern"] == SIZE_PATTERN
    assert spec["properties"]["env"]["propertyNames"]["pattern"] == ENV_NAME_RE
    command = ExecRequest.model_json_schema()["properties"]["command"]
    assert "anyOf" not in command and len(command["oneOf"]) == 2
    quota = VFolderCreate.model_json_schema()["properties"]["quota"]
    assert {"type": "integer", "minimum": 1, "maximum": 2**63 - 1} in quota["anyOf"]


@pytest.mark.parametrize("pattern", [SESSION_NAME_RE, VFOLDER_NAME_RE, ENV_NAME_RE, IMAGE_RE])
def test_name_patterns_refuse_a_trailing_newline_in_full_match(pattern: str) -> None:
    assert re.fullmatch(pattern, "abc")
    assert re.fullmatch(pattern, "abc\n") is None
    assert re.match(pattern, "abc\n")  # why `match` was wrong: `$` matches before a final \n
