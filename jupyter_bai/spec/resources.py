"""Resource slots and sizes, in Backend.AI's names. Pure; no I/O.

One parser for ``cpu=1 mem=4g cuda.shares=0.5`` so the CLI, the magics, the REST API and the
scheduler all accept and reject exactly the same requests with the same one-line messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal, InvalidOperation, localcontext
from typing import TYPE_CHECKING, Any

from jupyter_bai.spec.errors import InvalidRequest
from pydantic_core import core_schema

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import CoreSchema

__all__ = [
    "SLOT_NAMES",
    "GPU_SLOT_NAMES",
    "MIN_REQUEST",
    "MAX_BYTES",
    "SIZE_PATTERN",
    "COUNT_PATTERN",
    "ResourceSlots",
    "parse_size",
    "format_size",
]

SLOT_NAMES: tuple[str, ...] = ("cpu", "mem", "cuda.device", "cuda.shares")
"""Every slot a request or a node can have, in display order."""

GPU_SLOT_NAMES: tuple[str, ...] = ("cuda.device", "cuda.shares")
"""Whole GPUs and fractional GPU ("fGPU"); a request may use one kind, not both."""

_UNITS: dict[str, int] = {
    "": 1,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
    "p": 1024**5,
}
SIZE_PATTERN = r"^(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+) *(?:[kKmMgGtTpP][iI]?)?[bB]?$"
"""A size as a string (``512m``, ``4g``, ``1.5GiB``, ``1024``); JSON Schema and Python agree on it."""
COUNT_PATTERN = r"^[0-9]+(?:\.[0-9]+)?$"
"""A number of cores or GPUs as a string (``1``, ``0.5``): plain digits, no sign or exponent."""
_SIZE_RE = re.compile(  # SIZE_PATTERN with groups (JSON Schema has no (?P<...>))
    r"(?P<num>[0-9]+(?:\.[0-9]+)?|\.[0-9]+) *(?:(?P<unit>[kKmMgGtTpP])[iI]?)?[bB]?"
)
_COUNT_RE = re.compile(COUNT_PATTERN)
_SIZE_HINT = "expected a size like 512m or 4g"
MAX_BYTES = 2**63 - 1
"""The largest size anywhere (SQLite's and the kernel's signed 64-bit integers)."""
_MAX_BYTES = MAX_BYTES
MIN_REQUEST: dict[str, Decimal] = {"cpu": Decimal("0.1"), "mem": Decimal(64 * 1024**2)}
"""The least cpu and mem a session may ask for: the in-session agent is a Python process that
does not start on less. An image may ask for more (Docker label ``ai.backend.resource.min.mem``)."""
_MAX_COUNT = Decimal(10**9)
_HUNDREDTH = Decimal("0.01")
_ZERO = Decimal(0)
_SLOT_HINTS: dict[str, str] = {
    "cpu": "expected a number of cores like 1 or 0.5",
    "mem": _SIZE_HINT,
    "cuda.device": "expected a whole number of GPUs like 1",
    "cuda.shares": "expected a GPU fraction like 0.5",
}
_ITEM_HINT = "expected NAME=VALUE like cpu=2 or mem=4g"


# ---------------------------------------------------------------------------- sizes


def _to_bytes(value: Any) -> int:
    """Bytes from a size; ``ValueError`` carries only the reason so callers can name the input."""
    if isinstance(value, bool):
        raise ValueError(_SIZE_HINT)
    if isinstance(value, int):
        n = value
    elif isinstance(value, (Decimal, float)):
        d = Decimal(repr(value)) if isinstance(value, float) else value
        if not d.is_finite():
            raise ValueError(_SIZE_HINT)
        if d != d.to_integral_value():
            raise ValueError("expected a whole number of bytes")
        n = int(d)
    elif isinstance(value, str):
        text = value
        if text.startswith("-"):
            raise ValueError("a size cannot be negative")
        match = _SIZE_RE.fullmatch(text)
        if match is None:
            raise ValueError(_SIZE_HINT)
        with localcontext() as ctx:
            ctx.prec = 100  # exact for every size below _MAX_BYTES, so no silent rounding
            scaled = Decimal(match["num"]) * _UNITS[(match["unit"] or "").lower()]
        n = int(scaled)  # fractions of a byte are dropped, as Backend.AI does
    else:
        raise ValueError(_SIZE_HINT)
    if n < 0:
        raise ValueError("a size cannot be negative")
    if n > _MAX_BYTES:
        raise ValueError(f"size is too large (at most {_MAX_BYTES} bytes)")
    return n


def parse_size(text: str | int) -> int:
    """Bytes from ``512``, ``512k``, ``4g``, ``1.5g``, ``4GiB``, ``4gb`` (binary units, k=1024)."""
    try:
        return _to_bytes(text.strip() if isinstance(text, str) else text)
    except ValueError as err:
        raise InvalidRequest(f"invalid size {_short(text)}: {err}") from None


def _plain(d: Decimal) -> str:
    """``Decimal`` as plain digits without exponent or trailing zeros (``1E+1`` -> ``10``)."""
    if d == 0:
        return "0"
    return format(d.normalize(), "f")


def format_size(n: int) -> str:
    """Human-readable size for tables (``1g``, ``1.5g``, ``512m``); exact multiples round-trip.

    The largest unit that shows the value exactly with at most two decimals wins; a value no
    unit shows exactly (``8123456789``) is rounded in the largest unit (``7.57g``).
    """
    if isinstance(n, bool) or not isinstance(n, (int, Decimal)):
        raise TypeError(f"format_size expects bytes as int, got {n!r}")
    if n < 0:
        raise ValueError(f"format_size expects bytes >= 0, got {n}")
    n = int(n)
    rounded: str | None = None
    with localcontext() as ctx:
        ctx.prec = 100
        for unit in ("p", "t", "g", "m", "k", ""):
            q = Decimal(n) / _UNITS[unit]
            if unit and q.quantize(_HUNDREDTH) < 1:
                continue
            if rounded is not None and q >= 10000:
                break  # too many digits to read; settle for the rounded larger unit
            if q == q.quantize(_HUNDREDTH):
                return f"{_plain(q)}{unit}"
            if rounded is None:
                rounded = f"{_plain(q.quantize(_HUNDREDTH))}{unit}"
    assert rounded is not None  # the byte unit is always exact
    return rounded


# ---------------------------------------------------------------------------- slots


def _decimal(value: Any) -> Decimal:
    """A finite ``Decimal`` from a number or numeric string; ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError("not a number")
    try:
        if isinstance(value, Decimal):
            d = value
        elif isinstance(value, int):
            d = Decimal(value)
        elif isinstance(value, float):
            d = Decimal(repr(value))  # 0.1 -> Decimal("0.1"), not its binary expansion
        elif isinstance(value, str):
            if value.startswith("-"):
                raise ValueError("negative")
            if _COUNT_RE.fullmatch(value) is None:
                raise ValueError("not a number")
            d = Decimal(value)
        else:
            raise ValueError("not a number")
    except (InvalidOperation, ArithmeticError):
        raise ValueError("not a number") from None
    if not d.is_finite():
        raise ValueError("not a number")
    return d


