"""The in-session agent (engine/runtimes/agent.py), driven through agent_client.

The agent runs as a real subprocess under ``python -I`` (no project on its
path, no site dir): it must be a self-contained stdlib-only file.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from jupyter_bai.engine.runtimes import agent_client
from jupyter_bai.engine.runtimes.agent_client import (
    AgentUnavailable,
    agent_call,
    agent_request,
    wait_ready,
)

AGENT = Path(agent_client.__file__).with_name("agent.py")
# The agent runs under whatever python3 an image has (3.8+); point this at
# another interpreter to check it there.
AGENT_PYTHON = os.environ.get("BAI_AGENT_TEST_PYTHON") or sys.executable

pytestmark = pytest.mark.timeout(60)


class AgentProc:
    def __init__(self, root: Path, proc: subprocess.Popen, sock: str, log: Path) -> None:
        self.root = root
        self.proc = proc
        self.sock = sock
        self.log = log

    def call(self, request: dict, timeout: float = 15.0) -> list[dict]:
        return asyncio.run(agent_call(self.sock, request, timeout=timeout))

    def run(self, code: str, timeout: float = 15.0) -> list[dict]:
        return self.call({"op": "run", "code": code}, timeout=timeout)

    def exec(self, command, timeout: float = 15.0, **extra) -> list[dict]:
        return self.call({"op": "exec", "command": command, **extra}, timeout=timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_agent(root: Path, *extra: str) -> AgentProc:
    sock = str(root / "run" / "agent.sock")
    log = root / "agent.log"
    work = root / "work"
    work.mkdir(exist_ok=True)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [AGENT_PYTHON, "-I", str(AGENT), "--socket", sock, *extra],
            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work)
    agent = AgentProc(root, proc, sock, log)
    try:
        asyncio.run(wait_ready(sock, 15))
    except AgentUnavailable:
        proc.kill()
        raise AssertionError("agent did not start:\n" + agent.log_text())
    return agent


def stop_agent(agent: AgentProc) -> None:
    if agent.proc.poll() is None:
        agent.proc.terminate()
        try:
            agent.proc.wait(5)
        except subprocess.TimeoutExpired:
            agent.proc.kill()
            agent.proc.wait()


@pytest.fixture
def root():
    # AF_UNIX paths are limited to ~107 bytes: keep them short.
    path = Path(tempfile.mkdtemp(prefix="bai-agent-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent(root):
    a = start_agent(root)
    yield a
    stop_agent(a)


def done_of(msgs: list[dict]) -> dict:
    assert msgs, "no messages"
    assert msgs[-1]["type"] == "done", msgs
    assert sum(1 for m in msgs if m["type"] == "done") == 1, msgs
    return msgs[-1]


def text_of(msgs: list[dict], name: str = "stdout") -> str:
    return "".join(m["text"] for m in msgs if m["type"] == "stream" and m["name"] == name)


def result_of(msgs: list[dict]):
    results = [m["text"] for m in msgs if m["type"] == "result"]
    assert len(results) <= 1, msgs
    return results[0] if results else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of ours would still answer; the agent reaps its children
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(pred, timeout: float = 5.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


# ---------------------------------------------------------------- basics


def test_ping_socket_mode_and_log(agent):
    (pong,) = agent.call({"op": "ping"})
    assert pong["type"] == "pong"
    assert pong["pid"] == agent.proc.pid
    expected = subprocess.run(
        [AGENT_PYTHON, "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True).stdout.strip()
    assert pong["python"] == expected
    assert stat.S_IMODE(os.stat(agent.sock).st_mode) == 0o600
    assert "agent ready\n" in agent.log_text()


def test_variables_persist_across_runs(agent):
    assert done_of(agent.run("x = 41\ndef inc(v):\n    return v + 1\n")) == {
        "type": "done", "status": "ok"}
    msgs = agent.run("inc(x)")
    assert result_of(msgs) == "42"
    assert done_of(msgs)["status"] == "ok"
    assert result_of(agent.run("_ * 2")) == "84"
    assert result_of(agent.run("__name__")) == "'__main__'"
    # classes defined in cells pickle by reference to __main__
    msgs = agent.run("import pickle\nclass P:\n    pass\n"
                     "type(pickle.loads(pickle.dumps(P()))).__name__")
    assert result_of(msgs) == "'P'", msgs


def test_result_rules(agent):
    assert result_of(agent.run("None")) is None
    assert result_of(agent.run("y = 3")) is None
    assert result_of(agent.run("y * 2;")) is None  # IPython: ';' suppresses display
    msgs = agent.run("print('side')\n[y,\n y + 1]")
    assert text_of(msgs) == "side\n"
    assert result_of(msgs) == "[3, 4]"
    assert msgs.index(next(m for m in msgs if m["type"] == "result")) == len(msgs) - 2
    assert result_of(agent.run("'é' * 2")) == "'éé'"
    # top-level await, as in IPython
    msgs = agent.run("import asyncio\nawait asyncio.sleep(0.01)\n7")
    assert result_of(msgs) == "7", msgs


def test_streamed_output_arrives_before_cell_finishes(agent):
    code = "import time\nprint('first')\ntime.sleep(1.5)\nprint('second')\n"

    async def go():
        t0 = time.monotonic()
        seen = []
        async for msg in agent_request(agent.sock, {"op": "run", "code": code}, timeout=15):
            seen.append((time.monotonic() - t0, msg))
        return seen

    seen = asyncio.run(go())
    first = next(t for t, m in seen if m.get("text") == "first\n")
    end = seen[-1][0]
    assert seen[-1][1] == {"type": "done", "status": "ok"}
    assert end >= 1.4
    assert first < end - 1.0, seen
    assert "".join(m.get("text", "") for _, m in seen) == "first\nsecond\n"


def test_exception_traceback(agent):
    agent.run("def boom(d):\n    return 1 / d\n")
    d = done_of(agent.run("x = 1\nboom(0)"))
    assert d["status"] == "error"
    assert d["ename"] == "ZeroDivisionError"
    assert d["evalue"] == "division by zero"
    tb = "\n".join(d["traceback"])
    assert tb.startswith("Traceback (most recent call last):")
    assert "<cell-" in tb and "in boom" in tb and "return 1 / d" in tb
    assert "agent.py" not in tb
    assert d["traceback"][-1] == "ZeroDivisionError: division by zero"
    # the namespace survives an error
    assert result_of(agent.run("x")) == "1"


def test_syntax_error(agent):
    d = done_of(agent.run("def f(:\n    pass"))
    assert d["status"] == "error"
    assert d["ename"] == "SyntaxError"
    assert d["evalue"]
    assert any("SyntaxError" in line for line in d["traceback"])
    assert not any("agent.py" in line for line in d["traceback"])
    assert done_of(agent.run("1"))["status"] == "ok"


def test_input_raises_clear_error(agent):
    d = done_of(agent.run("input('name? ')"))
    assert d["ename"] == "StdinNotImplementedError"
    assert "no stdin" in d["evalue"]
    assert not any("agent.py" in line for line in d["traceback"])
    d = done_of(agent.run("import sys\nsys.stdin.readline()"))
    assert d["ename"] == "StdinNotImplementedError"


def test_fd_level_capture(agent):
    msgs = agent.run(
        "import os, sys\n"
        "print('py-out')\n"
        "os.system('echo from-shell; echo shell-err >&2')\n"
        "os.write(1, b'raw-out\\n')\n"
        "os.write(2, b'raw-err\\n')\n"
        "print('py-err', file=sys.stderr)\n"
        "import subprocess\n"
        "subprocess.run(['sh', '-c', 'echo child'])\n"
        "print('partial', end='')\n")
    assert done_of(msgs)["status"] == "ok"
    assert text_of(msgs, "stdout") == "py-out\nfrom-shell\nraw-out\nchild\npartial"
    assert text_of(msgs, "stderr") == "shell-err\nraw-err\npy-err\n"
    # nothing of the run leaked into the log, and the agent's log is not in the run
    assert "from-shell" not in agent.log_text()
    assert "[bai-agent]" not in text_of(msgs, "stdout") + text_of(msgs, "stderr")


def test_big_output_does_not_deadlock(agent):
    n = 5 * 1024 * 1024
    msgs = agent.run(
        "import os, sys\n"
        f"sys.stdout.write('x' * {n})\n"
        f"os.write(2, b'y' * {n})\n"
        "for i in range(20000):\n"
        "    print(i)\n", timeout=60)
    assert done_of(msgs)["status"] == "ok"
    out = text_of(msgs, "stdout")
    assert out[:n] == "x" * n
    assert out[n:] == "".join(f"{i}\n" for i in range(20000))
    assert text_of(msgs, "stderr") == "y" * n
    assert all(len(m.get("text", "")) <= 65536 for m in msgs)


def test_interrupt_sleep(agent):
    assert agent.call({"op": "interrupt"}) == [
        {"type": "done", "status": "ok", "interrupted": False}]

    async def go():
        t0 = time.monotonic()
        msgs = []
        gen = agent_request(agent.sock, {"op": "run", "code":
                                         "import time\nprint('sleeping')\ntime.sleep(60)"},
                            timeout=20)
        async with contextlib.aclosing(gen):
            async for msg in gen:
                msgs.append(msg)
                if msg.get("text") == "sleeping\n":
                    reply = await agent_call(agent.sock, {"op": "interrupt"}, timeout=5)
                    assert reply == [{"type": "done", "status": "ok", "interrupted": True}]
        return msgs, time.monotonic() - t0

    msgs, took = asyncio.run(go())
    d = done_of(msgs)
    assert d["status"] == "error" and d["ename"] == "KeyboardInterrupt", d
    assert took < 10
    assert not any("agent.py" in line for line in d["traceback"])
    assert result_of(agent.run("1 + 1")) == "2"


def test_sys_exit_keeps_serving(agent):
    agent.run("kept = 'yes'")
    d = done_of(agent.run("import sys\nsys.exit(3)"))
    assert d["status"] == "error" and d["ename"] == "SystemExit" and d["evalue"] == "3"
    d = done_of(agent.run("raise SystemExit"))
    assert d["ename"] == "SystemExit"
    assert agent.call({"op": "ping"})[0]["type"] == "pong"
    assert result_of(agent.run("kept")) == "'yes'"
    assert agent.proc.poll() is None


def test_closing_fd1_does_not_kill_agent(agent):
    d = done_of(agent.run("import os, sys\nprint('before')\nsys.stdout.flush()\nos.close(1)"))
    assert d["status"] == "ok"
    msgs = agent.run("print('after')\n5")
    assert text_of(msgs) == "after\n"
    assert result_of(msgs) == "5"
    msgs = agent.run("import sys\nsys.stdout.close()")
    assert done_of(msgs)["status"] == "ok"
    assert text_of(agent.run("print('again')")) == "again\n"


def test_background_process_does_not_hold_the_run(agent):
    t0 = time.monotonic()
    msgs = agent.run("import subprocess\n"
                     "p = subprocess.Popen(['sh', '-c',\n"
                     "                      'sleep 1.5; echo late-output; echo ok > bg.txt'])\n"
                     "print('started')")
    assert time.monotonic() - t0 < 1.2
    assert done_of(msgs)["status"] == "ok"
    assert text_of(msgs) == "started\n"
    # its later output goes to the session log, and it is not killed by SIGPIPE
    assert wait_until(lambda: "late-output" in agent.log_text(), 5)
    assert wait_until(lambda: (agent.root / "work" / "bg.txt").exists(), 5)
    assert result_of(agent.run("p.wait()")) == "0"
    assert text_of(agent.run("print('next')")) == "next\n"


def test_queued_runs_execute_in_order(agent):
    async def go():
        first = asyncio.create_task(agent_call(
            agent.sock, {"op": "run", "code": "import time\ntime.sleep(0.5)\norder = ['a']"}))
        await asyncio.sleep(0.1)
        second = await agent_call(agent.sock, {"op": "run", "code": "order.append('b')\norder"})
        return await first, second

    first, second = asyncio.run(go())
    assert done_of(first)["status"] == "ok"
    assert result_of(second) == "['a', 'b']"


def test_run_continues_after_client_disconnect(agent):
    code = ("import time\nfor i in range(5):\n    print(i)\n    time.sleep(0.1)\n"
            "print('x' * 300000)\nfinished = True\n")

    async def go():
        gen = agent_request(agent.sock, {"op": "run", "code": code}, timeout=10)
        async with contextlib.aclosing(gen):
            async for msg in gen:
                assert msg["type"] == "stream"
                break

    asyncio.run(go())
    assert wait_until(lambda: agent.call({"op": "status"})[0]["busy"] is False, 10)
    assert result_of(agent.run("finished")) == "True"


# ---------------------------------------------------------------- exec


def test_exec_exit_codes_and_streams(agent, root):
    msgs = agent.exec(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert text_of(msgs) == "out\n" and text_of(msgs, "stderr") == "err\n"
    assert done_of(msgs) == {"type": "done", "exit_code": 3}
    msgs = agent.exec("echo $GREETING from $(pwd)", env={"GREETING": "hello"},
                      cwd=str(root))
    assert text_of(msgs) == f"hello from {root}\n"
    assert done_of(msgs)["exit_code"] == 0
    # default cwd is the agent's
    assert text_of(agent.exec(["pwd"])) == f"{root / 'work'}\n"
    msgs = agent.exec(["definitely-not-a-command-xyz"])
    assert done_of(msgs)["exit_code"] == 127
    assert "definitely-not-a-command-xyz" in text_of(msgs, "stderr")
    assert done_of(agent.exec("definitely-not-a-command-xyz"))["exit_code"] == 127
    # killed by a signal: 128 + signum, like a shell
    assert done_of(agent.exec("kill -9 $$"))["exit_code"] == 137


def test_exec_multibyte_split_across_chunks(agent):
    code = ("import sys, time\n"
            "sys.stdout.buffer.write(b'caf\\xc3'); sys.stdout.flush(); time.sleep(0.3)\n"
            "sys.stdout.buffer.write(b'\\xa9 \\xed\\x95'); sys.stdout.flush(); time.sleep(0.3)\n"
            "sys.stdout.buffer.write(b'\\x9c \\xff\\n')\n")
    msgs = agent.exec([sys.executable, "-c", code])
    assert done_of(msgs)["exit_code"] == 0
    assert len([m for m in msgs if m["type"] == "stream"]) >= 2
    assert text_of(msgs) == "café 한 \ufffd\n"


def test_exec_runs_concurrently_with_a_run(agent):
    async def go():
        t0 = time.monotonic()
        gen = agent_request(agent.sock, {"op": "run", "code":
                                         "import time\nprint('go')\ntime.sleep(1.5)"},
                            timeout=15)
        exec_done = None
        status = None
        async with contextlib.aclosing(gen):
            async for msg in gen:
                if msg.get("text") == "go\n":
                    status = (await agent_call(agent.sock, {"op": "status"}))[0]
                    out = await agent_call(agent.sock, {"op": "exec", "command": "echo side"})
                    exec_done = time.monotonic() - t0
                    assert text_of(out) == "side\n"
            run_done = time.monotonic() - t0
        return exec_done, run_done, status

    exec_done, run_done, status = asyncio.run(go())
    assert status["busy"] is True
    assert exec_done is not None and exec_done < run_done - 0.8


@pytest.mark.parametrize("ignore_term", [False, True])
def test_exec_client_disconnect_kills_process(agent, ignore_term):
    trap = "trap '' TERM; " if ignore_term else ""
    command = trap + "echo $$; sleep 30; echo never"

    async def go():
        gen = agent_request(agent.sock, {"op": "exec", "command": command}, timeout=10)
        async with contextlib.aclosing(gen):
            async for msg in gen:
                return int(msg["text"])

    pid = asyncio.run(go())
    # SIGTERM at once; SIGKILL after the 2 s grace when TERM is ignored
    assert wait_until(lambda: not pid_alive(pid), 6.0)
    assert wait_until(lambda: agent.call({"op": "status"})[0]["execs_running"] == 0, 5.0)
    assert agent.proc.poll() is None


def test_status_and_last_activity(agent):
    (s0,) = agent.call({"op": "status"})
    assert s0["type"] == "status"
    assert s0["busy"] is False and s0["runs"] == 0 and s0["execs_running"] == 0
    time.sleep(0.05)
    agent.run("pass")
    (s1,) = agent.call({"op": "status"})
    assert s1["runs"] == 1 and s1["busy"] is False
    assert s1["last_activity"] > s0["last_activity"]
    assert abs(s1["last_activity"] - time.time()) < 5
    time.sleep(0.05)
    agent.exec(["true"])
    (s2,) = agent.call({"op": "status"})
    assert s2["last_activity"] > s1["last_activity"] and s2["runs"] == 1
    # ping/status themselves are not activity
    time.sleep(0.05)
    assert agent.call({"op": "status"})[0]["last_activity"] == s2["last_activity"]


def test_protocol_errors(agent):
    d = done_of(agent.call({"op": "frobnicate"}))
    assert d["status"] == "error" and d["ename"] == "ProtocolError" and "frobnicate" in d["evalue"]
    d = done_of(agent.call({"op": "run"}))
    assert d["ename"] == "ProtocolError"
    d = done_of(agent.call({"op": "exec", "command": []}))
    assert d["ename"] == "ProtocolError"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(agent.sock)
        s.sendall(b"{not json\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    msg = json.loads(data.decode())
    assert msg["type"] == "done" and msg["ename"] == "ProtocolError"
    assert agent.call({"op": "ping"})[0]["type"] == "pong"


# ---------------------------------------------------------------- client


def test_client_errors(root):
    missing = str(root / "nope.sock")
    with pytest.raises(AgentUnavailable, match="does not exist"):
        asyncio.run(agent_call(missing, {"op": "ping"}))
    t0 = time.monotonic()
    with pytest.raises(AgentUnavailable, match="not ready"):
        asyncio.run(wait_ready(missing, 0.3))
    assert time.monotonic() - t0 < 2
    # a socket nobody answers on properly: closes before any final message
    path = str(root / "mute.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    async def mute():
        async def serve(reader, writer):
            await reader.readline()
            writer.write(b'{"type": "stream", "name": "stdout", "text": "x"}\n')
            writer.close()

        server = await asyncio.start_unix_server(serve, sock=srv)
        async with server:
            with pytest.raises(AgentUnavailable, match="before finishing"):
                await agent_call(path, {"op": "run", "code": "1"})

    asyncio.run(mute())


def test_request_timeout(agent):
    with pytest.raises(agent_client.AgentTimeout):
        agent.run("import time\ntime.sleep(1)", timeout=0.3)
    # the run still finishes on its own; the agent is fine
    assert wait_until(lambda: agent.call({"op": "status"})[0]["busy"] is False, 10)


# ---------------------------------------------------------------- lifecycle


def test_sigterm_idle_removes_socket(agent):
    assert os.path.exists(agent.sock)
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(5) == 0
    assert not os.path.exists(agent.sock)


def test_sigterm_during_run(agent):
    async def go():
        msgs = []
        gen = agent_request(agent.sock, {"op": "run", "code":
                                         "import time\nprint('in')\ntime.sleep(30)"},
                            timeout=15)
        async with contextlib.aclosing(gen):
            async for msg in gen:
                msgs.append(msg)
                if msg.get("text") == "in\n":
                    agent.proc.send_signal(signal.SIGTERM)
        return msgs

    msgs = asyncio.run(go())
    d = done_of(msgs)
    assert d["status"] == "error" and d["ename"] == "AgentShutdown"
    assert agent.proc.wait(5) == 0
    assert not os.path.exists(agent.sock)


def test_startup_command_and_stale_socket(root):
    (root / "run").mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(root / "run" / "agent.sock"))
    stale.close()  # leaves a socket file nobody listens on
    marker = root / "started.txt"
    agent = start_agent(root, "--startup",
                        f"echo startup-output; echo ran > {marker}; exit 5",
                        "--cwd", str(root))
    try:
        assert wait_until(marker.exists, 5)
        assert wait_until(lambda: "startup-output" in agent.log_text(), 5)
        assert wait_until(lambda: "exited with code 5" in agent.log_text(), 5)
        # the agent keeps serving after the startup command exits
        assert agent.call({"op": "ping"})[0]["type"] == "pong"
        assert result_of(agent.run("import os\nos.getcwd()")) == repr(str(root))
    finally:
        stop_agent(agent)
    assert agent.proc.returncode == 0


def test_refuses_when_another_agent_listens(agent):
    proc = subprocess.run([AGENT_PYTHON, "-I", str(AGENT), "--socket", agent.sock],
                          capture_output=True, text=True, timeout=10)
    assert proc.returncode != 0
    assert "another agent" in proc.stderr
    assert agent.call({"op": "ping"})[0]["pid"] == agent.proc.pid


def test_a_symlink_swapped_in_for_the_agent_socket_is_not_followed(tmp_path: Path) -> None:
    """The socket's directory is writable from the session: the engine must not be
    redirected to another socket on the host through a symlink."""
    other = tmp_path / "host.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(other))
    server.listen()
    server.setblocking(False)

    async def ask(path: Path) -> list:
        async def answer() -> None:
            loop = asyncio.get_running_loop()
            conn, _ = await loop.sock_accept(server)
            await loop.sock_recv(conn, 1024)
            await loop.sock_sendall(conn, b'{"type": "pong"}\n')
            conn.close()

        serving = asyncio.ensure_future(answer())
        try:
            return [m async for m in agent_client.agent_request(str(path), {"op": "ping"},
                                                                timeout=5)]
        finally:
            serving.cancel()

    assert asyncio.run(ask(other)) == [{"type": "pong"}]  # the real socket answers
    link = tmp_path / "run" / "agent.sock"
    link.parent.mkdir()
    link.symlink_to(other)
    with pytest.raises(agent_client.AgentUnavailable, match="not a socket"):
        asyncio.run(ask(link))
    server.close()
