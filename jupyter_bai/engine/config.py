"""Typed engine configuration.

``BaiApp``'s traitlets are the one place users configure things; they are
turned into this frozen object so the engine never reads untyped dicts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SandboxMode = Literal["auto", "bwrap", "none"]


@dataclass(frozen=True)
class EngineConfig:
    state_dir: Path
    storage_root: Path | None = None
    fake_gpus: tuple[dict[str, str], ...] = ()
    default_cpu: str = "1"
    default_mem: str = "1g"
    sandbox: SandboxMode = "auto"
    stop_grace: float = 5.0
    agent_start_timeout: float = 30.0
    checker_interval: float = 5.0
    use_mps: bool = True
    enforce_limits: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    max_upload_size: int = 16 << 30  # bytes one PUT of a vfolder file may carry
    # docker runtime: on/off, daemon URL ("" = DOCKER_HOST or the local socket), container
    # user (auto | image | UID[:GID]), extra binds every container gets, pull missing images.
    docker: bool = True
    docker_host: str = ""
    docker_user: str = "auto"
    docker_binds: tuple[str, ...] = ()
    docker_pull: bool = False
    # event stream: events a subscriber may fall behind before it is told to resync;
    # seconds between metrics samples (taken only while someone watches).
    event_buffer: int = 1000
    metrics_interval: float = 1.0
    # who sessions run as (auto: 1000:1000 under a root engine, else the engine's own ids;
    # or UID[:GID]), and the most processes one Docker session may have.
    session_user: str = "auto"
    session_pids_limit: int = 4096
    # Host binds (``SessionSpec.binds``) may only name directories under this one: the Jupyter
    # server's root_dir, which its users can already read and write. None: no binds at all.
    bind_root: Path | None = None
    # model services: the endpoint proxy's port on 127.0.0.1 (0: a free one, picked once and
    # kept in the store), and the most seconds a route leaving on scale-down waits for the
    # requests it still serves (it stops as soon as none is in flight).
    service_port: int = 0
    service_drain: float = 120.0

    @property
    def vfolder_root(self) -> Path:
        return self.storage_root or (self.state_dir / "vfolders")

    @property
    def sessions_dir(self) -> Path:
        return self.state_dir / "sessions"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "engine.db"