def _normalised(d: Decimal) -> Decimal:
    """Canonical value so ``str`` and JSON show ``1`` and ``0.5``, never ``1.00`` or ``1E+1``."""
    return Decimal(_plain(d))


def _slot_value(name: str, value: Any) -> Decimal:
    """Validate one slot value; ``ValueError`` carries the reason only."""
    if name == "mem":
        return Decimal(_to_bytes(value))
    hint = _SLOT_HINTS[name]
    try:
        d = _decimal(value)
    except ValueError as err:
        if str(err) == "negative":
            raise ValueError(f"{name} cannot be negative") from None
        raise ValueError(hint) from None
    if d < 0:
        raise ValueError(f"{name} cannot be negative")
    if d > _MAX_COUNT:
        raise ValueError(f"{name} is too large")
    if name == "cuda.device":
        if d != d.to_integral_value():
            raise ValueError(hint)
    elif d != d.quantize(_HUNDREDTH):
        raise ValueError(f"{name} has 0.01 precision")
    return _normalised(d)


def _slot_name(key: Any) -> str:
    """Check a slot name; unknown names list the known ones so typos are easy to fix."""
    name = key
    if name not in SLOT_NAMES:
        raise InvalidRequest(f"unknown resource slot {_short(key)} (known: {', '.join(SLOT_NAMES)})")
    return name


def _checked(name: str, value: Any, shown: str) -> Decimal:
    """``_slot_value`` with the error turned into a one-line :class:`InvalidRequest`."""
    try:
        return _slot_value(name, value)
    except ValueError as err:
        raise InvalidRequest(f"invalid resource {_short(shown)}: {err}") from None


def _requested(name: str, value: Any, shown: str) -> Decimal:
    """A requested slot value: valid, and for cpu and mem at least :data:`MIN_REQUEST`."""
    d = _checked(name, value, shown)
    least = MIN_REQUEST.get(name)
    if least is not None and d < least:
        text = format_size(int(least)) if name == "mem" else _plain(least)
        raise InvalidRequest(
            f"invalid resource {_short(shown)}: {name} must be at least {text} "
            "(leave it out for the default)"
        )
    return d


