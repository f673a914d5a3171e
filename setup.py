"""Metadata lives in setup.cfg; this adds one build step: the prebuilt JupyterLab extension.

``build_py`` builds ``labextension/`` (incrementally, see ``labextension/build.py``) and installs
its output as ``share/jupyter/labextensions/jupyter-bai/``, so ``pip install`` of the package is
all a user needs for the sidebar.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _labextension():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bai_labextension_build", HERE / "labextension" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithLabextension(build_py):
    def run(self) -> None:
        labext = _labextension()
        if (HERE / "labextension" / "src").is_dir():
            labext.build()
        elif not labext.up_to_date() and not (labext.OUT / "package.json").is_file():
            raise SystemExit("no labextension/ sources and no prebuilt extension to package")
        self.distribution.data_files = [*(self.distribution.data_files or []), *labext.data_files()]
        super().run()


setup(cmdclass={"build_py": BuildPyWithLabextension})
