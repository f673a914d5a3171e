"""A private engine list and Jupyter config dir for a test, so no user's engines leak in."""
from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_bai.client import engines


def engine_env(cfg: Path) -> dict[str, str]:
    """The variables that point the engine list (``bai-engines.json``) and Jupyter's config
    at ``cfg``: for a child process's environment."""
    return {engines.ENV_STORE: str(cfg / "bai-engines.json"), "JUPYTER_CONFIG_DIR": str(cfg),
            "JUPYTER_CONFIG_PATH": str(cfg)}


def without_engine_choice(env: dict[str, str]) -> dict[str, str]:
    """``env`` less the variables that would pick an engine over the stored default."""
    return {k: v for k, v in env.items() if k not in (engines.ENV_ENGINE, *engines.BACKEND_ENV)}


def isolate_engines(mp: pytest.MonkeyPatch, cfg: Path, **extra: str) -> dict[str, str]:
    """Point this process at ``cfg`` (plus ``extra`` variables) with no engine chosen by the
    environment or earlier in the process; returns the variables set, for child processes."""
    env = {**engine_env(cfg), **extra}
    for key, value in env.items():
        mp.setenv(key, value)
    for var in (engines.ENV_ENGINE, *engines.BACKEND_ENV):
        mp.delenv(var, raising=False)
    mp.setattr(engines, "_process_choice", None)
    return env