class ResourceSlots(Mapping[str, Decimal]):
    """An immutable amount of every slot (missing slots are 0): a request, a capacity, a usage.

    The constructor takes machine input (a mapping, e.g. from JSON) and allows every slot at
    once, since a node's capacity or usage can hold whole and fractional GPUs together.
    :meth:`parse` takes what people type and applies the rules of a single request.
    """

    __slots__ = ("_values",)
    _values: dict[str, Decimal]

    def __init__(self, slots: Mapping[str, Any] | None = None) -> None:
        values = dict.fromkeys(SLOT_NAMES, _ZERO)
        if isinstance(slots, ResourceSlots):
            values.update(slots._values)
        elif slots is not None:
            if not isinstance(slots, Mapping):
                raise InvalidRequest(
                    f"invalid resources {slots!r}: expected a mapping like "
                    "{'cpu': '1', 'mem': '1g'}"
                )
            for key, value in slots.items():
                name = _slot_name(key)
                values[name] = _checked(name, value, f"{key}={value}")
        object.__setattr__(self, "_values", values)

    @classmethod
    def _of(cls, values: Mapping[str, Decimal]) -> ResourceSlots:
        """Build from already-valid values (arithmetic results) without re-parsing."""
        obj = cls.__new__(cls)
        object.__setattr__(obj, "_values", {n: _normalised(values[n]) for n in SLOT_NAMES})
        return obj

    @classmethod
    def parse(cls, items: Iterable[str] | Mapping[str, Any] | str) -> ResourceSlots:
        """A user's request from ``["cpu=1", "mem=1g"]``, ``"cpu=1 mem=1g"`` or a mapping.

        Strict, no aliases: unknown names, repeated names, items without ``=``, an explicit
        ``cpu=0``/``mem=0``, and whole plus fractional GPUs together are all rejected.
        """
        if isinstance(items, Mapping):
            return cls.request(items)
        if isinstance(items, str):
            items = items.replace(",", " ").split()
        values: dict[str, Decimal] = {}
        for item in items:
            if not isinstance(item, str):
                raise InvalidRequest(f"invalid resource {item!r}: {_ITEM_HINT}")
            text = item.strip()
            key, sep, raw = text.partition("=")
            if not sep or not key.strip() or not raw.strip():
                raise InvalidRequest(f"invalid resource {_short(text)}: {_ITEM_HINT}")
            name = _slot_name(key.strip())
            if name in values:
                raise InvalidRequest(f"resource '{name}' is given twice (in {_short(text)})")
            values[name] = _requested(name, raw.strip(), text)
        return cls._of({**dict.fromkeys(SLOT_NAMES, _ZERO), **values}).check_request()

    @classmethod
    def request(cls, slots: Mapping[str, Any]) -> ResourceSlots:
        """A user's request from JSON (``{"cpu": "1", "mem": "1g"}``): the constructor's strict
        value forms plus the rules of a single request (minimums, one kind of GPU)."""
        if not isinstance(slots, Mapping):
            return cls(slots)  # raises the constructor's message
        values = dict.fromkeys(SLOT_NAMES, _ZERO)
        for key, value in slots.items():
            name = _slot_name(key)
            values[name] = _requested(name, value, f"{key}={value}")
        return cls._of(values).check_request()

    def check_request(self) -> ResourceSlots:
        """Return self if this is a valid single request (one kind of GPU), else raise."""
        if self._values["cuda.device"] > 0 and self._values["cuda.shares"] > 0:
            raise InvalidRequest(
                f"invalid resources 'cuda.device={_plain(self._values['cuda.device'])} "
                f"cuda.shares={_plain(self._values['cuda.shares'])}': ask for whole GPUs "
                "(cuda.device) or a GPU fraction (cuda.shares), not both"
            )
        return self

    # -- Mapping

    def __getitem__(self, key: str) -> Decimal:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(SLOT_NAMES)

    def __len__(self) -> int:
        return len(SLOT_NAMES)

    # -- immutability, identity

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ResourceSlots is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("ResourceSlots is immutable")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResourceSlots):
            return self._values == other._values
        if isinstance(other, Mapping):
            try:
                return self._values == ResourceSlots(other)._values
            except InvalidRequest:
                return False
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._values[n] for n in SLOT_NAMES))

    def __reduce__(self) -> tuple[Any, ...]:
        return (ResourceSlots, (self.to_json(),))

    def __copy__(self) -> ResourceSlots:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ResourceSlots:
        return self

    # -- arithmetic

    @staticmethod
    def _coerce(other: Any) -> ResourceSlots | None:
        if isinstance(other, ResourceSlots):
            return other
        if isinstance(other, Mapping):
            return ResourceSlots(other)
        return None

    def __add__(self, other: Mapping[str, Any]) -> ResourceSlots:
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        return ResourceSlots._of({n: self._values[n] + o._values[n] for n in SLOT_NAMES})

    def __radd__(self, other: Any) -> ResourceSlots:
        """Let ``sum(slots_list)`` work (it starts from ``0``)."""
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        return self.__add__(other)

    def __sub__(self, other: Mapping[str, Any]) -> ResourceSlots:
        """Difference that stops at 0: free capacity is never negative, even if oversubscribed."""
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        return ResourceSlots._of(
            {n: max(_ZERO, self._values[n] - o._values[n]) for n in SLOT_NAMES}
        )

    def fits_in(self, other: Mapping[str, Any]) -> bool:
        """True when every slot of self is <= the same slot of ``other``."""
        o = self._coerce(other)
        if o is None:
            raise TypeError(f"fits_in expects ResourceSlots, got {other!r}")
        return all(self._values[n] <= o._values[n] for n in SLOT_NAMES)

    @property
    def is_zero(self) -> bool:
        """True when no slot asks for anything (an empty request)."""
        return all(v == 0 for v in self._values.values())

    def with_defaults(self, defaults: Mapping[str, Any]) -> ResourceSlots:
        """Fill ``cpu`` and ``mem`` from ``defaults`` where they are 0; GPUs are never implied."""
        d = self._coerce(defaults)
        if d is None:
            raise TypeError(f"with_defaults expects ResourceSlots, got {defaults!r}")
        values = dict(self._values)
        for name in ("cpu", "mem"):
            if values[name] == 0:
                values[name] = d._values[name]
        return ResourceSlots._of(values)

    # -- text and JSON

    def to_json(self) -> dict[str, str]:
        """Decimal strings for every slot (``mem`` as whole bytes), exact across the wire."""
        return {n: _plain(self._values[n]) for n in SLOT_NAMES}

    def to_request_json(self) -> dict[str, str]:
        """Only the slots asked for (non-zero): what a request serialises to, so that it
        validates again as a request (a zero is refused there, a missing slot defaulted)."""
        return {n: v for n, v in self.to_json().items() if self._values[n] != 0}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResourceSlots:
        """Inverse of :meth:`to_json` (also accepts numbers and size strings)."""
        return cls(data)

    def __str__(self) -> str:
        parts = [
            f"cpu={_plain(self._values['cpu'])}",
            f"mem={format_size(int(self._values['mem']))}",
        ]
        parts += [f"{n}={_plain(self._values[n])}" for n in GPU_SLOT_NAMES if self._values[n] > 0]
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"<ResourceSlots {self}>"

    # -- pydantic

    @classmethod
    def _pydantic_validate(cls, value: Any) -> ResourceSlots:
        """Field input: an instance or a JSON object; typed ``k=v`` items go through :meth:`parse`
        in the front ends, so the API accepts exactly what its schema says."""
        try:
            if isinstance(value, ResourceSlots):
                return value.check_request()
            if isinstance(value, Mapping):
                return cls.request(value)
        except InvalidRequest as err:
            raise ValueError(err.message) from None
        raise ValueError(
            f"invalid resources {_short(value)}: expected an object like "
            '{"cpu": "1", "mem": "1g"}'
        )

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._pydantic_validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: v.to_request_json(), info_arg=False
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return slots_request_schema()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def slots_request_schema() -> dict[str, Any]:
    """JSON Schema of a request's slots, as strict as :meth:`ResourceSlots.request` allows."""

    def count(least: float, integer: bool = False) -> dict[str, Any]:
        number = {"type": "integer" if integer else "number", "minimum": least,
                  "maximum": int(_MAX_COUNT)}
        return {"anyOf": [number, {"type": "string", "pattern": COUNT_PATTERN}]}

    least_mem = int(MIN_REQUEST["mem"])
    return {
        "title": "SlotsRequest",
        "type": "object",
        "description": (
            "Requested slots; slots left out get the engine's defaults (GPUs: 0). cpu: cores, at "
            f"least {_plain(MIN_REQUEST['cpu'])}, 0.01 precision; mem: bytes or a size like 4g, at "
            f"least {format_size(least_mem)}; cuda.device: whole GPUs; cuda.shares: a GPU "
            "fraction, 0.01 precision. Whole and fractional GPUs cannot be mixed."
        ),
        "properties": {
            "cpu": count(float(MIN_REQUEST["cpu"])),
            "mem": {
                "anyOf": [
                    {"type": "integer", "minimum": least_mem, "maximum": _MAX_BYTES},
                    {"type": "string", "pattern": SIZE_PATTERN},
                ]
            },
            "cuda.device": count(0, integer=True),
            "cuda.shares": count(0),
        },
        "additionalProperties": False,
        "examples": [{"cpu": "1", "mem": "1g", "cuda.shares": "0.5"}],
    }
