"""A FAKE OpenAI-compatible LLM server for tests (an external LLM is outside this machine).

Implements ``GET /health``, ``GET /v1/models``, ``POST /v1/completions`` and
``POST /v1/chat/completions``, with or without ``stream: true`` (SSE chunks, then ``[DONE]``).
Run as a model service route: ``python fake_openai_server.py --port N [--model NAME]`` (the
answers name the route's port, so a test sees which route served it).
It answers by quoting the first passage title it was given, citing it as [1], so a test can
check the answer came from the retrieved passages. ``mode`` makes it ``ok``, ``slow`` (sleeps
before the first token), ``down`` (HTTP 503), ``generic`` (the model-service answers below) or
``json`` (those, never streamed). Run in a thread: ``with FakeOpenAI() as llm``.
"""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    def __init__(self, mode: str = "ok", delay: float = 5.0, port: int = 0,
                 model: str = "fake-model", gap: float = 0.0, host: str = "127.0.0.1") -> None:
        self.mode = mode
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, data: Any) -> None:
                raw = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                fake.requests.append({"path": self.path, "auth": self.headers.get("Authorization")})
                if self.path == "/health":
                    self._json({"ok": True})
                elif self.path in ("/v1/health/ready", "/v1/health/live"):  # NIM's paths
                    self._json({"object": "health.response", "message": "Service is ready."})
                elif self.path == "/v1/models":
                    self._json({"object": "list", "data": [
                        {"id": model, "object": "model", "created": 0, "owned_by": "fake"}]})
                else:
                    self.send_error(404)

            def _sse(self, chunks: list[dict[str, Any]]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    for chunk in chunks:
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(fake.gap)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _generic(self, body: dict[str, Any]) -> None:
                """Answers for a model service: the words name the port that served them (and, given
                numbered passages like the API assistant's, the first passage's title, cited [1])."""
                words = f"fake answer from port {fake.port} .".split(" ")
                chat = self.path == "/v1/chat/completions"
                last = (body.get("messages") or [{}])[-1].get("content", "") if chat else ""
                cited = re.search(r"^\[1\] (.+?) \(", str(last), re.M)
                if cited:
                    words = f"fake answer from port {fake.port}: use {cited.group(1)} [1].".split(" ")
                kind = "chat.completion" if chat else "text_completion"
                if body.get("stream"):
                    self._sse([{"id": "fake", "object": kind + (".chunk" if chat else ""),
                                "created": 0, "model": model,
                                "choices": [{"index": 0, "finish_reason": None,
                                             **({"delta": {"content": w + " "}} if chat
                                                else {"text": w + " "})}]} for w in words])
                    return
                text = " ".join(words)
                choice = ({"message": {"role": "assistant", "content": text}} if chat
                          else {"text": text})
                self._json({"id": "fake", "object": kind, "created": 0, "model": model,
                            "choices": [{"index": 0, "finish_reason": "stop", **choice}],
                            "usage": {"prompt_tokens": 1, "completion_tokens": len(words),
                                      "total_tokens": 1 + len(words)}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.requests.append({"path": self.path, "body": body,
                                      "auth": self.headers.get("Authorization")})
                if self.path not in ("/v1/chat/completions", "/v1/completions"):
                    self.send_error(404)
                    return
                if fake.mode == "generic":
                    self._generic(body)
                    return
                if fake.mode == "json":  # a server that ignores stream: one JSON completion
                    self._generic({**body, "stream": False})
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

        self.gap = gap
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between SSE events")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 inside a container")
    args = parser.parse_args()
    server = FakeOpenAI(mode="generic", port=args.port, model=args.model, gap=args.gap,
                        host=args.host)
    print(f"fake OpenAI server on port {server.port}", flush=True)
    server.server.serve_forever()
