"""Pure data of jupyter-bai: what users may ask for and the errors they can cause.

No I/O here, so the CLI, the magics, the REST API and the engine share one set of rules.
"""

from __future__ import annotations

from jupyter_bai.spec.errors import (
    BaiError,
    Conflict,
    InsufficientResources,
    InvalidRequest,
    InvalidState,
    NotFound,
    QuotaExceeded,
    RuntimeUnavailable,
)
from jupyter_bai.spec.mounts import (
    DEFAULT_MOUNT_ROOT,
    RESERVED_MOUNT_TARGETS,
    VFOLDER_NAME_RE,
    MountPerm,
    MountSpec,
    parse_mount,
    validate_mounts,
)
from jupyter_bai.spec.resources import (
    GPU_SLOT_NAMES,
    SLOT_NAMES,
    ResourceSlots,
    format_size,
    parse_size,
)
from jupyter_bai.spec.session import (
    ALLOWED_TRANSITIONS,
    ENV_NAME_RE,
    RESERVED_ENV_NAMES,
    RESERVED_ENV_PREFIXES,
    SESSION_NAME_RE,
    SessionResult,
    SessionSpec,
    SessionStatus,
    SessionType,
    can_transition,
    parse_env,
    spec_error,
)

__all__ = [
    "BaiError",
    "Conflict",
    "InsufficientResources",
    "InvalidRequest",
    "InvalidState",
    "NotFound",
    "QuotaExceeded",
    "RuntimeUnavailable",
    "DEFAULT_MOUNT_ROOT",
    "RESERVED_MOUNT_TARGETS",
    "VFOLDER_NAME_RE",
    "MountPerm",
    "MountSpec",
    "parse_mount",
    "validate_mounts",
    "GPU_SLOT_NAMES",
    "SLOT_NAMES",
    "ResourceSlots",
    "format_size",
    "parse_size",
    "ALLOWED_TRANSITIONS",
    "ENV_NAME_RE",
    "RESERVED_ENV_NAMES",
    "RESERVED_ENV_PREFIXES",
    "SESSION_NAME_RE",
    "SessionResult",
    "SessionSpec",
    "SessionStatus",
    "SessionType",
    "can_transition",
    "parse_env",
    "spec_error",
]
