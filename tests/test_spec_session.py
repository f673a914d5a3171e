"""Session types, the status life cycle, and SessionSpec as the API receives it."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from jupyter_bai.spec import (
    ALLOWED_TRANSITIONS,
    BaiError,
    InvalidRequest,
    MountSpec,
    ResourceSlots,
    SessionResult,
    SessionSpec,
    SessionStatus,
    SessionType,
    can_transition,
    parse_env,
    spec_error,
)

S = SessionStatus

# ---------------------------------------------------------------------------- enums


def test_enum_values_and_text() -> None:
    assert [t.value for t in SessionType] == ["interactive", "batch", "inference"]
    assert [r.value for r in SessionResult] == ["undefined", "success", "failure"]
    assert [s.value for s in SessionStatus] == [
        "PENDING",
        "SCHEDULED",
        "PREPARING",
        "RUNNING",
        "TERMINATING",
        "TERMINATED",
        "ERROR",
        "CANCELLED",
    ]
    assert str(SessionStatus.RUNNING) == "RUNNING"
    assert f"{SessionType.batch}" == "batch"
    assert SessionType.batch == "batch"
    assert json.dumps({"s": SessionStatus.ERROR}) == '{"s": "ERROR"}'


def test_enum_lookup_is_case_insensitive() -> None:
    assert SessionStatus("running") is SessionStatus.RUNNING
    assert SessionType("BATCH") is SessionType.batch
    assert SessionResult("Success") is SessionResult.success
    with pytest.raises(ValueError):
        SessionStatus("RUNNIN")


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (S.PENDING, False),
        (S.SCHEDULED, False),
        (S.PREPARING, False),
        (S.RUNNING, False),
        (S.TERMINATING, False),
        (S.TERMINATED, True),
        (S.ERROR, True),
        (S.CANCELLED, True),
    ],
)
def test_terminal_and_live(status: SessionStatus, terminal: bool) -> None:
    assert status.is_terminal is terminal
    assert status.is_live is (not terminal)


ALLOWED = [
    (S.PENDING, S.SCHEDULED),
    (S.SCHEDULED, S.PREPARING),
    (S.PREPARING, S.RUNNING),
    (S.RUNNING, S.TERMINATING),
    (S.TERMINATING, S.TERMINATED),
    (S.PENDING, S.ERROR),
    (S.SCHEDULED, S.ERROR),
    (S.PREPARING, S.ERROR),
    (S.RUNNING, S.ERROR),
    (S.TERMINATING, S.ERROR),
    (S.PENDING, S.CANCELLED),
    (S.SCHEDULED, S.CANCELLED),
    (S.PREPARING, S.CANCELLED),
    (S.PREPARING, S.TERMINATING),
    (S.PREPARING, S.PENDING),
    (S.RUNNING, S.TERMINATED),
]


@pytest.mark.parametrize(("a", "b"), ALLOWED)
def test_allowed_transitions(a: SessionStatus, b: SessionStatus) -> None:
    assert can_transition(a, b)
    assert a.can_transition_to(b)
    assert b in ALLOWED_TRANSITIONS[a]


def test_every_other_transition_is_refused() -> None:
    allowed = set(ALLOWED)
    for a in SessionStatus:
        for b in SessionStatus:
            assert can_transition(a, b) is ((a, b) in allowed), (a, b)


def test_transition_table_shape() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(SessionStatus)
    assert SessionStatus.ALLOWED_TRANSITIONS is ALLOWED_TRANSITIONS
    for status in SessionStatus:
        assert (not ALLOWED_TRANSITIONS[status]) is status.is_terminal
    assert not can_transition(S.RUNNING, S.CANCELLED)
    assert not can_transition(S.RUNNING, S.RUNNING)
    assert can_transition("PENDING", "scheduled")


# ---------------------------------------------------------------------------- env


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["A=1"], {"A": "1"}),
        (["A=1", "_b=x=y"], {"A": "1", "_b": "x=y"}),
        (["EMPTY="], {"EMPTY": ""}),
        (["PATH_2=/a:/b"], {"PATH_2": "/a:/b"}),
        ("ONE=1", {"ONE": "1"}),
        ([], {}),
    ],
)
def test_parse_env_good(items: Any, expected: dict[str, str]) -> None:
    assert parse_env(items) == expected


@pytest.mark.parametrize(
    ("items", "named", "says"),
    [
        (["A"], "'A'", "expected NAME=VALUE"),
        (["=1"], "''", "invalid env name"),
        (["1A=x"], "'1A'", "invalid env name"),
        (["A-B=x"], "'A-B'", "invalid env name"),
        (["A B=x"], "'A B'", "invalid env name"),
        (["BACKENDAI_SESSION_ID=x"], "'BACKENDAI_SESSION_ID'", "reserved"),
        (["CUDA_VISIBLE_DEVICES=0"], "'CUDA_VISIBLE_DEVICES'", "reserved"),
        (
            ["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=1G"],
            "'CUDA_MPS_PINNED_DEVICE_MEM_LIMIT'",
            "reserved",
        ),
        (["A=1", "A=2"], "'A'", "given twice"),
        (["A=x\x00y"], "'A'", "NUL"),
    ],
)
def test_parse_env_bad(items: list[str], named: str, says: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_env(items)
    assert named in str(info.value)
    assert says in str(info.value)


# ---------------------------------------------------------------------------- SessionSpec


API_BODY: dict[str, Any] = {
    "image": "python:3.11",
    "name": "train-1",
    "type": "batch",
    "command": "python train.py --epochs 3",
    "resources": {"cpu": "2", "mem": "4g", "cuda.shares": "0.5"},
    "mounts": [
        "data:/home/work/data:ro",
        {"source": "models", "target": "/models", "perm": "rw"},
        "type=bind,source=out,target=/home/work/out",
    ],
    "env": {"EPOCHS": "3", "HF_HOME": "/models"},
    "idle_timeout": 600,
    "max_lifetime": 3600.5,
}


def test_spec_from_api_json() -> None:
    spec = SessionSpec.model_validate(json.loads(json.dumps(API_BODY)))
    assert spec.image == "python:3.11"
    assert spec.name == "train-1"
    assert spec.type is SessionType.batch
    assert spec.command == "python train.py --epochs 3"
    assert spec.resources == ResourceSlots({"cpu": 2, "mem": 4 * 1024**3, "cuda.shares": "0.5"})
    assert spec.resources["cuda.shares"] == Decimal("0.5")
    assert spec.mounts == [
        MountSpec("data", "/home/work/data", "ro"),
        MountSpec("models", "/models", "rw"),
        MountSpec("out", "/home/work/out"),
    ]
    assert spec.env == {"EPOCHS": "3", "HF_HOME": "/models"}
    assert spec.idle_timeout == 600.0
    assert spec.max_lifetime == 3600.5


def test_spec_json_round_trip() -> None:
    spec = SessionSpec.from_json(API_BODY)
    data = spec.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["resources"] == {"cpu": "2", "mem": "4294967296", "cuda.shares": "0.5"}
    assert data["mounts"][0] == {"source": "data", "target": "/home/work/data", "perm": "ro"}
    assert data["type"] == "batch"
    assert SessionSpec.from_json(data) == spec
    assert SessionSpec.model_validate_json(spec.model_dump_json()) == spec


def test_spec_defaults() -> None:
    spec = SessionSpec(image="python:3.11")
    assert spec.type is SessionType.interactive
    assert spec.name is None and spec.command is None
    assert spec.resources.is_zero
    assert spec.mounts == [] and spec.env == {}
    assert spec.idle_timeout is None and spec.max_lifetime is None


def test_spec_takes_typed_items_only_through_their_parsers() -> None:
    """The JSON forms are the documented ones; ``-r``/``-e`` items are parsed by the front ends."""
    spec = SessionSpec(
        image="python:3.11",
        resources=ResourceSlots.parse(["cpu=1", "mem=1g", "cuda.device=1"]),
        mounts=["data"],  # type: ignore[list-item]
        env=parse_env(["A=1"]),
    )
    assert spec.resources["cuda.device"] == 1
    assert spec.mounts == [MountSpec("data", "/home/work/data")]
    assert spec.env == {"A": "1"}


def test_dump_of_a_spec_without_resources_reads_back() -> None:
    spec = SessionSpec(image="local")
    assert spec.to_json()["resources"] == {}  # nothing asked for: the engine's defaults apply
    assert SessionSpec.from_json(spec.to_json()) == spec


def test_blank_command_is_none() -> None:
    assert SessionSpec(image="x", command="   ").command is None


def test_inference_and_interactive_need_no_command() -> None:
    assert SessionSpec(image="x", type="inference").type is SessionType.inference  # type: ignore[arg-type]
    assert SessionSpec(image="x", type="interactive").type is SessionType.interactive  # type: ignore[arg-type]


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"image": "python:3.11"}
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, "missing field 'image'"),
        (_body(image=""), "image: invalid image ''"),
        (_body(image="python 3.11"), "invalid image 'python 3.11'"),
        (_body(image=5), "image: input should be a valid string (got 5)"),
        (_body(name="-x"), "name: invalid session name '-x'"),
        (_body(name="a" * 65), "invalid session name"),
        (_body(name="a b"), "invalid session name 'a b'"),
        (_body(type="cron"), "type: unknown session type 'cron' (known: interactive, batch"),
        (_body(type="INTERACTIVE"), "unknown session type 'INTERACTIVE'"),
        (_body(type=" batch"), "unknown session type ' batch'"),
        # a trailing newline passed `re.match` with `$`; names are full matches now
        (_body(name="abc\n"), r"name: invalid session name 'abc\n'"),
        (_body(name="abc\x00"), "invalid session name"),
        (_body(name=""), "invalid session name ''"),
        (_body(image="local\n"), r"invalid image 'local\n'"),
        (_body(image="a" * 256), "at most 255 characters"),
        (_body(image="loc\x85al"), "invalid image"),
        (_body(env={"FOO\n": "1"}), r"env: invalid env name 'FOO\n'"),
        (_body(env={"FOO": "x\x00"}), "env 'FOO' may not contain a NUL character"),
        (_body(env={"FOO": "x" * 40000}), "env 'FOO' is longer than 32768 characters"),
        (_body(env={f"V{i}": "" for i in range(300)}), "at most 256 env entries"),
        (_body(command="x" * 40000), "the command is longer than 32768 characters"),
        (_body(resources={"cpu": 0}), "resources: invalid resource 'cpu=0': cpu must be at least 0.1"),
        (_body(resources={"mem": 0}), "invalid resource 'mem=0': mem must be at least 64m"),
        (_body(resources={"mem": 1}), "invalid resource 'mem=1': mem must be at least 64m"),
        (_body(resources={"mem": "1g "}), "invalid resource 'mem=1g '"),
        (_body(resources="cpu=1"), "resources: invalid resources 'cpu=1': expected an object"),
        (_body(resources=["cpu=1"]), "expected an object"),
        (_body(resources=None), "expected an object"),
        (_body(env=[]), "env: input should be a valid dictionary (got [])"),
        (_body(env=["A=1"]), "env: input should be a valid dictionary"),
        (_body(mounts=["data:/home/work/" + "a" * 5000]), "longer than"),
        (_body(mounts=["data:/home/work/" + "a" * 300]), "component longer than 255"),
        (_body(mounts=[{"source": "data", "target": "/x", "perm": "RO"}]), "must be ro or rw"),
        (_body(mounts=[f"d{i}" for i in range(65)]), "mounts: list should have at most 64 items"),
        (_body(idle_timeout="5"), "idle_timeout: input should be a valid number"),
        (_body(idle_timeout=True), "idle_timeout: input should be a valid number"),
        (_body(type="batch"), "invalid session spec: a batch session needs a command (-c)"),
        (_body(type="batch", command=" "), "a batch session needs a command (-c)"),
        (
            _body(resources={"gpu": 1}),
            "invalid session spec: resources: unknown resource slot 'gpu' "
            "(known: cpu, mem, cuda.device, cuda.shares)",
        ),
        (_body(resources={"mem": "12x"}), "resources: invalid resource 'mem=12x'"),
        (_body(resources={"cuda.shares": "0.555"}), "cuda.shares has 0.01 precision"),
        (_body(resources={"cuda.device": 1, "cuda.shares": "0.5"}), "not both"),
        (_body(resources=7), "resources: invalid resources 7"),
        (_body(mounts=["data:/proc"]), "mounts[0]: invalid mount 'data:/proc'"),
        (_body(mounts=["a", "b", "c:/etc"]), "mounts[2]: invalid mount 'c:/etc'"),
        (_body(mounts=["data", "data:/x"]), "mounts: vfolder 'data' is mounted twice"),
        (_body(mounts=["a:/x", "b:/x/y"]), "nested inside"),
        (_body(mounts="data"), "mounts: input should be a valid list"),
        (_body(env={"BACKENDAI_SESSION_ID": "x"}), "env 'BACKENDAI_SESSION_ID' is reserved"),
        (_body(env={"CUDA_VISIBLE_DEVICES": "0"}), "env 'CUDA_VISIBLE_DEVICES' is reserved"),
        (_body(env={"1X": "a"}), "invalid env name '1X'"),
        (_body(env={"A": 1}), "env.A: input should be a valid string (got 1)"),
        (_body(idle_timeout=0), "idle_timeout: expected seconds > 0, got 0"),
        (_body(idle_timeout=-5), "idle_timeout: expected seconds > 0, got -5"),
        (_body(max_lifetime=float("inf")), "max_lifetime: expected seconds > 0"),
        (_body(max_lifetime="soon"), "max_lifetime: input should be a valid number"),
        (_body(gpu=1), "unknown field 'gpu' (known: image, name, type, command, resources"),
    ],
)
def test_spec_rejections(body: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        SessionSpec.from_json(body)
    message = str(info.value)
    assert message.startswith("invalid session spec: ")
    assert says in message
    assert "Value error" not in message
    assert "\n" not in message
    assert info.value.status == 400


def test_spec_error_from_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        SessionSpec.model_validate({"image": "x", "resources": {"gpu": 1}})
    err = spec_error(info.value)
    assert isinstance(err, InvalidRequest) and isinstance(err, BaiError)
    assert str(err) == (
        "invalid session spec: resources: unknown resource slot 'gpu' "
        "(known: cpu, mem, cuda.device, cuda.shares)"
    )
    assert err.to_json()["error"] == "invalid-request"


def test_spec_error_joins_several_problems() -> None:
    with pytest.raises(ValidationError) as info:
        SessionSpec.model_validate({"image": "a b", "name": "-x"})
    message = str(spec_error(info.value))
    assert "image: invalid image 'a b'" in message
    assert "; name: invalid session name '-x'" in message


def test_from_json_rejects_non_objects() -> None:
    with pytest.raises(InvalidRequest, match="invalid session spec"):
        SessionSpec.from_json(["image"])


def test_json_schema_is_generated() -> None:
    schema = SessionSpec.model_json_schema()
    assert schema["additionalProperties"] is False
    assert {"image", "resources", "mounts", "env"} <= set(schema["properties"])
