"""Backend.AI's vfolder mount grammar. Pure; no I/O.

``NAME``, ``NAME:/path``, ``NAME:/path:ro`` or ``type=bind,source=NAME,target=/path,perm=ro``:
one parser, so the CLI, magics, pipelines and the REST API agree on what a mount means and
reject targets that would hide the system or the session's own layout.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from jupyter_bai.spec.errors import InvalidRequest
from jupyter_bai.spec.pydantic_support import validated_by

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import CoreSchema

__all__ = [
    "VFOLDER_NAME_RE",
    "MAX_MOUNTS",
    "MAX_TARGET",
    "MAX_TARGET_PART",
    "DEFAULT_MOUNT_ROOT",
    "RESERVED_MOUNT_TARGETS",
    "MountPerm",
    "MountSpec",
    "parse_mount",
    "validate_mounts",
]

VFOLDER_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Checked with ``fullmatch``: ``$`` alone would let a trailing newline through."""
_VFOLDER_NAME = re.compile(VFOLDER_NAME_RE)

MAX_MOUNTS = 64
"""Most mounts in one session."""
MAX_TARGET = 4096
"""Longest mount target (Linux ``PATH_MAX``)."""
MAX_TARGET_PART = 255
"""Longest component of a mount target (Linux ``NAME_MAX``)."""
MOUNT_TEXT_MAX = 64 + MAX_TARGET + 64
"""Longest mount string: a name, a target and the options around them."""

DEFAULT_MOUNT_ROOT = "/home/work"
"""The session's working directory; ``NAME`` alone mounts at ``/home/work/NAME``."""

RESERVED_MOUNT_TARGETS: tuple[str, ...] = (
    "/proc",
    "/sys",
    "/dev",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/etc",
    "/run",
    "/var/run",
    "/pipeline",
)
"""System paths and ``/pipeline`` (inputs/outputs of pipeline tasks): no mount on, in or above."""

MountPerm = Literal["rw", "ro"]

