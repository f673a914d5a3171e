"""A fake Slack on 127.0.0.1 (Slack itself is outside this machine).

It answers what a pipeline talks to Slack with:

* incoming webhooks: ``POST`` of a JSON body to :attr:`FakeSlackWebhook.url` (the engine's
  notifications; ``posts`` and their ``headers``);
* the Web API's ``chat.postMessage`` (``slack_sdk.WebClient``), either at
  ``base_url=FakeSlackWebhook.api_url`` or, for code that sets only the token, through
  ``HTTPS_PROXY=FakeSlackWebhook.proxy_url``: a ``CONNECT slack.com:443`` is answered by a
  TLS server for slack.com whose certificate is signed by a test CA (:attr:`ca_pem`, given to
  the client as ``SSL_CERT_FILE``). Other hosts are refused, so nothing leaves the machine.
"""
from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

SLACK_HOST = "slack.com"


class FakeSlackWebhook:
    """``fail_first`` requests are answered 500 (a receiver that is briefly down); ``port``:
    listen there (a receiver that comes up later at a known address)."""

    def __init__(self, fail_first: int = 0, port: int = 0) -> None:
        self.posts: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.messages: list[dict[str, Any]] = []  # chat.postMessage calls, with their token
        self.keys: list[str | None] = []  # each attempt's Idempotency-Key, failed ones too
        self.attempts = 0
        self.fail_first = fail_first
        import trustme  # a test and demo dependency; the package does not need it

        self._ca = trustme.CA()
        self.ca_pem = self._ca.cert_pem.bytes()
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert(SLACK_HOST).configure_cert(self._tls)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{base}/services/T000/B000/XXXX"
        self.api_url = f"{base}/api/"
        self.proxy_url = base
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_CONNECT(self) -> None:  # noqa: N802 - http.server's name
                if self.path != f"{SLACK_HOST}:443":
                    self.send_error(403, "this fake proxy only reaches slack.com")
                    return
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                tls = outer._tls.wrap_socket(self.connection, server_side=True)
                # The rest of this connection is HTTP inside TLS, served by this handler.
                self.connection = tls
                self.rfile = tls.makefile("rb")
                self.wfile = tls.makefile("wb")
                self.close_connection = False

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.endswith("/api/chat.postMessage"):
                    self._post_message(body)
                    return
                outer.attempts += 1
                outer.keys.append(self.headers.get("Idempotency-Key"))
                if outer.attempts <= outer.fail_first:
                    self._answer(500, b"down")
                    return
                outer.headers.append(dict(self.headers.items()))
                outer.posts.append(json.loads(body))
                self._answer(200, b"ok")

            def _post_message(self, body: bytes) -> None:
                kind = self.headers.get("Content-Type", "")
                args = (json.loads(body) if kind.startswith("application/json")
                        else dict(parse_qsl(body.decode())))
                auth = self.headers.get("Authorization", "")
                outer.messages.append({**args, "token": auth.removeprefix("Bearer "),
                                       "host": self.headers.get("Host")})
                reply = {"ok": True, "channel": args.get("channel"), "ts": f"{time.time():.6f}",
                         "message": {"text": args.get("text")}}
                self._answer(200, json.dumps(reply).encode(), "application/json")

            def _answer(self, code: int, body: bytes, kind: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def wait_for(self, n: int, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.posts) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return list(self.posts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    """A port nobody listens on now (a receiver that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
