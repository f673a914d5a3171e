#!/usr/bin/env python3
"""jupyter-bai in-session agent.

The main process of an interactive compute session.  It is bind-mounted
read-only into sandboxes and containers and run by whatever ``python3`` the
image has, so it is ONE self-contained file that uses the standard library
only and keeps to Python 3.8 syntax.

    python3 agent.py --socket /run/bai/agent.sock [--startup "shell cmd"] [--cwd DIR]

It listens on a unix socket (mode 600), prints ``agent ready`` on stdout once
listening, and serves until SIGTERM (then removes the socket and exits 0).  Its
own stdout/stderr are the session's log.

Protocol: one request per connection.  The client sends ONE JSON line; the
agent answers with JSON lines (NDJSON, utf-8) and closes the connection.

  {"op": "ping"}       -> {"type": "pong", "pid": N, "python": "3.11.7"}
  {"op": "status"}     -> {"type": "status", "busy": b, "last_activity": ts,
                           "runs": N, "queued": N, "execs_running": N}
  {"op": "run", "code": "...", "run_id": "..."}
                       -> {"type": "stream", "name": "stdout"|"stderr", "text": ...}*
                          {"type": "result", "text": repr(value)}?
                          {"type": "done", "status": "ok"}
                        | {"type": "done", "status": "error", "ename", "evalue", "traceback": [...]}
  {"op": "interrupt"}  -> {"type": "done", "status": "ok", "interrupted": b}
  {"op": "exec", "command": [...] | "sh string", "env": {...}, "cwd": "..."}
                       -> {"type": "stream", ...}*  {"type": "done", "exit_code": N}
  anything else        -> {"type": "done", "status": "error", "ename": "ProtocolError", ...}

Runs execute one at a time in the main thread, in one persistent namespace
(``__main__``).  Their output is captured at the file-descriptor level (fds 1
and 2 are pipes for the duration of a run), so output of subprocesses and C
code is streamed too.  Execs run in their own threads, concurrently with runs.
Exit codes of execs killed by a signal are reported as 128 + signal number.
The client must not half-close its side of the connection: for an exec, EOF
from the client means "client gone" and the process is killed.
"""
from __future__ import annotations

import argparse
import ast
import builtins
import codecs
import io
import json
import linecache
import os
import platform
import queue
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import tokenize
import traceback
import types
from typing import Any, Dict, List, Optional

AGENT_FILE = os.path.abspath(__file__)

READ_CHUNK = 65536
MAX_REQUEST_BYTES = 64 * 1024 * 1024
REQUEST_READ_TIMEOUT = 30.0
# A client that accepts nothing for this long is treated as gone (its output
# is then discarded instead of stalling the cell forever).
SEND_TIMEOUT = 60.0
EXEC_KILL_GRACE = 2.0
# After a run ends, what is already in the output pipes goes to the client;
# this caps that final drain so a chatty background process cannot hold the
# "done" message back.
FINAL_DRAIN_BYTES = 8 * 1024 * 1024
FINAL_DRAIN_SECONDS = 1.0

_CO_COROUTINE = 0x0080
_TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)


class _Shutdown(BaseException):
    """Raised in the main thread by the SIGTERM handler."""


class StdinNotImplementedError(RuntimeError):
    """Raised by input() and sys.stdin reads: a session has no stdin."""


_NO_STDIN_MESSAGE = (
    "input() is not supported here: the session has no stdin. Put the values in "
    "the code, or run interactive programs in a terminal."
)


def _no_input(prompt: Any = "") -> str:
    raise StdinNotImplementedError(_NO_STDIN_MESSAGE)


class _NoStdin(io.TextIOBase):
    """sys.stdin replacement whose reads raise StdinNotImplementedError."""

    encoding = "utf-8"

    def readable(self) -> bool:
        return True

    def read(self, size: Optional[int] = -1) -> str:
        raise StdinNotImplementedError(_NO_STDIN_MESSAGE)

    def readline(self, size: Optional[int] = -1) -> str:  # type: ignore[override]
        raise StdinNotImplementedError(_NO_STDIN_MESSAGE)

    def readlines(self, hint: Optional[int] = -1) -> List[str]:  # type: ignore[override]
        raise StdinNotImplementedError(_NO_STDIN_MESSAGE)

    def isatty(self) -> bool:
        return False


