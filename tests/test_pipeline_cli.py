"""``jupyter bai pipeline ...`` in a terminal: JSON, exit status, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from engine_proc import EngineProcess


def bai(engine_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "jupyter_bai.cli", *args], text=True,
                          capture_output=True, env={**os.environ, **engine_env}, timeout=180)


def test_validate_exits_1_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "cycle.yaml"
    bad.write_text("tasks: [{name: a, command: x, depends_on: [b]}, "
                   "{name: b, command: x, depends_on: [a]}]\n")
    out = bai({}, "pipeline", "validate", str(bad))
    assert out.returncode == 1
    assert out.stderr.startswith("error: ") and "dependency cycle: " in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    good = tmp_path / "ok.yaml"
    good.write_text("tasks: [{name: a, command: x}, {name: b, command: x, depends_on: [a]}]\n")
    out = bai({}, "pipeline", "validate", "--json", str(good))
    assert out.returncode == 0 and json.loads(out.stdout)["order"] == ["a", "b"]
    code = tmp_path / "p.py"  # a Python definition is a pipeline file too
    code.write_text("from jupyter_bai.pipelines import Pipeline\np = Pipeline('py')\n"
                    "a = p.task('a', command='x')\np.task('b', command='x', depends_on=[a])\n")
    out = bai({}, "pipeline", "validate", "--json", str(code))
    assert out.returncode == 0 and json.loads(out.stdout)["order"] == ["a", "b"], out.stderr


def test_run_wait_json_and_the_other_verbs(engine: EngineProcess, engine_env: dict[str, str],
                                           tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    small = {"cpu": "0.25", "mem": "128m"}
    path.write_text(yaml.safe_dump({"name": "cli-demo", "tasks": [
        {"name": "hello", "command": "echo hello-from-task", "resources": small},
        {"name": "boom", "command": "exit 7", "resources": small, "depends_on": ["hello"]},
    ]}))
    out = bai(engine_env, "pipeline", "run", str(path), "--wait", "--json")
    assert out.returncode == 1, out.stderr
    job = json.loads(out.stdout)
    assert job["status"] == "FAILED"
    assert [(t["name"], t["status"], t["attempts"], t["exit_code"]) for t in job["tasks"]] == [
        ("hello", "SUCCEEDED", 1, 0), ("boom", "FAILED", 1, 7)]
    logs = bai(engine_env, "pipeline", "logs", job["id"], "hello")
    assert logs.returncode == 0 and logs.stdout == "hello-from-task\n"
    listing = bai(engine_env, "pipeline", "jobs")
    assert job["id"] in listing.stdout and "FAILED" in listing.stdout
    info = bai(engine_env, "pipeline", "info", job["id"])
    assert "boom" in info.stdout and "exit code" in info.stdout.lower()
    missing = bai(engine_env, "pipeline", "info", "nope")
    assert missing.returncode == 1 and "not found" in missing.stderr
    cancel = bai(engine_env, "pipeline", "cancel", job["id"])
    assert cancel.returncode == 1 and "already FAILED" in cancel.stderr
