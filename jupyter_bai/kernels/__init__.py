"""Jupyter kernels that run inside compute sessions.

``provisioner`` launches them, ``specs`` makes their kernelspecs (also the client's way:
``install_kernelspec``/``list_kernelspecs``/``remove_kernelspec``), ``cli`` is
``jupyter bai kernelspec``, ``server`` is what the server extension does for them.
Imported lazily: ``jupyter bai --help`` should not pay for jupyter_client.
"""
from __future__ import annotations

from typing import Any

__all__ = ["install_kernelspec", "list_kernelspecs", "remove_kernelspec"]
_SPECS = {"install_kernelspec": "install", "list_kernelspecs": "list_specs",
          "remove_kernelspec": "remove"}


def __getattr__(name: str) -> Any:
    if name in _SPECS:
        from jupyter_bai.kernels import specs

        return getattr(specs, _SPECS[name])
    raise AttributeError(name)