# --------------------------------------------------------------------------
# logging (to the session log: the fds the agent was started with)


class _Log:
    def __init__(self) -> None:
        self.out_fd = _dup_or_devnull(1, os.O_WRONLY)
        self.err_fd = _dup_or_devnull(2, os.O_WRONLY)
        self._lock = threading.Lock()

    def write_fd(self, fd: int, data: bytes) -> None:
        with self._lock:
            _write_all(fd, data)

    def stdout(self, text: str) -> None:
        self.write_fd(self.out_fd, text.encode("utf-8", "replace"))

    def __call__(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        line = "%s [bai-agent] %s\n" % (stamp, text)
        self.write_fd(self.err_fd, line.encode("utf-8", "replace"))


def _dup_or_devnull(fd: int, flags: int) -> int:
    try:
        return os.dup(fd)
    except OSError:
        return os.open(os.devnull, flags | getattr(os, "O_CLOEXEC", 0))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError:
            return
        view = view[n:]


# --------------------------------------------------------------------------
# client connections


def _encode(msg: Dict[str, Any]) -> bytes:
    try:
        return (json.dumps(msg, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escape them
        return (json.dumps(msg, ensure_ascii=True) + "\n").encode("ascii")


class _Conn:
    """One client connection; send() never raises, a dead client is remembered."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.alive = True
        self._lock = threading.Lock()

    def send(self, msg: Dict[str, Any]) -> bool:
        data = _encode(msg)
        with self._lock:
            if not self.alive:
                return False
            try:
                self.sock.sendall(data)
                return True
            except (OSError, ValueError):
                self.alive = False
                return False

    def close(self) -> None:
        with self._lock:
            self.alive = False
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self.sock.close()
            except OSError:
                pass


def _read_request(sock: socket.socket) -> bytes:
    buf = bytearray()
    while True:
        nl = buf.find(b"\n")
        if nl >= 0:
            return bytes(buf[:nl])
        if len(buf) > MAX_REQUEST_BYTES:
            raise ValueError("request larger than %d bytes" % MAX_REQUEST_BYTES)
        chunk = sock.recv(READ_CHUNK)
        if not chunk:
            return bytes(buf)  # EOF without newline: take what came
        buf += chunk


def _protocol_error(evalue: str) -> Dict[str, Any]:
    return {"type": "done", "status": "error", "ename": "ProtocolError",
            "evalue": evalue, "traceback": []}


# --------------------------------------------------------------------------
# output pump for runs


class _Pump(threading.Thread):
    """Forwards what a run writes to fds 1/2 (pipes) to the client.

    finish() is called once the run is over and fds 1/2 point back at the log:
    whatever is already in the pipes still goes to the client, then finish()
    returns.  Processes the cell left running may still hold the pipes; their
    later output goes to the session log until they close them.
    """

    def __init__(self, conn: _Conn, fds: Dict[int, str], log: _Log) -> None:
        super().__init__(name="bai-run-pump", daemon=True)
        self.conn = conn
        self.names = dict(fds)
        self.log = log
        self.decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in fds}
        self.wake_r, self.wake_w = os.pipe()
        self.drained = threading.Event()
        self.to_log = False
        for fd in fds:
            os.set_blocking(fd, False)

    def _emit(self, fd: int, data: bytes, final: bool = False) -> None:
        if self.to_log:
            if data:
                log_fd = self.log.out_fd if self.names[fd] == "stdout" else self.log.err_fd
                self.log.write_fd(log_fd, data)
            return
        text = self.decoders[fd].decode(data, final)
        if text:
            self.conn.send({"type": "stream", "name": self.names[fd], "text": text})

    def _read(self, fd: int) -> Optional[bytes]:
        """Bytes read, b"" at EOF, None when nothing is available now."""
        try:
            return os.read(fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def _close(self, sel: selectors.BaseSelector, fd: int) -> None:
        try:
            sel.unregister(fd)
        except (KeyError, ValueError):
            pass
        self._emit(fd, b"", final=True)
        try:
            os.close(fd)
        except OSError:
            pass

    def _final_drain(self, sel: selectors.BaseSelector, open_fds: set) -> None:
        deadline = time.monotonic() + FINAL_DRAIN_SECONDS
        budget = FINAL_DRAIN_BYTES
        for fd in sorted(open_fds, key=lambda f: self.names[f] != "stdout"):
            while budget > 0 and time.monotonic() < deadline:
                data = self._read(fd)
                if data is None:
                    break
                if not data:
                    open_fds.discard(fd)
                    self._close(sel, fd)
                    break
                budget -= len(data)
                self._emit(fd, data)
        for fd in open_fds:  # flush partial characters held by the decoders
            self._emit(fd, b"", final=True)
        self.to_log = True

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        open_fds = set(self.names)
        try:
            for fd in open_fds:
                sel.register(fd, selectors.EVENT_READ)
            sel.register(self.wake_r, selectors.EVENT_READ)
            while open_fds:
                for key, _ in sel.select():
                    fd = key.fd
                    if fd == self.wake_r:
                        sel.unregister(self.wake_r)
                        self._final_drain(sel, open_fds)
                        self.drained.set()
                        continue
                    if fd not in open_fds:
                        continue
                    data = self._read(fd)
                    if data is None:
                        continue
                    if not data:
                        open_fds.discard(fd)
                        self._close(sel, fd)
                        continue
                    self._emit(fd, data)
        except Exception as exc:  # never let the run hang on us
            self.log("output pump failed: %r" % (exc,))
            for fd in open_fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        finally:
            sel.close()
            self.drained.set()

    def finish(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass
        self.drained.wait()
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


# --------------------------------------------------------------------------
# the agent


class _RunJob:
    def __init__(self, conn: _Conn, code: str, run_id: Optional[str]) -> None:
        self.conn = conn
        self.code = code
        self.run_id = run_id


class Agent:
    def __init__(self, socket_path: str, startup: Optional[str] = None) -> None:
        self.socket_path = socket_path
        self.startup_cmd = startup
        self.log = _Log()
        self.server: Optional[socket.socket] = None
        self.jobs: "queue.Queue[_RunJob]" = queue.Queue()
        self.lock = threading.Lock()
        self.phase = "init"  # init | idle | prepare | user | finish | shutdown
        self.shutdown_requested = False
        self.busy = False
        self.runs = 0
        self.execs: Dict[int, subprocess.Popen] = {}
        self.last_activity = time.time()
        self.startup_proc: Optional[subprocess.Popen] = None
        self.main_ident = threading.get_ident()
        self.loop: Any = None  # asyncio loop for top-level await, made on demand
        self.cell_count = 0

        main_mod = types.ModuleType("__main__")
        main_mod.__dict__["__builtins__"] = builtins
        self.module = main_mod
        self.ns = main_mod.__dict__
        self.cell_out: Optional[io.TextIOWrapper] = None
        self.cell_err: Optional[io.TextIOWrapper] = None

    # -- setup -------------------------------------------------------------

    def _prepare_process(self) -> None:
        # No stdin: fd 0 is /dev/null, sys.stdin and input() raise clearly.
        try:
            devnull = os.open(os.devnull, os.O_RDONLY)
            if devnull != 0:
                os.dup2(devnull, 0)
                os.close(devnull)
        except OSError:
            pass
        sys.stdin = _NoStdin()
        builtins.input = _no_input
        # Cells see an interactive-like process: __main__ is their namespace,
        # imports resolve from the working directory, argv is not ours.
        self._agent_module = sys.modules.get("__main__")  # keep it alive
        sys.modules["__main__"] = self.module
        sys.argv = [""]
        agent_dir = os.path.dirname(AGENT_FILE)
        if sys.path and sys.path[0] == agent_dir:
            sys.path[0] = ""
        elif "" not in sys.path:
            sys.path.insert(0, "")
        threading.excepthook = self._thread_excepthook
        try:  # a crash in a C extension leaves its stack in the session log
            import faulthandler
            faulthandler.enable(file=self.log.err_fd, all_threads=True)
        except Exception:
            pass
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, self._on_sigint)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _thread_excepthook(self, args: Any) -> None:
        if args.exc_type is SystemExit:
            return
        text = "".join(traceback.format_exception(args.exc_type, args.exc_value,
                                                  args.exc_traceback))
        name = args.thread.name if args.thread is not None else "?"
        # During a run fd 2 is the cell's stderr: exceptions in threads the
        # user started belong there.  The agent's own threads log instead.
        if name.startswith("bai-"):
            self.log("exception in thread %s:\n%s" % (name, text.rstrip()))
        else:
            _write_all(2, ("Exception in thread %s:\n%s" % (name, text)).encode("utf-8",
                                                                               "replace"))

    def _listen(self) -> None:
        parent = os.path.dirname(self.socket_path)
        if parent:
            os.makedirs(parent, mode=0o700, exist_ok=True)
        path = self.socket_path
        if len(os.fsencode(path)) >= 100 and parent:
            # sun_path is ~107 bytes: bind a deep path through its directory's fd.
            self._dir_fd = os.open(parent, os.O_PATH | os.O_DIRECTORY)
            path = "/proc/self/fd/%d/%s" % (self._dir_fd, os.path.basename(self.socket_path))
        if os.path.exists(path) or os.path.islink(path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(path)
            except OSError:
                pass  # stale
            else:
                probe.close()
                raise SystemExit("bai-agent: another agent is listening on %s" % path)
            finally:
                probe.close()
            os.unlink(path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            srv.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, 0o600)
        srv.listen(64)
        self.server = srv

    def _start_startup(self) -> None:
        if not self.startup_cmd:
            return
        try:
            self.startup_proc = subprocess.Popen(
                ["/bin/sh", "-c", self.startup_cmd], stdin=subprocess.DEVNULL,
                stdout=self.log.out_fd, stderr=self.log.err_fd, start_new_session=True)
        except OSError as exc:
            self.log("startup command could not start: %s" % exc)
            return
        self.log("startup command started (pid %d)" % self.startup_proc.pid)
        threading.Thread(target=self._watch_startup, name="bai-startup", daemon=True).start()

    def _watch_startup(self) -> None:
        proc = self.startup_proc
        if proc is None:
            return
        code = proc.wait()
        self.log("startup command exited with code %s" % code)

    # -- main loop ---------------------------------------------------------

    def serve(self) -> int:
        self._prepare_process()
        self._listen()
        self.log("listening on %s (pid %d, python %s)"
                 % (self.socket_path, os.getpid(), platform.python_version()))
        threading.Thread(target=self._accept_loop, name="bai-accept", daemon=True).start()
        self.log.stdout("agent ready\n")
        self._start_startup()
        try:
            while True:
                self.phase = "idle"
                if self.shutdown_requested:
                    break
                job = self.jobs.get()
                self.phase = "prepare"
                self._execute(job)
                if self.shutdown_requested:
                    break
        except _Shutdown:
            pass
        self.phase = "shutdown"
        self._cleanup()
        return 0

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.shutdown_requested = True
        if self.phase in ("idle", "user"):
            raise _Shutdown()

    def _on_sigint(self, signum: int, frame: Any) -> None:
        # Only an interrupt of user code means anything; a late one is dropped.
        if self.phase == "user":
            raise KeyboardInterrupt()

    def _cleanup(self) -> None:
        self.log("shutting down")
        if self.server is not None:
            try:
                self.server.close()
            except OSError:
                pass
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass
        with self.lock:
            procs = list(self.execs.values())
        if self.startup_proc is not None and self.startup_proc.poll() is None:
            procs.append(self.startup_proc)
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + EXEC_KILL_GRACE
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
        for stream in (sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass

    def _touch(self) -> None:
        self.last_activity = time.time()

    def _accept_loop(self) -> None:
        srv = self.server
        assert srv is not None
        while True:
            try:
                sock, _ = srv.accept()
            except OSError:
                if self.shutdown_requested or srv.fileno() < 0:
                    return
                time.sleep(0.05)  # e.g. EMFILE: do not spin
                continue
            threading.Thread(target=self._handle, args=(sock,), name="bai-conn",
                             daemon=True).start()

    def _handle(self, sock: socket.socket) -> None:
        conn = _Conn(sock)
        handed_off = False
        try:
            sock.settimeout(REQUEST_READ_TIMEOUT)
            try:
                raw = _read_request(sock)
            except (OSError, ValueError) as exc:
                conn.send(_protocol_error("could not read request: %s" % exc))
                return
            sock.settimeout(SEND_TIMEOUT)
            try:
                req = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                conn.send(_protocol_error("malformed JSON request: %s" % exc))
                return
            if not isinstance(req, dict):
                conn.send(_protocol_error("request must be a JSON object"))
                return
            op = req.get("op")
            if op == "ping":
                conn.send({"type": "pong", "pid": os.getpid(),
                           "python": platform.python_version()})
            elif op == "status":
                with self.lock:
                    execs = len(self.execs)
                conn.send({"type": "status", "busy": self.busy or not self.jobs.empty(),
                           "last_activity": self.last_activity, "runs": self.runs,
                           "queued": self.jobs.qsize(), "execs_running": execs})
            elif op == "run":
                code = req.get("code")
                if not isinstance(code, str):
                    conn.send(_protocol_error("'run' needs a string 'code'"))
                    return
                run_id = req.get("run_id")
                self.jobs.put(_RunJob(conn, code, None if run_id is None else str(run_id)))
                handed_off = True
            elif op == "interrupt":
                conn.send({"type": "done", "status": "ok", "interrupted": self._interrupt()})
            elif op == "exec":
                self._exec(conn, req)
            else:
                conn.send(_protocol_error("unknown op %r" % (op,)))
        except Exception as exc:
            self.log("request failed: %s" % "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
            conn.send(_protocol_error("agent error: %s: %s" % (type(exc).__name__, exc)))
        finally:
            if not handed_off:
                conn.close()

    def _interrupt(self) -> bool:
        if self.phase != "user":
            return False
        try:
            signal.pthread_kill(self.main_ident, signal.SIGINT)
        except (OSError, ValueError):
            return False
        return True

    # -- runs --------------------------------------------------------------

    def _cell_streams(self) -> None:
        def make(fd: int) -> io.TextIOWrapper:
            raw = io.FileIO(fd, "w", closefd=False)
            return io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8",
                                    errors="backslashreplace", line_buffering=True)

        if self.cell_out is None or self.cell_out.closed:
            self.cell_out = make(1)
        if self.cell_err is None or self.cell_err.closed:
            self.cell_err = make(2)

    def _execute(self, job: _RunJob) -> None:
        conn = job.conn
        self.busy = True
        self.runs += 1
        self._touch()
        started = time.monotonic()
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            _flush_quietly(stream)
        pump = None
        saved = (sys.stdout, sys.stderr, sys.stdin)
        outcome: Dict[str, Any] = {}
        try:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.close(out_w)
            os.close(err_w)
            pump = _Pump(conn, {out_r: "stdout", err_r: "stderr"}, self.log)
            pump.start()
            self._cell_streams()
            sys.stdout, sys.stderr = self.cell_out, self.cell_err
            if not isinstance(sys.stdin, _NoStdin):
                sys.stdin = _NoStdin()
            outcome = self._run_code(job.code)
        except BaseException as exc:  # agent-side failure, not the user's
            if not outcome:
                outcome = _error_outcome(exc, None)
        finally:
            self.phase = "finish"
            for stream in (sys.stdout, sys.stderr, self.cell_out, self.cell_err,
                           sys.__stdout__, sys.__stderr__):
                _flush_quietly(stream)
            sys.stdout, sys.stderr, sys.stdin = saved
            os.dup2(self.log.out_fd, 1)
            os.dup2(self.log.err_fd, 2)
            if pump is not None:
                pump.finish()
        if "result" in outcome:
            conn.send({"type": "result", "text": outcome.pop("result")})
        done = {"type": "done"}
        done.update(outcome)
        conn.send(done)
        conn.close()
        self.busy = False
        self._touch()
        self.log("run %s%s: %s%s (%.2fs)" % (
            self.cell_count, "" if job.run_id is None else " [%s]" % job.run_id,
            done.get("status"), "" if done.get("status") == "ok" else " " + str(done.get("ename")),
            time.monotonic() - started))

    def _run_code(self, code: str) -> Dict[str, Any]:
        """Compile and run one cell; returns the fields of the done message."""
        self.cell_count += 1
        filename = "<cell-%d>" % self.cell_count
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            tree = ast.parse(code, filename, "exec")
            flags = _TOP_LEVEL_AWAIT
            exec_code = None
            eval_code = None
            body = tree.body
            if body and isinstance(body[-1], ast.Expr) and not _ends_with_semicolon(code):
                if len(body) > 1:
                    exec_code = compile(ast.Module(body=body[:-1], type_ignores=[]),
                                        filename, "exec", flags, dont_inherit=True)
                eval_code = compile(ast.Expression(body=body[-1].value), filename, "eval",
                                    flags, dont_inherit=True)
            else:
                exec_code = compile(tree, filename, "exec", flags, dont_inherit=True)
        except (SyntaxError, ValueError, OverflowError) as exc:  # bad source
            return _error_outcome(exc, None, syntax=isinstance(exc, SyntaxError))

        try:
            self.phase = "user"
            if exec_code is not None:
                self._eval(exec_code)
            result = None
            if eval_code is not None:
                value = self._eval(eval_code)
                if value is not None:
                    self.ns["_"] = value
                    result = repr(value)
            self.phase = "finish"
        except _Shutdown as exc:
            self.phase = "finish"
            return _error_outcome(exc, None, ename="AgentShutdown",
                                  evalue="the session is shutting down")
        except BaseException as exc:
            self.phase = "finish"
            return _error_outcome(exc, exc.__traceback__)
        out: Dict[str, Any] = {"status": "ok"}
        if result is not None:
            out["result"] = result
        return out

    def _eval(self, code: types.CodeType) -> Any:
        value = eval(code, self.ns)
        if code.co_flags & _CO_COROUTINE:
            import asyncio
            if self.loop is None or self.loop.is_closed():
                self.loop = asyncio.new_event_loop()
            try:
                value = self.loop.run_until_complete(value)
            except BaseException:
                try:
                    self.loop.close()
                except Exception:
                    pass
                self.loop = None
                raise
        return value

    # -- execs -------------------------------------------------------------

    def _exec(self, conn: _Conn, req: Dict[str, Any]) -> None:
        command = req.get("command")
        if isinstance(command, str) and command:
            argv: List[str] = ["/bin/sh", "-c", command]
        elif (isinstance(command, list) and command
              and all(isinstance(a, str) for a in command)):
            argv = list(command)
        else:
            conn.send(_protocol_error("'exec' needs 'command': a non-empty string or "
                                      "list of strings"))
            return
        extra = req.get("env") or {}
        cwd = req.get("cwd") or None
        if not isinstance(extra, dict) or (cwd is not None and not isinstance(cwd, str)):
            conn.send(_protocol_error("'env' must be an object and 'cwd' a string"))
            return
        env = dict(os.environ)
        for key, value in extra.items():
            env[str(key)] = "" if value is None else str(value)

        self._touch()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env, cwd=cwd,
                                    start_new_session=True)
        except OSError as exc:
            code = 126 if isinstance(exc, PermissionError) else 127
            conn.send({"type": "stream", "name": "stderr",
                       "text": "exec: %s: %s\n" % (exc.filename or argv[0], exc.strerror or exc)})
            conn.send({"type": "done", "exit_code": code})
            self._touch()
            return
        with self.lock:
            self.execs[proc.pid] = proc
        try:
            exit_code = self._pump_exec(conn, proc)
        finally:
            with self.lock:
                self.execs.pop(proc.pid, None)
            self._touch()
        if exit_code is not None:
            conn.send({"type": "done", "exit_code": exit_code})

    def _pump_exec(self, conn: _Conn, proc: subprocess.Popen) -> Optional[int]:
        """Stream the process's output; None when the client went away (killed)."""
        assert proc.stdout is not None and proc.stderr is not None
        names = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
        decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in names}
        sel = selectors.DefaultSelector()
        sock_fd = conn.sock.fileno()
        open_fds = set(names)
        client_gone = False
        try:
            for fd in names:
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_READ)
            sel.register(sock_fd, selectors.EVENT_READ)
            exited_at: Optional[float] = None
            while open_fds and not client_gone:
                # Normally EOF on both pipes ends the loop; if the process has
                # exited but something it started keeps the pipes open, stop
                # once nothing more arrives.
                timeout = 0.25 if exited_at is None else 0.1
                events = sel.select(timeout)
                if not events:
                    if exited_at is None and proc.poll() is not None:
                        exited_at = time.monotonic()
                    elif exited_at is not None:
                        break
                    continue
                for key, _ in events:
                    fd = key.fd
                    if fd == sock_fd:
                        try:
                            data = conn.sock.recv(4096)
                        except (BlockingIOError, InterruptedError, socket.timeout):
                            continue
                        except OSError:
                            data = b""
                        if not data:
                            client_gone = True
                            break
                        continue  # stray client bytes are ignored
                    try:
                        data = os.read(fd, READ_CHUNK)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(fd)
                        open_fds.discard(fd)
                        tail = decoders[fd].decode(b"", True)
                        if tail:
                            conn.send({"type": "stream", "name": names[fd], "text": tail})
                        continue
                    text = decoders[fd].decode(data)
                    if text and not conn.send({"type": "stream", "name": names[fd],
                                               "text": text}):
                        client_gone = True
                        break
        finally:
            sel.close()
        if client_gone:
            self.log("exec client went away; stopping pid %d" % proc.pid)
            _terminate(proc)
            _close_pipes(proc)
            return None
        for fd in open_fds:
            tail = decoders[fd].decode(b"", True)
            if tail:
                conn.send({"type": "stream", "name": names[fd], "text": tail})
        _close_pipes(proc)
        code = proc.wait()
        return 128 - code if code < 0 else code


# --------------------------------------------------------------------------
# helpers


def _flush_quietly(stream: Any) -> None:
    try:
        if stream is not None and not stream.closed:
            stream.flush()
    except Exception:
        pass


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except OSError:
        try:
            proc.send_signal(sig)
        except OSError:
            pass


def _terminate(proc: subprocess.Popen) -> None:
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(EXEC_KILL_GRACE)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    else:
        # the leader is gone; make sure nothing it started lingers either
        _signal_group(proc, signal.SIGKILL)


def _close_pipes(proc: subprocess.Popen) -> None:
    for pipe in (proc.stdout, proc.stderr):
        try:
            if pipe is not None:
                pipe.close()
        except OSError:
            pass


def _ends_with_semicolon(code: str) -> bool:
    """IPython's convention: a trailing ';' suppresses the result display."""
    skip = (tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT, tokenize.ENDMARKER,
            tokenize.INDENT, tokenize.DEDENT)
    last = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type not in skip:
                last = tok
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return False
    return last is not None and last.type == tokenize.OP and last.string == ";"


def _without_agent_frames(te: traceback.TracebackException, seen: set) -> None:
    if id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if os.path.abspath(f.filename) != AGENT_FILE])
    for nested in (te.__cause__, te.__context__):
        if nested is not None:
            _without_agent_frames(nested, seen)
    for group_member in getattr(te, "exceptions", None) or ():
        _without_agent_frames(group_member, seen)