_FORMS = "expected NAME, NAME:ro, NAME:/path, NAME:/path:ro or type=bind,source=NAME,target=/path,perm=ro"
_NAME_RULE = "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
_BAD_TARGET_CHARS = re.compile(r"[\s:,=\x00-\x1f\x7f-\x9f]")
_LONG_KEYS: dict[str, str] = {
    "type": "type",
    "source": "source",
    "src": "source",
    "target": "target",
    "dst": "target",
    "destination": "target",
    "perm": "perm",
    "permission": "perm",
    "readonly": "readonly",
    "ro": "readonly",
}
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def _under(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or inside it (component-wise, so /datax is not in /data)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def _source_problem(source: Any) -> str | None:
    if not isinstance(source, str) or not _VFOLDER_NAME.fullmatch(source):
        return f"{_short(source)} is not a valid vfolder name ({_NAME_RULE})"
    return None


def _target_problem(target: Any) -> str | None:
    """Why ``target`` can't be a mount point, or ``None``; expects trailing '/' already gone."""
    if not isinstance(target, str) or not target:
        return "expected an absolute target path like /home/work/data"
    if not target.startswith("/"):
        return f"target {_short(target)} is not an absolute path (like /home/work/data)"
    if len(target) > MAX_TARGET:
        return f"target is longer than {MAX_TARGET} characters"
    if any(len(part) > MAX_TARGET_PART for part in target.split("/")):
        return f"target {_short(target)} has a component longer than {MAX_TARGET_PART} characters"
    if _BAD_TARGET_CHARS.search(target):
        return f"target {_short(target)} may not contain spaces, control characters, ':', ',' or '='"
    if "//" in target or posixpath.normpath(target) != target:
        return f"target {_short(target)} is not a normalised path (no '.', '..' or '//')"
    if target == "/":
        return "target '/' would hide the whole file system"
    for reserved in RESERVED_MOUNT_TARGETS:
        if _under(target, reserved):
            return f"target {_short(target)} is under {reserved}, a reserved path"
        if _under(reserved, target):
            return f"target {_short(target)} would hide {reserved}, a reserved path"
    if target == DEFAULT_MOUNT_ROOT:
        return (
            f"target {_short(target)} is the session's home itself; mount inside it, "
            f"like {DEFAULT_MOUNT_ROOT}/NAME"
        )
    if _under(DEFAULT_MOUNT_ROOT, target):
        return f"target {_short(target)} would hide the session's home {DEFAULT_MOUNT_ROOT}"
    return None


def _short(value: Any) -> str:
    """``repr`` cut to 120 characters, so a huge or multi-line input stays one readable line."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _perm_problem(perm: Any) -> str | None:
    if perm is not None and perm not in ("ro", "rw"):
        return f"permission '{perm}' must be ro or rw"
    return None


def _clean_target(target: Any) -> Any:
    """Drop trailing slashes (``/data/`` means ``/data``); everything else is checked as given."""
    if isinstance(target, str) and len(target) > 1:
        stripped = target.rstrip("/")
        return stripped or "/"
    return target


def _default_target(source: str) -> str:
    return f"{DEFAULT_MOUNT_ROOT}/{source}"


@dataclass(frozen=True)
class MountSpec:
    """One vfolder mounted into a session; ``perm=None`` keeps the folder's own permission.

    Constructing one validates it, so every ``MountSpec`` in the system is a valid mount.
    """

    source: str
    target: str
    perm: MountPerm | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", _clean_target(self.target))
        problem = (
            _source_problem(self.source) or _target_problem(self.target) or _perm_problem(self.perm)
        )
        if problem:
            raise InvalidRequest(f"invalid mount {_short(self._text())}: {problem}")

    def _text(self) -> str:
        parts = [str(self.source), str(self.target)]
        if self.perm is not None:
            parts.append(str(self.perm))
        return ":".join(parts)

    def __str__(self) -> str:
        """Canonical short form, ``NAME:/target`` or ``NAME:/target:ro``."""
        return self._text()

    def to_json(self) -> dict[str, str | None]:
        return {"source": self.source, "target": self.target, "perm": self.perm}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MountSpec:
        """Inverse of :meth:`to_json`; ``target`` and ``perm`` may be missing."""
        return _from_mapping(data)

    # -- pydantic: a field of type MountSpec accepts the grammar, a dict or an instance

    @classmethod
    def _pydantic_validate(cls, value: Any) -> MountSpec:
        try:
            return parse_mount(value)
        except InvalidRequest as err:
            raise ValueError(err.message) from None

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return validated_by(cls._pydantic_validate)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "title": "MountSpec",
            "description": "`NAME`, `NAME:/path`, `NAME:/path:ro`, "
            "`type=bind,source=NAME,target=/path,perm=ro`, or an object. Targets are absolute, "
            f"normalised, at most {MAX_TARGET} characters ({MAX_TARGET_PART} per component), "
            "without spaces, control characters, ':', ',' or '=', and not on, in or above "
            f"{', '.join(RESERVED_MOUNT_TARGETS)} or {DEFAULT_MOUNT_ROOT} itself.",
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": MOUNT_TEXT_MAX,
                 "examples": ["data:ro"]},
                {
                    "type": "object",
                    "properties": {
                        "source": {"type": "string", "pattern": VFOLDER_NAME_RE},
                        "target": {"type": ["string", "null"], "maxLength": MAX_TARGET},
                        "perm": {"anyOf": [{"enum": ["ro", "rw"]}, {"type": "null"}]},
                    },
                    "required": ["source"],
                    "additionalProperties": False,
                },
            ],
        }


def _build(text: str, source: Any, target: Any, perm: Any) -> MountSpec:
    """Validate the parts and build, naming the text the user gave in any error."""
    target = _clean_target(target)
    problem = _source_problem(source) or _target_problem(target) or _perm_problem(perm)
    if problem:
        raise InvalidRequest(f"invalid mount {_short(text)}: {problem}")
    return MountSpec(source, target, perm)


def _from_mapping(data: Mapping[str, Any]) -> MountSpec:
    try:
        text = json.dumps(dict(data), default=str)
    except (TypeError, ValueError):
        text = repr(data)
    unknown = [k for k in data if k not in ("source", "target", "perm")]
    if unknown:
        raise InvalidRequest(
            f"invalid mount {_short(text)}: unknown key '{unknown[0]}' (known: source, target, perm)"
        )
    if "source" not in data:
        raise InvalidRequest(f"invalid mount {_short(text)}: missing 'source' (the vfolder name)")
    source = data["source"]
    target = data.get("target")
    if target is None and isinstance(source, str):
        target = _default_target(source)
    return _build(text, source, target, data.get("perm"))  # JSON: exactly "ro" or "rw"


def _from_long_form(text: str) -> MountSpec:
    fields: dict[str, str] = {}
    readonly: bool | None = None
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise InvalidRequest(f"invalid mount {_short(text)}: empty option ({_FORMS})")
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        canon = _LONG_KEYS.get(key)
        if canon is None:
            raise InvalidRequest(
                f"invalid mount {_short(text)}: unknown option '{key}' "
                "(known: type, source, target, perm, readonly)"
            )
        if canon in fields or (canon == "readonly" and readonly is not None):
            raise InvalidRequest(f"invalid mount {_short(text)}: option '{canon}' is given twice")
        if canon == "readonly":
            if not sep or value.lower() in _TRUE:
                readonly = True
            elif value.lower() in _FALSE:
                readonly = False
            else:
                raise InvalidRequest(
                    f"invalid mount {_short(text)}: {key}='{value}' must be true or false"
                )
            continue
        if not sep or not value:
            raise InvalidRequest(f"invalid mount {_short(text)}: option '{key}' needs a value")
        fields[canon] = value
    kind = fields.get("type", "bind")
    if kind != "bind":
        raise InvalidRequest(f"invalid mount {_short(text)}: only type=bind is supported, not '{kind}'")
    if "source" not in fields:
        raise InvalidRequest(f"invalid mount {_short(text)}: missing source=NAME")
    perm: str | None = fields.get("perm")
    if perm is not None:
        perm = perm.lower()
    if readonly is not None:
        if perm is not None:
            raise InvalidRequest(f"invalid mount {_short(text)}: give perm or readonly, not both")
        perm = "ro" if readonly else "rw"
    source = fields["source"]
    target = fields.get("target") or _default_target(source)
    return _build(text, source, target, perm)


def _from_short_form(text: str) -> MountSpec:
    parts = text.split(":")
    if len(parts) > 3 or not parts[0]:
        raise InvalidRequest(f"invalid mount {_short(text)}: {_FORMS}")
    source = parts[0]
    if len(parts) == 1:
        return _build(text, source, _default_target(source), None)
    target = parts[1]
    if target.lower() in ("ro", "rw"):
        if len(parts) == 3:
            raise InvalidRequest(
                f"invalid mount {_short(text)}: give the target before the permission, "
                f"like {source}:{_default_target(source)}:{target.lower()}"
            )
        # `data:ro` (the quickstart's form): default target, explicit permission.
        return _build(text, source, _default_target(source), target.lower())
    perm = parts[2].lower() if len(parts) == 3 else None
    return _build(text, source, target, perm)


def parse_mount(text: str | Mapping[str, Any] | MountSpec) -> MountSpec:
    """A :class:`MountSpec` from the mount grammar, a JSON object, or an existing spec."""
    if isinstance(text, MountSpec):
        return text
    if isinstance(text, Mapping):
        return _from_mapping(text)
    if not isinstance(text, str):
        raise InvalidRequest(f"invalid mount {_short(text)}: {_FORMS}")
    if len(text) > MOUNT_TEXT_MAX:
        raise InvalidRequest(f"invalid mount {_short(text)}: longer than {MOUNT_TEXT_MAX} characters")
    stripped = text.strip()
    if not stripped:
        raise InvalidRequest(f"invalid mount {_short(stripped)}: {_FORMS}")
    if "=" in stripped:
        return _from_long_form(stripped)
    return _from_short_form(stripped)


def validate_mounts(
    mounts: Iterable[MountSpec | str | Mapping[str, Any]],
) -> list[MountSpec]:
    """Check a session's mounts together: each folder once, no target on or in another."""
    specs = [parse_mount(m) for m in mounts]
    seen: set[str] = set()
    for spec in specs:
        if spec.source in seen:
            raise InvalidRequest(f"vfolder '{spec.source}' is mounted twice")
        seen.add(spec.source)
        if spec.target == DEFAULT_MOUNT_ROOT:  # also refused per mount; kept for clarity
            raise InvalidRequest(
                f"invalid mount '{spec}': target '{DEFAULT_MOUNT_ROOT}' is the session's home "
                f"itself; mount inside it, like {DEFAULT_MOUNT_ROOT}/NAME"
            )
    for i, a in enumerate(specs):
        for b in specs[i + 1 :]:
            if a.target == b.target:
                raise InvalidRequest(f"mounts '{a}' and '{b}' use the same target {a.target}")
            if _under(b.target, a.target) or _under(a.target, b.target):
                outer, inner = (a, b) if _under(b.target, a.target) else (b, a)
                raise InvalidRequest(
                    f"mount '{inner}' is nested inside mount '{outer}': targets may not overlap"
                )
    return specs
