"""Local HTTP servers standing in for OpenAI's models endpoint and Supabase
Storage's bucket endpoint, answering with their documented bodies."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

GOOD_OPENAI_KEY = "sk-proj-" + "k" * 40 + "T3BlbkFJ" + "q" * 40
GOOD_SERVICE_KEY = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"
MODELS = {"gpt-4o-mini"}
BUCKETS = {"attachments", "team's branding"}

BAD_KEY = {
    "error": {
        "message": "Incorrect API key provided: sk-proj-****abcd. You can find your "
        "API key at https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}
NO_MODEL = {
    "error": {
        "message": "The model `gpt-foo` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }
}
NO_BUCKET = {
    "statusCode": "404",
    "code": "NoSuchBucket",
    "error": "Bucket not found",
    "message": "Bucket not found",
}
GATEWAY_BAD_KEY = {
    "message": "Invalid API key",
    "hint": "Double check your Supabase `anon` or `service_role` API key.",
}


class Handler(BaseHTTPRequestHandler):
    server: FakeServices

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.requests.append((self.path, dict(self.headers)))
        if self.path.startswith("/v1/models/"):
            status, body = self._model(unquote(self.path.removeprefix("/v1/models/")))
        elif self.path.startswith("/storage/v1/bucket/"):
            status, body = self._bucket(
                unquote(self.path.removeprefix("/storage/v1/bucket/"))
            )
        else:
            status, body = 404, {"message": "no route"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _model(self, model: str) -> tuple[int, dict]:
        if self.headers.get("Authorization") != f"Bearer {GOOD_OPENAI_KEY}":
            return 401, BAD_KEY
        if model not in MODELS:
            return 404, NO_MODEL
        return 200, {
            "id": model,
            "object": "model",
            "created": 1721172741,
            "owned_by": "system",
        }

    def _bucket(self, bucket: str) -> tuple[int, dict]:
        if self.headers.get("apikey") != GOOD_SERVICE_KEY:
            return 401, GATEWAY_BAD_KEY
        if bucket not in BUCKETS:
            return 400, NO_BUCKET
        return 200, {
            "id": bucket,
            "name": bucket,
            "owner": "",
            "public": False,
            "created_at": "2025-01-01T00:00:00.000Z",
            "updated_at": "2025-01-01T00:00:00.000Z",
            "file_size_limit": None,
            "allowed_mime_types": None,
        }

    def log_message(self, *args) -> None:
        pass


class FakeServices(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, dict]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def start() -> FakeServices:
    server = FakeServices()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
