"""A real local HTTP server standing in for Supabase Auth and the OCTO API.

It answers the shapes of ../shared/reference/octo-backend.md and of
supabase-openai.md section 8.2, checks the `apikey` header on sign-in and
the bearer token on every API call, and plays the worker: a generated
document's job moves through its statuses in a background thread while
the matching worker lines are appended to the flyctl double's log buffer,
which an open `flyctl logs` stream follows live.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

EMAIL = "smoke@example.com"
USER_ID = "8d0c6d2e-0000-4000-8000-000000000001"
# Sentinel values: none may ever appear in the tasks' output.
PASSWORD = "pw-SENTINEL-smoke-3f7a"
ANON_KEY = "anon-SENTINEL-key-9d21"
ACCESS_TOKEN = "at-SENTINEL-access-61bc"
REFRESH_TOKEN = "rt-SENTINEL-refresh-0e4d"
SENTINELS = (PASSWORD, ANON_KEY, ACCESS_TOKEN, REFRESH_TOKEN)
ENTITY = "ent-smoke"
TEMPLATE = "tpl-smoke"
WORKER = "octodrop-platform-worker"
LAST_ERROR = "openai: 401 invalid_api_key (Incorrect API key provided)"

ROUTES = ("/modules", "/records", "/documents/generate", "/ops/jobs")
# How the worker treats a generated document's job.
JOB_MODES = ("succeed", "dead", "unclaimed", "disagree")


class SmokeHandler(BaseHTTPRequestHandler):
    server: SmokeServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with self.server.lock:
            self.server.requests.append(
                {"method": method, "path": self.path, "headers": dict(self.headers)}
            )
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        status, answer = self.server.answer(
            method, url.path, parse_qs(url.query), dict(self.headers), body
        )
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if isinstance(answer, dict) and answer.get("error_code"):
            self.send_header("x-sb-error-code", answer["error_code"])
        for name, value in self.server.extra_headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def ok(**fields: Any) -> dict:
    return {"ok": True, "errors": [], "warnings": [], **fields}


def error(code: str, message: str, path: str | None = None) -> dict:
    return {
        "ok": False,
        "errors": [{"code": code, "message": message, "path": path, "detail": None}],
        "warnings": [],
    }


class SmokeServer(ThreadingHTTPServer):
    """Supabase Auth and the OCTO API on one local port.

    `job_mode` (one of JOB_MODES) says what the worker does with a job;
    `failures` maps a route such as "POST /records" to a (status, body)
    answer that replaces the normal one.
    """

    daemon_threads = True

    def __init__(self, fly) -> None:
        super().__init__(("127.0.0.1", 0), SmokeHandler)
        self.fly = fly
        self.job_mode = "succeed"
        self.failures: dict[str, tuple[int, Any]] = {}
        # Headers added to every answer, e.g. those of Fly's proxy.
        self.extra_headers: list[tuple[str, str]] = []
        self.step_seconds = 0.15
        self.records: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self._numbers = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def dotenv(self, password: str = PASSWORD) -> str:
        """A `.env` holding the smoke user's credentials."""
        return (
            f"SUPABASE_URL={self.url}\n"
            f"SUPABASE_ANON_KEY={ANON_KEY}\n"
            f"SMOKE_EMAIL={EMAIL}\n"
            f'SMOKE_PASSWORD="{password}"\n'
        )

    def routes(self) -> list[str]:
        """Method and path of every request, query strings left out."""
        return [f"{r['method']} {urlsplit(r['path']).path}" for r in self.requests]

    # --- answers -------------------------------------------------------------

    def answer(
        self, method: str, path: str, query: dict, headers: dict, body: Any
    ) -> tuple[int, Any]:
        if path == "/auth/v1/token" and method == "POST":
            return self._sign_in(query, headers, body)
        auth = headers.get("Authorization", "")
        if not auth:
            return 401, error("AUTH_MISSING_TOKEN", "Missing bearer token")
        if auth != f"Bearer {ACCESS_TOKEN}":
            return 401, error("AUTH_INVALID_TOKEN", "Invalid token")
        prefix = next((r for r in ROUTES if path.startswith(r)), path)
        route = f"{method} {prefix}"
        if route in self.failures:
            return self.failures[route]
        parts = path.strip("/").split("/")
        if route == "GET /modules":
            return 200, ok(modules=[{"id": "crm", "name": "CRM"}, {"id": "docs"}])
        if route == "POST /records" and len(parts) == 2:
            return self._create(parts[1], body)
        if route == "PUT /records" and len(parts) == 3:
            return self._update(parts[1], parts[2], body)
        if route == "POST /documents/generate":
            return self._generate(body)
        if route == "GET /ops/jobs" and len(parts) == 3:
            job = self.jobs.get(parts[2])
            if job is None:
                return 404, error("JOB_NOT_FOUND", f"no job {parts[2]}")
            with self.lock:
                return 200, ok(job=dict(job), events=list(job["events"]))
        return 404, error("NOT_FOUND", f"no route {method} {path}")

    def _sign_in(self, query: dict, headers: dict, body: Any) -> tuple[int, Any]:
        if headers.get("apikey") != ANON_KEY:
            return 401, {
                "message": "Invalid API key",
                "hint": "Double check your Supabase `anon` or `service_role` API key.",
            }
        if query.get("grant_type") != ["password"]:
            return 400, {
                "code": 400,
                "error_code": "invalid_credentials",
                "msg": "unsupported_grant_type",
            }
        body = body if isinstance(body, dict) else {}
        if body.get("email") != EMAIL or body.get("password") != PASSWORD:
            return 400, {
                "code": 400,
                "error_code": "invalid_credentials",
                "msg": "Invalid login credentials",
            }
        return 200, {
            "access_token": ACCESS_TOKEN,
            "token_type": "bearer",
            "expires_in": 3600,
            "expires_at": int(time.time()) + 3600,
            "refresh_token": REFRESH_TOKEN,
            "user": {
                "id": USER_ID,
                "aud": "authenticated",
                "role": "authenticated",
                "email": EMAIL,
            },
        }

    def _create(self, entity: str, body: Any) -> tuple[int, Any]:
        if entity != ENTITY:
            return 404, error("ENTITY_NOT_FOUND", f"no entity {entity}")
        if not isinstance(body, dict) or not body:
            return 422, error("RECORD_INVALID", "a record needs fields")
        record_id = f"rec-{next(self._numbers)}"
        with self.lock:
            self.records[record_id] = dict(body)
        return 200, ok(record={"id": record_id, **body})

    def _update(self, entity: str, record_id: str, body: Any) -> tuple[int, Any]:
        if entity != ENTITY or record_id not in self.records:
            return 404, error("RECORD_NOT_FOUND", f"no record {record_id}")
        with self.lock:
            self.records[record_id].update(body or {})
            return 200, ok(record={"id": record_id, **self.records[record_id]})

    def _generate(self, body: Any) -> tuple[int, Any]:
        body = body if isinstance(body, dict) else {}
        if body.get("template_id") != TEMPLATE:
            return 404, error("TEMPLATE_NOT_FOUND", "no such template", "template_id")
        if body.get("record_id") not in self.records:
            return 404, error("RECORD_NOT_FOUND", "no such record", "record_id")
        job = {
            "id": str(uuid.uuid4()),
            "type": "doc_generate",
            "status": "queued",
            "attempts": 0,
            "last_error": None,
            "events": [{"type": "job_queued"}],
        }
        with self.lock:
            self.jobs[job["id"]] = job
        threading.Thread(
            target=self._work, args=(job["id"], dict(body)), daemon=True
        ).start()
        return 200, ok(job={"id": job["id"], "status": "queued"})

    # --- the worker ----------------------------------------------------------

    def _set(self, job_id: str, **fields: Any) -> None:
        with self.lock:
            job = self.jobs[job_id]
            job.update(fields)
            job["events"].append({"type": f"job_{job['status']}"})

    def _log(self, message: str) -> None:
        self.fly.append_log(WORKER, message)

    def _work(self, job_id: str, request: dict) -> None:
        """Play the worker for one job, after a short delay, as it polls."""
        if self.job_mode == "unclaimed":
            return
        time.sleep(self.step_seconds)
        self._log(
            "INFO:octo.db.query:db_query={'query': 'jobs.claim_batch_any', "
            "'ms': 3.02, 'wire_ms': 2.61, 'decode_ms': 0.03, 'rowcount': 1, "
            "'params': [1200, 5, '5b8e7f2a-0c1d-4e5f-8a9b-0c1d2e3f4a5b']}"
        )
        self._set(job_id, status="running", attempts=1)
        self._log(
            f"INFO:octo.jobs:doc_generate_start job_id={job_id} "
            f"template_id={request['template_id']} entity_id={request['entity_id']} "
            f"record_id={request['record_id']}"
        )
        time.sleep(self.step_seconds)
        if self.job_mode == "dead":
            self._set(job_id, status="dead", attempts=10, last_error=LAST_ERROR)
            return
        self._log(
            f"INFO:octo.jobs:doc_generate_succeeded job_id={job_id} "
            "attachment_id=att-1 filename=smoke-test.pdf"
        )
        if self.job_mode == "succeed":
            self._set(job_id, status="succeeded")
