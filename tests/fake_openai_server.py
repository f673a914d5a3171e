"""A FAKE OpenAI-compatible LLM server for tests (an external LLM is outside this machine).

Implements ``POST /v1/chat/completions`` with ``stream: true`` (SSE chunks, then ``[DONE]``).
It answers by quoting the first passage title it was given, citing it as [1], so a test can
check the answer came from the retrieved passages. ``mode`` makes it ``ok``, ``slow`` (sleeps
before the first token) or ``down`` (HTTP 503). Run in a thread: ``with FakeOpenAI() as llm``.
"""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    def __init__(self, mode: str = "ok", delay: float = 5.0) -> None:
        self.mode = mode
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.requests.append({"path": self.path, "body": body,
                                      "auth": self.headers.get("Authorization")})
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                if fake.mode == "down":
                    self.send_error(503, "model is down")
                    return
                if fake.mode == "slow":
                    time.sleep(fake.delay)
                prompt = body["messages"][-1]["content"]
                m = re.search(r"^\[1\] (.+?) \(", prompt, re.M)
                title = m.group(1) if m else "nothing"
                words = f"FAKE-LLM: use {title} [1].".split(" ")
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    for i, w in enumerate(words):
                        chunk = {"id": "fake", "object": "chat.completion.chunk", "model": body.get("model"),
                                 "choices": [{"index": 0, "delta": {"content": w + (" " if i < len(words) - 1 else "")}}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
