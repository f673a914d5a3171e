"""openapi.yaml and the real route table must describe the same API."""
from __future__ import annotations

import re

import yaml

from jupyter_bai.api.base import OPENAPI_PATH
from jupyter_bai.api.routes import route_table

METHODS = ("get", "post", "put", "delete", "patch")


def served_operations() -> set[tuple[str, str]]:
    ops = set()
    for pattern, handler in route_table():
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)
        for method in METHODS:
            if method in vars(handler):
                ops.add((method, path))
    return ops


def documented_operations() -> set[tuple[str, str]]:
    spec = yaml.safe_load(OPENAPI_PATH.read_text())
    return {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in METHODS
    }


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    served, documented = served_operations(), documented_operations()
    assert served - documented == set(), "routes missing from openapi.yaml"
    assert documented - served == set(), "openapi.yaml documents routes that do not exist"


def test_every_operation_has_an_id_summary_and_error_responses() -> None:
    spec = yaml.safe_load(OPENAPI_PATH.read_text())
    ids = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            assert op.get("operationId"), (method, path)
            assert op.get("summary"), (method, path)
            assert "403" in op["responses"] or "403" in str(spec.get("components", {})), (method, path)
            ids.append(op["operationId"])
    assert len(ids) == len(set(ids)), "operationIds must be unique"
