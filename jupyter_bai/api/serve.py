"""``jupyter bai serve``: a headless engine on a bare Jupyter server."""
from __future__ import annotations

import secrets

from traitlets.config import Config


def serve(
    state_dir: str | None,
    port: int,
    ip: str = "127.0.0.1",
    token: str | None = None,
    extra_argv: list[str] | None = None,
) -> None:
    """Run a Jupyter server with only the jupyter_bai extension until interrupted.

    ``extra_argv`` takes traitlets options such as ``--BaiApp.stop_grace=1``.
    """
    from jupyter_server.serverapp import ServerApp

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
    app.initialize(argv=list(extra_argv or []), find_extensions=False)
    app.start()
