"""``jupyter bai serve``: a headless engine on a bare Jupyter server.

The API token never travels on the command line, where ``ps`` and ``/proc/<pid>/cmdline`` show
it to every user of the machine: it comes from the environment or from a file only its owner
can read, else a random one is made and written to the (0600) connection file.
"""
from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from traitlets.config import Config

from ..spec.errors import InvalidRequest

TOKEN_ENV: tuple[str, ...] = ("JUPYTER_BAI_TOKEN", "JUPYTER_TOKEN")
"""Environment variables ``serve`` takes its token from, first set wins."""

_ARGV_SECRETS = ("token", "password")


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token in ``path``, refused unless only its owner can read it (mode 0600 or 0400)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise InvalidRequest(f"cannot read token file {path}: {err.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InvalidRequest(f"token file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise InvalidRequest(
                f"token file {path} is readable by group or others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); run 'chmod 600 {path}' so only you can read it"
            )
        raw = f.read(4097)
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidRequest(f"token file {path} is not UTF-8 text") from None
    if not token:
        raise InvalidRequest(f"token file {path} is empty")
    if len(token) > 4096 or any(c.isspace() or not c.isprintable() for c in token):
        raise InvalidRequest(f"token file {path} must hold one token on one line")
    return token


def resolve_token(
    token_file: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The token from ``--token-file``, else from :data:`TOKEN_ENV`; ``None`` makes a random one."""
    if token_file is not None:
        return read_token_file(token_file)
    env = os.environ if environ is None else environ
    for name in TOKEN_ENV:
        if env.get(name):
            return env[name]
    return None


def check_argv(argv: list[str]) -> None:
    """Refuse traitlets options that would put a secret on the command line."""
    for arg in argv:
        option = arg.lstrip("-").split("=", 1)[0].lower()
        if option.rsplit(".", 1)[-1] in _ARGV_SECRETS:
            raise InvalidRequest(
                f"'{option}' on the command line would show the secret to every user of the "
                f"machine (ps); set {TOKEN_ENV[0]} or use --token-file FILE (mode 0600)"
            )


def serve(
    state_dir: str | None,
    port: int,
    ip: str = "127.0.0.1",
    token: str | None = None,
    extra_argv: list[str] | None = None,
    token_file: str | Path | None = None,
) -> None:
    """Run a Jupyter server with only the jupyter_bai extension until interrupted.

    ``token`` is for Python callers; the command line passes ``token_file`` or the environment.
    ``extra_argv`` takes traitlets options such as ``--BaiApp.stop_grace=1``.
    """
    from jupyter_server.serverapp import ServerApp

    argv = list(extra_argv or [])
    check_argv(argv)
    if token is None:
        token = resolve_token(token_file)
    config = Config()
    config.ServerApp.jpserver_extensions = {"jupyter_bai": True}
    config.ServerApp.open_browser = False
    config.ServerApp.ip = ip
    config.ServerApp.port = port
    config.ServerApp.port_retries = 0
    config.ServerApp.allow_root = True  # CI and containers run as root
    config.IdentityProvider.token = token or secrets.token_hex(24)
    if state_dir:
        config.BaiApp.state_dir = state_dir
    app = ServerApp.instance(config=config)
    app.initialize(argv=argv, find_extensions=False)
    app.start()
