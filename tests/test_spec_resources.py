"""Resource slots and sizes: what people type, what the API sends, what the scheduler adds up."""

from __future__ import annotations

import copy
import pickle
import re
from decimal import Decimal

import pytest
from pydantic import BaseModel, ValidationError

from jupyter_bai.spec import InvalidRequest
from jupyter_bai.spec.resources import (
    SIZE_PATTERN,
    SLOT_NAMES,
    ResourceSlots,
    format_size,
    parse_size,
)

K, M, G, T = 1024, 1024**2, 1024**3, 1024**4


# ---------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("512", 512),
        ("512b", 512),
        ("512B", 512),
        ("512k", 512 * K),
        ("512K", 512 * K),
        ("512m", 512 * M),
        ("4g", 4 * G),
        ("4G", 4 * G),
        ("4gb", 4 * G),
        ("4GB", 4 * G),
        ("4GiB", 4 * G),
        ("4gi", 4 * G),
        ("1.5g", 3 * G // 2),
        (".5g", G // 2),
        ("1t", T),
        ("2p", 2 * 1024**5),
        (" 4g ", 4 * G),
        ("4 g", 4 * G),
        (1024, 1024),
        (0, 0),
    ],
)
def test_parse_size_good(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "   ", "-1", "-1g", "12x", "g", "4gg", "1.5.5g", "4 gigs", "1e3", "nan", "4ib", "1,5g"],
)
def test_parse_size_bad(text: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_size(text)
    assert f"'{text}'" in str(info.value)
    assert "\n" not in str(info.value)


def test_parse_size_bad_message_says_what_is_expected() -> None:
    with pytest.raises(
        InvalidRequest, match=r"invalid size '12x': expected a size like 512m or 4g"
    ):
        parse_size("12x")


@pytest.mark.parametrize("value", [-1, True, None, 1.5, [1]])
def test_parse_size_bad_non_strings(value: object) -> None:
    with pytest.raises(InvalidRequest, match="invalid size"):
        parse_size(value)  # type: ignore[arg-type]


def test_parse_size_too_large() -> None:
    with pytest.raises(InvalidRequest, match="too large"):
        parse_size("99999999999999999999999p")


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (12, "12"),
        (1023, "1023"),
        (1025, "1025"),
        (100 * K, "100k"),
        (512 * M, "512m"),
        (G, "1g"),
        (3 * G // 2, "1.5g"),
        (5 * G // 4, "1.25g"),
        (1100 * M, "1100m"),
        (10 * G, "10g"),
        (T, "1t"),
        (8123456789, "7.57g"),  # no unit shows it exactly: rounded for tables
        (M - 1, "1m"),
    ],
)
def test_format_size(n: int, text: str) -> None:
    assert format_size(n) == text


@pytest.mark.parametrize(
    "n",
    [0, 1, 12, 1023, 1024, 1536, 100 * K, 512 * M, G, 3 * G // 2, 1100 * M, 7 * T, 3 * 1024**5],
)
def test_format_size_round_trips_exact_multiples(n: int) -> None:
    assert parse_size(format_size(n)) == n


@pytest.mark.parametrize("text", ["512", "512k", "4g", "1.5g", "1t", "100k", "1100m"])
def test_parse_format_round_trip(text: str) -> None:
    assert format_size(parse_size(text)) == text


def test_format_size_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_size(-1)


# ---------------------------------------------------------------------------- parse


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["cpu=1"], {"cpu": Decimal(1)}),
        (["cpu=0.5", "mem=512m"], {"cpu": Decimal("0.5"), "mem": Decimal(512 * M)}),
        (["mem=1g"], {"mem": Decimal(G)}),
        (["cuda.device=2"], {"cuda.device": Decimal(2)}),
        (["cuda.device=0", "cuda.shares=0.5"], {"cuda.shares": Decimal("0.5")}),
        (["cuda.shares=0.25"], {"cuda.shares": Decimal("0.25")}),
        (["cuda.shares=1.5"], {"cuda.shares": Decimal("1.5")}),
        ([" cpu = 2 "], {"cpu": Decimal(2)}),
        ("cpu=1 mem=1g", {"cpu": Decimal(1), "mem": Decimal(G)}),
        ("cpu=1,mem=1g", {"cpu": Decimal(1), "mem": Decimal(G)}),
        ([], {}),
        ({"cpu": 1, "mem": "1g"}, {"cpu": Decimal(1), "mem": Decimal(G)}),
        (
            {"cpu": 0.5, "cuda.shares": Decimal("0.5")},
            {"cpu": Decimal("0.5"), "cuda.shares": Decimal("0.5")},
        ),
        ({"mem": 64 * M}, {"mem": Decimal(64 * M)}),
        (["cpu=0.1", "mem=64m"], {"cpu": Decimal("0.1"), "mem": Decimal(64 * M)}),
    ],
)
def test_parse_good(items: object, expected: dict[str, Decimal]) -> None:
    slots = ResourceSlots.parse(items)  # type: ignore[arg-type]
    assert dict(slots) == {name: expected.get(name, Decimal(0)) for name in SLOT_NAMES}


