"""A real local HTTP server answering CORS as the OCTO API behind Fly does.

Modes (`CorsServer.mode`):

- "backend": the OCTO backend (../shared/reference/octo-backend.md): every
  preflight gets 200; an origin in `allowed` gets Access-Control-Allow-Origin
  echoing it, Allow-Credentials true and Vary: Origin, any other origin the
  same 200 without CORS headers. With `fly` set, `allowed` is read on every
  request from the API's OCTO_CORS_ORIGINS in the flyctl double, once a
  deploy has applied it (a staged value does nothing yet), trailing slashes
  ignored as the backend ignores them.
- "trailing-slash": echoes the origin with a trailing slash.
- "wildcard": Access-Control-Allow-Origin: * with Allow-Credentials: true.
- "methods": allows the origin but only GET and POST.
- "proxy-502": Fly's proxy answering 502 itself, before the app (no machine
  could be started): an empty body, Fly's own headers, no CORS headers.
- "hang": answers nothing for a minute.

Every answer carries the headers Fly's proxy adds (`server: Fly/...`,
`via: 1.1 fly.io`, `fly-request-id`), as recorded from real Fly answers.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = "octodrop-platform-api"
FLY_HEADERS = (
    ("server", "Fly/4b9f0919f (2026-09-15)"),
    ("via", "1.1 fly.io"),
    ("fly-request-id", "01K3W7W9MFZ64Z9H1W1NN9YJQP-syd"),
)
METHODS = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"


class CorsHandler(BaseHTTPRequestHandler):
    server: CorsServer

    def do_OPTIONS(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("OPTIONS")

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def _handle(self, method: str) -> None:
        with self.server.lock:
            self.server.requests.append(
                {"method": method, "path": self.path, "headers": dict(self.headers)}
            )
        status, headers, body = self.server.answer(method, dict(self.headers))
        self.send_response(status)
        for name, value in (*headers, *FLY_HEADERS):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class CorsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), CorsHandler)
        self.mode = "backend"
        self.allowed: set[str] = set()
        self.fly = None
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def allowed_origins(self) -> set[str]:
        if self.fly is None:
            return self.allowed
        app = self.fly.state["apps"][API]
        secret = app["secrets"].get("OCTO_CORS_ORIGINS")
        applied = min((m["release_tick"] for m in app["machines"]), default=0)
        if not secret or secret["updated"] > applied:
            return set()
        return {o.strip().rstrip("/") for o in secret["value"].split(",") if o.strip()}

    def answer(
        self, method: str, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        lower = {k.lower(): v for k, v in headers.items()}
        origin = lower.get("origin", "")
        if self.mode == "hang":
            time.sleep(60)
        if self.mode == "proxy-502":
            return 502, [], b""
        cors: list[tuple[str, str]] = []
        if self.mode == "wildcard":
            cors = [
                ("access-control-allow-origin", "*"),
                ("access-control-allow-credentials", "true"),
            ]
        elif self.mode == "trailing-slash":
            cors = [
                ("access-control-allow-origin", origin + "/"),
                ("access-control-allow-credentials", "true"),
                ("vary", "Origin"),
            ]
        elif self.mode == "methods" or origin in self.allowed_origins():
            cors = [
                ("access-control-allow-origin", origin),
                ("access-control-allow-credentials", "true"),
                ("vary", "Origin"),
            ]
        if method == "OPTIONS":
            if cors:
                methods = "GET, POST" if self.mode == "methods" else METHODS
                cors.append(("access-control-allow-methods", methods))
                cors.append(("access-control-max-age", "600"))
                requested = lower.get("access-control-request-headers")
                if requested:
                    # Starlette's allow_headers=["*"] echoes what was asked.
                    cors.append(("access-control-allow-headers", requested))
            return 200, [*cors, ("content-type", "text/plain; charset=utf-8")], b"OK"
        body = json.dumps(
            {
                "ok": False,
                "errors": [
                    {
                        "code": "AUTH_MISSING_TOKEN",
                        "message": "missing bearer token",
                        "path": None,
                        "detail": None,
                    }
                ],
                "warnings": [],
            }
        ).encode()
        return 401, [*cors, ("content-type", "application/json")], body
