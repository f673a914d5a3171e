"""Backend.AI's mount grammar: every accepted form, and every rejection naming the mount."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel, ValidationError

from jupyter_bai.spec import InvalidRequest
from jupyter_bai.spec.mounts import (
    DEFAULT_MOUNT_ROOT,
    RESERVED_MOUNT_TARGETS,
    VFOLDER_NAME_RE,
    MountSpec,
    parse_mount,
    validate_mounts,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data", MountSpec("data", "/home/work/data")),
        ("my-data_1.v2", MountSpec("my-data_1.v2", "/home/work/my-data_1.v2")),
        ("data:/data", MountSpec("data", "/data")),
        ("data:/data/", MountSpec("data", "/data")),
        ("data:/home/work/inputs", MountSpec("data", "/home/work/inputs")),
        ("data:/data:ro", MountSpec("data", "/data", "ro")),
        ("data:ro", MountSpec("data", "/home/work/data", "ro")),
        ("data:RW", MountSpec("data", "/home/work/data", "rw")),
        ("data:/data:rw", MountSpec("data", "/data", "rw")),
        ("data:/data:RO", MountSpec("data", "/data", "ro")),
        ("models:/models:ro", MountSpec("models", "/models", "ro")),
        ("scratch:/tmp/scratch", MountSpec("scratch", "/tmp/scratch")),
        ("  data:/data  ", MountSpec("data", "/data")),
        ("type=bind,source=data,target=/data,perm=ro", MountSpec("data", "/data", "ro")),
        ("perm=rw,target=/data,source=data,type=bind", MountSpec("data", "/data", "rw")),
        ("source=data,target=/data", MountSpec("data", "/data")),
        ("source=data", MountSpec("data", "/home/work/data")),
        ("type=bind,src=data,dst=/data", MountSpec("data", "/data")),
        ("src=data,destination=/data,readonly", MountSpec("data", "/data", "ro")),
        ("src=data,dst=/data,ro", MountSpec("data", "/data", "ro")),
        ("src=data,dst=/data,readonly=true", MountSpec("data", "/data", "ro")),
        ("src=data,dst=/data,readonly=false", MountSpec("data", "/data", "rw")),
        ("src=data,dst=/data,permission=ro", MountSpec("data", "/data", "ro")),
        ("TYPE=bind, Source=data , target=/data", MountSpec("data", "/data")),
    ],
)
def test_parse_mount_good(text: str, expected: MountSpec) -> None:
    assert parse_mount(text) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"source": "data"}, MountSpec("data", "/home/work/data")),
        ({"source": "data", "target": "/data"}, MountSpec("data", "/data")),
        ({"source": "data", "target": "/data", "perm": "ro"}, MountSpec("data", "/data", "ro")),
        ({"source": "data", "target": None, "perm": None}, MountSpec("data", "/home/work/data")),
    ],
)
def test_parse_mount_from_dict(data: dict[str, object], expected: MountSpec) -> None:
    assert parse_mount(data) == expected
    assert MountSpec.from_json(data) == expected


def test_parse_mount_passes_spec_through() -> None:
    spec = MountSpec("data", "/data", "ro")
    assert parse_mount(spec) is spec


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "expected NAME"),
        ("   ", "expected NAME"),
        (":/data", "expected NAME"),
        ("a:/b:ro:x", "expected NAME"),
        ("data:ro:/data", "give the target before the permission"),
        ("-data", "not a valid vfolder name"),
        (".data", "not a valid vfolder name"),
        ("da ta", "not a valid vfolder name"),
        ("data/x", "not a valid vfolder name"),
        ("a" * 65, "not a valid vfolder name"),
        ("data:relative/path", "not an absolute path"),
        ("data:", "expected an absolute target path"),
        ("data:/a/../b", "not a normalised path"),
        ("data:/a/./b", "not a normalised path"),
        ("data:/a//b", "not a normalised path"),
        ("data://a", "not a normalised path"),
        ("data:/a b", "may not contain spaces"),
        ("data:/", "whole file system"),
        ("data://", "whole file system"),
        ("data:/proc", "reserved path"),
        ("data:/proc/self", "reserved path"),
        ("data:/sys", "reserved path"),
        ("data:/dev/shm", "reserved path"),
        ("data:/usr", "reserved path"),
        ("data:/usr/local/lib", "reserved path"),
        ("data:/bin", "reserved path"),
        ("data:/sbin", "reserved path"),
        ("data:/lib", "reserved path"),
        ("data:/lib64", "reserved path"),
        ("data:/etc", "reserved path"),
        ("data:/etc/ssl", "reserved path"),
        ("data:/run", "reserved path"),
        ("data:/var/run", "reserved path"),
        ("data:/var", "would hide /var/run"),
        ("data:/pipeline", "reserved path"),
        ("data:/pipeline/outputs", "reserved path"),
        ("data:/home/work", "session's home itself"),
        ("data:/home", "would hide the session's home"),
        ("data:/data:rx", "must be ro or rw"),
        ("data:/data:", "must be ro or rw"),
        ("type=volume,source=data,target=/data", "only type=bind"),
        ("type=bind,target=/data", "missing source"),
        ("type=bind,source=data,target=/data,perm=rx", "must be ro or rw"),
        ("type=bind,source=data,target=/data,size=1g", "unknown option 'size'"),
        ("source=data,src=data2", "given twice"),
        ("source=data,target=/a,dst=/b", "given twice"),
        ("source=data,readonly,ro", "given twice"),
        ("source=data,perm=ro,readonly", "not both"),
        ("source=data,readonly=maybe", "true or false"),
        ("source=data,target=", "needs a value"),
        ("source=data,,target=/x", "empty option"),
        ("source=data,target=/proc", "reserved path"),
        ("source=da ta", "not a valid vfolder name"),
    ],
)
def test_parse_mount_bad(text: str, says: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_mount(text)
    message = str(info.value)
    assert f"invalid mount '{text.strip()}'" in message
    assert says in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({}, "missing 'source'"),
        ({"target": "/data"}, "missing 'source'"),
        ({"source": "data", "mode": "ro"}, "unknown key 'mode'"),
        ({"source": "data", "target": "/etc"}, "reserved path"),
        ({"source": "data", "perm": "x"}, "must be ro or rw"),
        ({"source": 5}, "not a valid vfolder name"),
        ({"source": "data", "target": 5}, "expected an absolute target"),
    ],
)
def test_parse_mount_bad_dict(data: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_mount(data)
    assert "invalid mount" in str(info.value)
    assert says in str(info.value)


def test_parse_mount_bad_type() -> None:
    with pytest.raises(InvalidRequest, match="invalid mount 5"):
        parse_mount(5)  # type: ignore[arg-type]


def test_mount_spec_constructor_validates() -> None:
    with pytest.raises(InvalidRequest, match=r"invalid mount 'data:/proc'"):
        MountSpec("data", "/proc")
    with pytest.raises(InvalidRequest, match="must be ro or rw"):
        MountSpec("data", "/data", "x")  # type: ignore[arg-type]
    assert MountSpec("data", "/data/").target == "/data"


def test_mount_spec_is_frozen_and_hashable() -> None:
    spec = MountSpec("data", "/data")
    with pytest.raises(AttributeError):
        spec.target = "/x"  # type: ignore[misc]
    assert len({spec, MountSpec("data", "/data")}) == 1


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("data", "data:/home/work/data"),
        ("data:/data", "data:/data"),
        ("data:/data:ro", "data:/data:ro"),
        ("type=bind,source=data,target=/data,perm=rw", "data:/data:rw"),
        ("src=data,dst=/x,readonly", "data:/x:ro"),
    ],
)
def test_str_is_canonical_and_reparses(text: str, canonical: str) -> None:
    spec = parse_mount(text)
    assert str(spec) == canonical
    assert parse_mount(str(spec)) == spec


@pytest.mark.parametrize("text", ["data", "data:/data:ro", "m:/models:rw"])
def test_json_round_trip(text: str) -> None:
    spec = parse_mount(text)
    data = spec.to_json()
    assert set(data) == {"source", "target", "perm"}
    assert MountSpec.from_json(data) == spec
    assert parse_mount(data) == spec


def test_constants() -> None:
    assert DEFAULT_MOUNT_ROOT == "/home/work"
    assert re.match(VFOLDER_NAME_RE, "a" * 64)
    assert not re.match(VFOLDER_NAME_RE, "a" * 65)
    assert "/pipeline" in RESERVED_MOUNT_TARGETS


# ---------------------------------------------------------------------------- validate_mounts


def test_validate_mounts_good() -> None:
    mounts = validate_mounts(
        ["data", "models:/models:ro", {"source": "out", "target": "/home/work/out"}, "x:/datax"]
    )
    assert [str(m) for m in mounts] == [
        "data:/home/work/data",
        "models:/models:ro",
        "out:/home/work/out",
        "x:/datax",
    ]
    assert validate_mounts([]) == []


def test_validate_mounts_sibling_prefix_is_not_nesting() -> None:
    assert len(validate_mounts(["a:/data", "b:/data2", "c:/data-x"])) == 3


@pytest.mark.parametrize(
    ("mounts", "says"),
    [
        (["data", "data:/other"], "vfolder 'data' is mounted twice"),
        (["data:/a:ro", "data:/b:rw"], "vfolder 'data' is mounted twice"),
        (["a:/data", "b:/data"], "same target /data"),
        (["a", {"source": "b", "target": "/home/work/a"}], "same target /home/work/a"),
        (["a:/data", "b:/data/sub"], "'b:/data/sub' is nested inside mount 'a:/data'"),
        (["b:/data/sub", "a:/data"], "'b:/data/sub' is nested inside mount 'a:/data'"),
        (["a:/x/y/z", "b:/x"], "nested inside"),
        (["a", "b:/home/work"], "session's home itself"),
        (["a", "b:/proc"], "invalid mount 'b:/proc'"),
    ],
)
def test_validate_mounts_bad(mounts: list[str], says: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_mounts(mounts)
    assert says in str(info.value)


# ---------------------------------------------------------------------------- pydantic


class _Model(BaseModel):
    mounts: list[MountSpec] = []


def test_pydantic_field_accepts_grammar_dicts_and_specs() -> None:
    model = _Model(
        mounts=["data", {"source": "m", "target": "/models", "perm": "ro"}, MountSpec("x", "/x")]
    )
    assert [str(m) for m in model.mounts] == ["data:/home/work/data", "m:/models:ro", "x:/x"]
    dumped = model.model_dump()
    assert dumped["mounts"][1] == {"source": "m", "target": "/models", "perm": "ro"}
    assert _Model.model_validate_json(model.model_dump_json()) == model


def test_pydantic_field_rejects_with_the_mount_text() -> None:
    with pytest.raises(ValidationError) as info:
        _Model(mounts=["data:/etc"])
    assert "invalid mount 'data:/etc'" in str(info.value)
    assert "mounts" in _Model.model_json_schema()["properties"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        # a trailing newline passed `re.match(... $)` for the folder name
        ("data\n:/home/work/data", "'data\\n' is not a valid vfolder name"),
        ({"source": "data\n"}, "'data\\n' is not a valid vfolder name"),
        ({"source": "data", "target": "/home/work/a\nb"}, "may not contain spaces, control"),
        ({"source": "data", "target": "/home/work/a\x85b"}, "control characters"),
        ("data:/home/work/" + "a" * 5000, "longer than"),
        ({"source": "data", "target": "/home/work/" + "a" * 5000}, "target is longer than 4096"),
        ("data:/home/work/" + "a" * 256, "component longer than 255 characters"),
        ({"source": "data", "target": "/home/work/../etc"}, "not a normalised path"),
        ({"source": "data", "perm": "RO"}, "must be ro or rw"),
        ({"source": "data", "target": "/home/work/x=y"}, "may not contain"),
    ],
)
def test_targets_and_names_checked_in_full(text: object, says: str) -> None:
    """A 5000-character target is refused at create, not later as the user's command failing."""
    with pytest.raises(InvalidRequest) as info:
        parse_mount(text)  # type: ignore[arg-type]
    message = str(info.value)
    assert says in message
    assert "\n" not in message and len(message) < 400


def test_longest_target_is_accepted() -> None:
    target = "/home/work/" + "/".join(["a" * 255] * 15)
    assert len(target) <= 4096
    assert parse_mount({"source": "data", "target": target}).target == target