def _error_outcome(exc: BaseException, tb: Any, syntax: bool = False,
                   ename: Optional[str] = None,
                   evalue: Optional[str] = None) -> Dict[str, Any]:
    try:
        if syntax:
            lines = list(traceback.format_exception_only(type(exc), exc))
        else:
            te = traceback.TracebackException(type(exc), exc, tb)
            _without_agent_frames(te, set())
            lines = list(te.format())
    except Exception:
        lines = ["%s: <traceback unavailable>" % type(exc).__name__]
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable %s>" % type(exc).__name__
    return {"status": "error",
            "ename": ename or type(exc).__name__,
            "evalue": text if evalue is None else evalue,
            "traceback": [line.rstrip("\n") for line in "".join(lines).splitlines()]}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="agent.py",
                                     description="jupyter-bai in-session agent")
    parser.add_argument("--socket", required=True, help="unix socket path to listen on")
    parser.add_argument("--startup", default=None,
                        help="shell command started at launch (output goes to the log)")
    parser.add_argument("--cwd", default=None, help="working directory for cells and execs")
    args = parser.parse_args(argv)
    socket_path = os.path.abspath(args.socket)
    if args.cwd:
        os.chdir(args.cwd)
    agent = Agent(socket_path, startup=args.startup)
    code = agent.serve()
    # Threads a cell left behind must not keep a terminated session alive.
    os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
