"""Jupyter kernels that run inside compute sessions.

``provisioner`` launches them, ``specs`` makes their kernelspecs (also the client's way:
``install_kernelspec``/``list_kernelspecs``/``remove_kernelspec``), ``cli`` is
``jupyter bai kernelspec``, ``server`` is what the server extension does for them.
"""
from __future__ import annotations

from jupyter_bai.kernels.specs import install as install_kernelspec
from jupyter_bai.kernels.specs import list_specs as list_kernelspecs
from jupyter_bai.kernels.specs import remove as remove_kernelspec

__all__ = ["install_kernelspec", "list_kernelspecs", "remove_kernelspec"]
