"""Let the spec's value types (ResourceSlots, MountSpec) be pydantic field types."""
from __future__ import annotations

from typing import Any, Callable

from pydantic_core import CoreSchema, core_schema


def validated_by(validate: Callable[[Any], Any]) -> CoreSchema:
    """Accept whatever ``validate`` accepts; serialise with the value's ``to_json()``."""
    return core_schema.no_info_plain_validator_function(
        validate,
        serialization=core_schema.plain_serializer_function_ser_schema(
            lambda v: v.to_json(), info_arg=False
        ),
    )