@pytest.mark.parametrize(
    ("items", "named", "says"),
    [
        (["gpu=1"], "'gpu'", "known: cpu, mem, cuda.device, cuda.shares"),
        (["fgpu=0.5"], "'fgpu'", "unknown resource slot"),
        (["CPU=1"], "'CPU'", "unknown resource slot"),
        (["mem=12x"], "'mem=12x'", "expected a size like 512m or 4g"),
        (["mem=-1g"], "'mem=-1g'", "negative"),
        (["cpu=abc"], "'cpu=abc'", "expected a number of cores"),
        (["cpu=-1"], "'cpu=-1'", "cannot be negative"),
        (["cpu=nan"], "'cpu=nan'", "expected a number of cores"),
        (["cpu=inf"], "'cpu=inf'", "expected a number of cores"),
        (["cpu=0.125"], "'cpu=0.125'", "0.01 precision"),
        (["cpu=0"], "'cpu=0'", "cpu must be at least 0.1 (leave it out for the default)"),
        (["mem=0"], "'mem=0'", "mem must be at least 64m (leave it out for the default)"),
        (["mem=1"], "'mem=1'", "mem must be at least 64m"),
        (["mem=63m"], "'mem=63m'", "mem must be at least 64m"),
        (["cpu=0.09"], "'cpu=0.09'", "cpu must be at least 0.1"),
        ({"cpu": 0}, "'cpu=0'", "cpu must be at least 0.1"),
        ({"cpu": "0"}, "'cpu=0'", "cpu must be at least 0.1"),
        ({"mem": 0}, "'mem=0'", "mem must be at least 64m"),
        ({"mem": "1"}, "'mem=1'", "mem must be at least 64m"),
        ({" cpu": 1}, "' cpu'", "unknown resource slot"),
        ({"cpu\n": 1}, "unknown resource slot", "known: cpu"),
        ({"cpu": " 1"}, "'cpu= 1'", "expected a number of cores"),
        ({"cpu": "1e2"}, "'cpu=1e2'", "expected a number of cores"),
        ({"cpu": "+1"}, "'cpu=+1'", "expected a number of cores"),
        ({"mem": "1g\n"}, "mem=1g", "expected a size"),
        (["cuda.device=1.5"], "'cuda.device=1.5'", "whole number of GPUs"),
        (["cuda.device=-1"], "'cuda.device=-1'", "cannot be negative"),
        (["cuda.shares=0.555"], "'cuda.shares=0.555'", "cuda.shares has 0.01 precision"),
        (["cuda.shares=half"], "'cuda.shares=half'", "expected a GPU fraction"),
        (["cuda.shares=-0.5"], "'cuda.shares=-0.5'", "cannot be negative"),
        (["cpu"], "'cpu'", "expected NAME=VALUE"),
        (["cpu="], "'cpu='", "expected NAME=VALUE"),
        (["=1"], "'=1'", "expected NAME=VALUE"),
        (["cpu=1", "cpu=2"], "'cpu'", "given twice"),
        (["cpu=1", "mem=1g", "mem=2g"], "'mem'", "given twice"),
        (["cuda.device=1", "cuda.shares=0.5"], "cuda.device=1 cuda.shares=0.5", "not both"),
        ({"gpu": 1}, "'gpu'", "unknown resource slot"),
        ({"mem": "12x"}, "'mem=12x'", "expected a size"),
        ({"cuda.shares": 0.555}, "'cuda.shares=0.555'", "0.01 precision"),
        ({"cuda.device": 1, "cuda.shares": "0.5"}, "cuda.device=1 cuda.shares=0.5", "not both"),
        ({"cpu": True}, "'cpu=True'", "expected a number of cores"),
    ],
)
def test_parse_bad(items: object, named: str, says: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        ResourceSlots.parse(items)  # type: ignore[arg-type]
    message = str(info.value)
    assert named in message
    assert says in message
    assert "\n" not in message


def test_parse_bad_message_exact() -> None:
    with pytest.raises(InvalidRequest) as info:
        ResourceSlots.parse(["mem=12x"])
    assert str(info.value) == "invalid resource 'mem=12x': expected a size like 512m or 4g"


def test_both_gpu_kinds_rejected_only_when_both_positive() -> None:
    assert ResourceSlots.parse(["cuda.device=1", "cuda.shares=0"])["cuda.device"] == 1
    assert ResourceSlots.parse(["cuda.device=0", "cuda.shares=0.5"])["cuda.shares"] == Decimal(
        "0.5"
    )
    with pytest.raises(InvalidRequest, match="not both"):
        ResourceSlots.parse(["cuda.shares=0.01", "cuda.device=1"])


def test_share_precision_boundary() -> None:
    assert ResourceSlots.parse(["cuda.shares=0.01"])["cuda.shares"] == Decimal("0.01")
    assert ResourceSlots.parse(["cuda.shares=0.50"])["cuda.shares"] == Decimal("0.5")
    with pytest.raises(InvalidRequest, match="0.01 precision"):
        ResourceSlots.parse(["cuda.shares=0.001"])
    with pytest.raises(InvalidRequest, match="0.01 precision"):
        ResourceSlots({"cuda.shares": "0.555"})


# ---------------------------------------------------------------------------- constructor


def test_constructor_allows_capacity_with_both_gpu_kinds() -> None:
    capacity = ResourceSlots({"cpu": 8, "mem": "32g", "cuda.device": 2, "cuda.shares": 2})
    assert capacity["cuda.device"] == 2 and capacity["cuda.shares"] == 2
    with pytest.raises(InvalidRequest, match="not both"):
        capacity.check_request()


@pytest.mark.parametrize(
    ("slots", "named"),
    [
        ({"gpu": 1}, "'gpu'"),
        ({"cpu": -1}, "'cpu=-1'"),
        ({"mem": -5}, "'mem=-5'"),
        ({"cuda.device": "x"}, "'cuda.device=x'"),
    ],
)
def test_constructor_bad(slots: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        ResourceSlots(slots)
    assert named in str(info.value)


def test_constructor_rejects_non_mapping() -> None:
    with pytest.raises(InvalidRequest, match="expected a mapping"):
        ResourceSlots(["cpu=1"])  # type: ignore[arg-type]


def test_missing_slots_are_zero_and_mapping_protocol() -> None:
    slots = ResourceSlots({"cpu": 2})
    assert list(slots) == list(SLOT_NAMES)
    assert len(slots) == 4
    assert slots["mem"] == 0 and slots["cuda.shares"] == 0
    assert slots.get("cuda.device") == 0
    with pytest.raises(KeyError):
        slots["gpu"]
    assert ResourceSlots() == ResourceSlots({})
    assert ResourceSlots().is_zero
    assert not slots.is_zero


def test_immutable() -> None:
    slots = ResourceSlots({"cpu": 1})
    with pytest.raises(AttributeError):
        slots.foo = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        slots["cpu"] = Decimal(2)  # type: ignore[index]


def test_eq_and_hash() -> None:
    a = ResourceSlots({"cpu": "1.0", "mem": "1g"})
    b = ResourceSlots.parse(["mem=1024m", "cpu=1"])
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != ResourceSlots({"cpu": 2})
    assert a == {"cpu": 1, "mem": G}
    assert a != {"gpu": 1}
    assert a != "cpu=1"


def test_copy_and_pickle() -> None:
    a = ResourceSlots.parse("cpu=1.5 mem=2g cuda.shares=0.5")
    assert copy.copy(a) == a
    assert copy.deepcopy(a) == a
    assert pickle.loads(pickle.dumps(a)) == a


# ---------------------------------------------------------------------------- arithmetic


def test_add_sub_and_sum() -> None:
    a = ResourceSlots.parse("cpu=1 mem=1g cuda.shares=0.5")
    b = ResourceSlots.parse("cpu=0.5 mem=512m cuda.device=1")
    total = a + b
    assert total == ResourceSlots(
        {"cpu": "1.5", "mem": "1.5g", "cuda.device": 1, "cuda.shares": "0.5"}
    )
    assert total - b == a
    assert sum([a, b]) == total
    assert sum([a, b], ResourceSlots()) == total
    assert str(ResourceSlots({"cuda.shares": "0.25"}) + ResourceSlots({"cuda.shares": "0.25"})) == (
        "cpu=0 mem=0 cuda.shares=0.5"
    )


def test_sub_stops_at_zero() -> None:
    capacity = ResourceSlots({"cpu": 2, "cuda.device": 1})
    used = ResourceSlots({"cpu": 3, "cuda.device": 2})
    assert (capacity - used).is_zero


def test_fits_in() -> None:
    capacity = ResourceSlots({"cpu": 4, "mem": "8g", "cuda.device": 1, "cuda.shares": 1})
    assert ResourceSlots.parse("cpu=4 mem=8g").fits_in(capacity)
    assert ResourceSlots.parse("cuda.shares=1").fits_in(capacity)
    assert not ResourceSlots.parse("cpu=4.01").fits_in(capacity)
    assert not ResourceSlots.parse("cuda.device=2").fits_in(capacity)
    assert not ResourceSlots.parse("mem=9g").fits_in(capacity)
    assert ResourceSlots().fits_in(ResourceSlots())


def test_with_defaults_fills_cpu_and_mem_only() -> None:
    defaults = ResourceSlots({"cpu": 1, "mem": "1g", "cuda.device": 1})
    filled = ResourceSlots.parse("cuda.shares=0.5").with_defaults(defaults)
    assert filled == ResourceSlots({"cpu": 1, "mem": "1g", "cuda.shares": "0.5"})
    kept = ResourceSlots.parse("cpu=2").with_defaults(defaults)
    assert kept == ResourceSlots({"cpu": 2, "mem": "1g"})


# ---------------------------------------------------------------------------- text and JSON


def test_to_json_shape() -> None:
    assert ResourceSlots.parse("cpu=1 mem=1g").to_json() == {
        "cpu": "1",
        "mem": "1073741824",
        "cuda.device": "0",
        "cuda.shares": "0",
    }
    assert ResourceSlots({"cpu": "0.50", "cuda.shares": "0.50"}).to_json()["cuda.shares"] == "0.5"
    assert ResourceSlots({"cpu": Decimal("1E+1")}).to_json()["cpu"] == "10"


def test_strings_are_plain_decimals() -> None:
    """What JSON carries is plain digits: the schema's pattern, no exponent, sign or spaces."""
    for text in ("1E+1", "1_0", " 1", "1 ", "١"):
        with pytest.raises(InvalidRequest, match="expected a number of cores"):
            ResourceSlots({"cpu": text})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "cpu=1",
        "cpu=0.5 mem=1.5g",
        "cpu=2 mem=4g cuda.device=2",
        "cpu=1 mem=512m cuda.shares=0.25",
    ],
)
def test_json_round_trip(text: str) -> None:
    slots = ResourceSlots.parse(text)
    assert ResourceSlots.from_json(slots.to_json()) == slots


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("cpu=1 mem=1g cuda.shares=0.5", "cpu=1 mem=1g cuda.shares=0.5"),
        ("mem=1g cpu=1", "cpu=1 mem=1g"),
        ("cpu=0.5 mem=1536m cuda.device=2", "cpu=0.5 mem=1.5g cuda.device=2"),
        ("", "cpu=0 mem=0"),
    ],
)
def test_str(text: str, shown: str) -> None:
    slots = ResourceSlots.parse(text)
    assert str(slots) == shown
    assert shown in repr(slots)
    assert ResourceSlots.parse(shown.replace("cpu=0 mem=0", "")) == slots


