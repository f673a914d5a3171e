"""``jupyter bai serve`` takes its token from the environment or a 0600 file, never from argv."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from engine_proc import EngineProcess, free_port
from jupyter_bai.api.serve import check_argv, read_token_file, resolve_token
from jupyter_bai.cli import run
from jupyter_bai.spec.errors import InvalidRequest


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _status(url: str, token: str) -> int:
    return httpx.get(f"{url}/bai/api/v1/resources",
                     headers={"Authorization": f"token {token}"}, timeout=5).status_code


def test_token_is_not_on_the_test_engines_command_line(engine: EngineProcess) -> None:
    assert engine.proc is not None
    assert engine.token not in _cmdline(engine.proc.pid)
    environ = Path(f"/proc/{engine.proc.pid}/environ").read_bytes().split(b"\0")
    assert f"JUPYTER_BAI_TOKEN={engine.token}".encode() in environ
    assert _status(engine.url, engine.token) == 200
    assert _status(engine.url, "wrong-" + engine.token) == 403


def _cli_serve(tmp_path: Path, *args: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from jupyter_bai.cli import main; main()", "serve",
         "--port", str(port), "--state-dir", str(tmp_path / "state"), *args],
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def _wait_up(proc: subprocess.Popen[bytes], url: str, token: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "serve exited"
        try:
            if _status(url, token) == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not answer in 60 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_cli_serve_reads_a_0600_token_file(tmp_path: Path, bwrap: str) -> None:
    token = "file-token-" + os.urandom(8).hex()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    env = {k: "" for k in ("JUPYTER_BAI_TOKEN", "JUPYTER_TOKEN")}
    proc, url = _cli_serve(tmp_path, "--token-file", str(token_file), env=env)
    try:
        _wait_up(proc, url, token)
        assert token not in _cmdline(proc.pid)
        assert _status(url, "other") == 403
    finally:
        _stop(proc)


def test_cli_serve_takes_the_token_from_the_environment(tmp_path: Path, bwrap: str) -> None:
    token = "env-token-" + os.urandom(8).hex()
    proc, url = _cli_serve(tmp_path, env={"JUPYTER_BAI_TOKEN": token})
    try:
        _wait_up(proc, url, token)
        assert token not in _cmdline(proc.pid)
    finally:
        _stop(proc)


def _cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    return run(argv, stderr=err), err.getvalue()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_token_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("secret")
    token_file.chmod(mode)
    code, err = _cli(["serve", "--token-file", str(token_file), "--port", str(free_port())])
    assert code == 1
    assert err == (
        f"error: token file {token_file} is readable by group or others (mode {mode:04o}); "
        f"run 'chmod 600 {token_file}' so only you can read it\n"
    )


def test_token_on_the_command_line_is_refused() -> None:
    code, err = _cli(["serve", "--token", "abc", "--port", str(free_port())])
    assert code == 1
    assert err.startswith("error: --token would show the token to every user of this machine")
    assert "JUPYTER_BAI_TOKEN" in err and "--token-file" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "arg", ["--IdentityProvider.token=abc", "--ServerApp.token=abc", "--ServerApp.password=x"]
)
def test_traitlets_secrets_on_the_command_line_are_refused(arg: str) -> None:
    with pytest.raises(InvalidRequest, match="would show the secret"):
        check_argv([arg])
    check_argv(["--BaiApp.stop_grace=1"])


def test_token_file_problems_are_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(InvalidRequest, match="is empty"):
        read_token_file(empty)
    with pytest.raises(InvalidRequest, match="cannot read token file"):
        read_token_file(tmp_path / "missing")
    link = tmp_path / "link"
    link.symlink_to(empty)
    with pytest.raises(InvalidRequest, match="cannot read token file"):
        read_token_file(link)


def test_environment_order() -> None:
    assert resolve_token(environ={"JUPYTER_BAI_TOKEN": "a", "JUPYTER_TOKEN": "b"}) == "a"
    assert resolve_token(environ={"JUPYTER_TOKEN": "b"}) == "b"
    assert resolve_token(environ={}) is None
