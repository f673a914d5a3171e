"""The answer models: typed, and still readable like the JSON dicts notebooks were written for."""
from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from pydantic import ValidationError

from jupyter_bai import render
from jupyter_bai.spec.models import Event, RunDone, SessionInfo, VFolderInfo, to_jsonable

from test_cli import SESSION


def test_a_session_reads_like_its_json() -> None:
    s = SessionInfo.model_validate(SESSION)
    assert isinstance(s, Mapping) and s.status == "RUNNING" and s["status"] == "RUNNING"
    assert s.get("exit_code") is None and s.get("no-such-key", 7) == 7 and "exit_code" in s
    assert s == SESSION and dict(s) == json.loads(json.dumps(SESSION)) and {**s}["name"] == "exp1"
    assert json.loads(json.dumps(to_jsonable([s]))) == [SESSION]
    assert s["mounts"][0]["perm"] == "ro" and s.allocation is not None and s.allocation.shares == {"0": "0.5"}
    with pytest.raises(KeyError):
        s["no-such-key"]


def test_loose_models_keep_fields_they_do_not_name_and_strict_ones_check_types() -> None:
    s = SessionInfo.model_validate({**SESSION, "future_field": [1]})
    assert s["future_field"] == [1] and "future_field" in s.keys()
    with pytest.raises(ValidationError):
        SessionInfo.model_validate({**SESSION, "status": "SLEEPING"})
    with pytest.raises(ValidationError):
        VFolderInfo.model_validate({"id": "x", "name": "d"})


def test_events_pass_resync_through() -> None:
    e = Event.model_validate({"kind": "resync", "seq": 12})
    assert e.is_resync and e["seq"] == 12 and e.get("name") is None and "name" not in e


def test_renderers_draw_models_as_they_drew_dicts() -> None:
    s = SessionInfo.model_validate(SESSION)
    assert render.session_detail(s).text == render.session_detail(SESSION).text
    assert render.sessions_table([s]).html == render.sessions_table([SESSION]).html


def test_run_done_keeps_the_result() -> None:
    done = RunDone.model_validate({"type": "done", "status": "ok", "result": "42"})
    assert done["result"] == "42" and done.get("traceback") is None and done == {"type": "done", "status": "ok", "result": "42"}