# ---------------------------------------------------------------------------- pydantic


class _Model(BaseModel):
    slots: ResourceSlots = ResourceSlots()


@pytest.mark.parametrize(
    "value",
    [
        ResourceSlots.parse("cpu=1 mem=1g"),
        {"cpu": "1", "mem": "1g"},
        {"cpu": 1, "mem": 1073741824, "cuda.device": "0", "cuda.shares": "0"},
    ],
)
def test_pydantic_field_accepts(value: object) -> None:
    model = _Model(slots=value)
    assert model.slots == ResourceSlots.parse("cpu=1 mem=1g")
    dumped = model.model_dump()
    # a request dumps what it asks for, so the dump validates as a request again
    assert dumped["slots"] == {"cpu": "1", "mem": "1073741824"}
    assert _Model.model_validate(dumped) == model
    assert _Model.model_validate_json(model.model_dump_json()) == model


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({"gpu": 1}, "'gpu'"),
        ({"mem": "12x"}, "'mem=12x'"),
        (5, "5"),
        # The API takes the documented object only; typed items go through parse() first.
        ("cpu=1", "expected an object"),
        (["cpu=1", "mem=1g"], "expected an object"),
        ({"cpu": 0}, "cpu must be at least 0.1"),
        ({"cuda.device": 1, "cuda.shares": "0.5"}, "not both"),
    ],
)
def test_pydantic_field_rejects(value: object, named: str) -> None:
    with pytest.raises(ValidationError) as info:
        _Model(slots=value)
    assert named in str(info.value)


def test_pydantic_default_and_schema() -> None:
    assert _Model().slots.is_zero
    schema = _Model.model_json_schema()["properties"]["slots"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(SLOT_NAMES)
    assert schema["properties"]["cpu"]["anyOf"][0]["minimum"] == 0.1
    assert schema["properties"]["mem"]["anyOf"][0]["minimum"] == 64 * M


@pytest.mark.parametrize(
    "text", ["512", "512m", "4g", "1.5g", "4GiB", "4gb", ".5g", "4 g", "512b"]
)
def test_size_pattern_matches_the_parser(text: str) -> None:
    """openapi.yaml documents SIZE_PATTERN; the server accepts exactly what it matches."""
    assert re.fullmatch(SIZE_PATTERN, text)
    parse_size(text)


@pytest.mark.parametrize("text", [" 4g", "4g ", "4g\n", "1e3", "-1g", "4ib", "4 gigs", "٣g"])
def test_size_pattern_refuses_what_the_server_refuses(text: str) -> None:
    assert re.fullmatch(SIZE_PATTERN, text) is None
    with pytest.raises(InvalidRequest):
        ResourceSlots.request({"mem": text})
