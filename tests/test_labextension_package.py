"""The sidebar ships inside the wheel: after `pip install` of a built wheel JupyterLab lists it."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_a_built_wheel_installs_the_prebuilt_extension_where_jupyterlab_finds_it(tmp_path: Path) -> None:
    # The package build itself runs the (incremental) extension build: labextension/build.py.
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q",
                    "-w", str(tmp_path / "wheels")], check=True, timeout=900)
    (wheel,) = (tmp_path / "wheels").glob("jupyter_bai-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    share = [n for n in names if "/data/share/jupyter/labextensions/jupyter-bai/" in n]
    assert any(n.endswith("/jupyter-bai/package.json") for n in share), share
    assert any(n.endswith("/schemas/jupyter-bai/sidebar.json") for n in share), share

    # A separate environment: `pip install --prefix` from this one would uninstall our own copy.
    prefix = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(prefix / "bin" / "python"), "install",
                    "--no-deps", "-q", str(wheel)], check=True, timeout=300)
    installed = prefix / "share" / "jupyter" / "labextensions" / "jupyter-bai"
    meta = json.loads((installed / "package.json").read_text())
    assert (installed / meta["jupyterlab"]["_build"]["load"]).is_file()

    env = {**os.environ, "JUPYTER_PATH": str(prefix / "share" / "jupyter")}
    out = subprocess.run([str(BIN / "jupyter"), "labextension", "list"], env=env,
                         capture_output=True, text=True, timeout=120)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    # Listed under the prefix's labextensions folder, enabled and compatible.
    section = text.split(str(prefix / "share" / "jupyter" / "labextensions"), 1)[1].split("\n\n", 1)[0]
    assert re.search(r"jupyter-bai v\S+ enabled\s+OK", section), text
