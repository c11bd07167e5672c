"""Fixtures shared by the acceptance tests: a project copy, the flyctl
double on PATH, a real local health server, and a way to run `inv`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOUBLE = Path(__file__).with_name("double") / "flyctl.py"
PROJECT_FILES = [
    "tasks.py",
    "invoke.yaml",
    "fly.toml",
    "fly.worker.toml",
    "pyproject.toml",
]

API = "octodrop-platform-api"
WORKER = "octodrop-platform-worker"
OPERATOR_TOKEN = "tok-operator"
RUNNER_VARIABLES_DROPPED = (
    "FLY_",
    "INVOKE_",
    "PYTEST_",
    "SUPABASE_",
    "OPENAI_",
    "WORKER_",
    "USE_DB",
    "OCTO_",
    "SMOKE_",
)
# Sentinel values: they must never appear in any output or flyctl argument.
SENTINEL_TOKEN = "FlyV1 fm2_SENTINEL-TOKEN-4f9a"


def required_secrets() -> dict[str, list[str]]:
    """The required names per app, read from the committed invoke.yaml."""
    from invoke.vendor import yaml

    data = yaml.safe_load((REPO / "invoke.yaml").read_text(encoding="utf-8"))
    apps = data["octo"]["apps"]
    return {
        a["name"]: a["required_secrets"] + a["optional_secrets"] for a in apps.values()
    }


def default_state() -> dict:
    """Two healthy apps on release v3, every required secret deployed."""
    names = required_secrets()
    apps = {}
    for name, kind, machines in ((API, "http", 2), (WORKER, "worker", 1)):
        image = f"registry.fly.io/{name}:deployment-01K3B7Q9X2M4N6P8R0S2T4V{kind[:2].upper()}"
        releases = [
            {
                "id": f"rel{v}",
                "version": v,
                "status": "complete",
                "image": f"registry.fly.io/{name}:deployment-01K3OLD000000000000000000{v}",
                "created_at": f"2026-08-1{v}T10:00:00Z",
                "tick": v,
            }
            for v in (1, 2)
        ]
        releases.append(dict(releases[-1], id="rel3", version=3, image=image, tick=3))
        apps[name] = {
            "name": name,
            "kind": kind,
            "deployed": True,
            "secrets": {
                n: {
                    "digest": f"{abs(hash(n)) % 16**16:016x}",
                    "value": f"v-{n}",
                    "updated": 1,
                }
                for n in names[name]
                if n not in ("OCTO_CORS_ORIGINS", "OCTO_CORS_ORIGIN_REGEXES")
            },
            "releases": releases,
            "machines": [
                {
                    "id": f"{'148e272a6423' if kind == 'http' else '6e82541c7d90'}{i:02d}",
                    "region": "syd",
                    "state": "started",
                    "process": "app" if kind == "http" else "worker",
                    "version": 3,
                    "image": image,
                    "release_tick": 3,
                    "checks": [
                        {
                            "name": "servicecheck-00-http-8080",
                            "status": "passing",
                            "output": '{"ok":true}',
                        }
                    ]
                    if kind == "http"
                    else [],
                    "exits": 0,
                }
                for i in range(machines)
            ],
            "poller": None
            if kind == "http"
            else {
                "message": "INFO:octo.db.query:db_query={'query': 'jobs.claim_batch_any', "
                "'ms': 2.31, 'wire_ms': 1.9, 'decode_ms': 0.02, 'rowcount': 0, "
                "'params': [1200, 5, '5b8e7f2a']}",
                "interval": 0.3,
            },
        }
    return {
        "version": "0.4.87",
        "tick": 3,
        "config_token": OPERATOR_TOKEN,
        "tokens": {
            OPERATOR_TOKEN: {"email": "operator@example.com", "apps": None},
            SENTINEL_TOKEN: {"email": "ci@example.com", "apps": None},
        },
        "apps": apps,
        "faults": {},
    }


class FlyDouble:
    """The flyctl double's state folder and the PATH entry that runs it."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "fly-state"
        self.bin = root / "bin"
        self.dir.mkdir(parents=True)
        self.bin.mkdir(parents=True)
        self.write(default_state())
        # A running API has lines in its log buffer; `logs --no-tail` on an
        # empty buffer waits for one, as the real flyctl does.
        self.append_log(API, "INFO:     Uvicorn running on http://0.0.0.0:8080")
        python = sys.executable
        if os.name == "nt":
            (self.bin / "flyctl.cmd").write_text(f'@"{python}" "{DOUBLE}" %*\r\n')
        else:
            script = self.bin / "flyctl"
            script.write_text(f'#!/bin/sh\nexec "{python}" "{DOUBLE}" "$@"\n')
            script.chmod(0o755)

    @property
    def state(self) -> dict:
        return json.loads((self.dir / "state.json").read_text(encoding="utf-8"))

    def write(self, state: dict) -> None:
        (self.dir / "state.json").write_text(
            json.dumps(state, indent=1), encoding="utf-8"
        )

    def update(self, change) -> None:
        state = self.state
        change(state)
        self.write(state)

    def fault(self, kind: str, value) -> None:
        """Inject a fault: hang/deploy_health_fail/crash_loop/silent lists, or fail."""

        def add(state: dict) -> None:
            if kind == "fail":
                state["faults"].setdefault("fail", {}).update(value)
            else:
                state["faults"].setdefault(kind, []).append(value)

        self.update(add)

    def bad_build(self, app: str, kind: str) -> None:
        """Make every image a deploy builds for APP misbehave with KIND.

        KIND is deploy_health_fail, crash_loop or silent. Images deployed by
        ref (a rollback) are unaffected, so the fault follows the new build.
        """
        self.update(
            lambda s: (
                s["faults"]
                .setdefault("bad_builds", {})
                .setdefault(app, [])
                .append(kind)
            )
        )

    def log_out(self) -> None:
        self.update(lambda s: s.update(config_token=None))

    def restrict_token(self, token: str, apps: list[str]) -> None:
        self.update(lambda s: s["tokens"][token].update(apps=apps))

    def calls(self) -> list[dict]:
        path = self.dir / "calls.jsonl"
        if not path.exists():
            return []
        return [
            json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
        ]

    def commands(self) -> list[str]:
        return [call["command"] for call in self.calls()]

    def secret_value(self, app: str, name: str) -> str | None:
        secret = self.state["apps"][app]["secrets"].get(name)
        return secret["value"] if secret else None

    def append_log(
        self,
        app: str,
        message: str,
        instance: str = "",
        level: str = "info",
        seconds_ago: float = 0.0,
    ):
        logs = self.dir / "logs"
        logs.mkdir(exist_ok=True)
        if not instance:
            instance = self.state["apps"][app]["machines"][0]["id"]
        logged = time.gmtime(time.time() - seconds_ago)
        entry = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", logged),
            "instance": instance,
            "region": "syd",
            "level": level,
            "message": message,
        }
        with (logs / f"{app}.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")


@pytest.fixture
def fly(tmp_path: Path) -> FlyDouble:
    return FlyDouble(tmp_path / "double")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the repository under a path with a space, like the operator's."""
    root = tmp_path / "My Projects" / "OCTO"
    root.mkdir(parents=True)
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, root / name)
    shutil.copytree(
        REPO / "tasks", root / "tasks", ignore=shutil.ignore_patterns("__pycache__")
    )
    return root


class HealthHandler(BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.hits += 1
        status, body, content_type = self.server.answer()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class HealthServer(ThreadingHTTPServer):
    """A real HTTP server for GET /health, with a chosen behaviour.

    mode: "ok"; "after" (503 until `good_after` seconds from the first hit);
    "never" (503); "hang" (answers nothing for a minute); "html" (200, HTML).
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), HealthHandler)
        self.mode = "ok"
        self.good_after = 0.0
        self.first_hit: float | None = None
        self.hits = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/health"

    def answer(self) -> tuple[int, bytes, str]:
        self.first_hit = self.first_hit or time.monotonic()
        if self.mode == "hang":
            time.sleep(60)
        if self.mode == "html":
            return 200, b"<html>502 Bad Gateway</html>", "text/html"
        healthy = self.mode == "ok" or (
            self.mode == "after"
            and time.monotonic() - self.first_hit >= self.good_after
        )
        if healthy:
            return 200, b'{"ok": true}', "application/json"
        return 503, b'{"ok": false}', "application/json"


def serving(server: ThreadingHTTPServer):
    """Serve SERVER on a thread for one test, then shut it down."""
    # A short poll keeps shutdown() (and so every test's teardown) quick.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def health() -> HealthServer:
    yield from serving(HealthServer())


def _dotenv_names(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    text = path.read_text(encoding="utf-8-sig")
    return set(re.findall(r"(?m)^\s*(?:export\s+)?([A-Za-z_]\w*)\s*=", text))


@pytest.fixture
def smoke_api(fly: FlyDouble):
    """Supabase Auth and the OCTO API on a local port; jobs feed the double's logs."""
    from smoke_server import SmokeServer

    yield from serving(SmokeServer(fly))


@pytest.fixture
def cors_api():
    """The API's CORS behaviour on a local port (see tests/cors_server.py)."""
    from cors_server import CorsServer

    yield from serving(CorsServer())


@dataclass
class InvResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def inv(project: Path, fly: FlyDouble, health: HealthServer, smoke_api):
    """Run the real `inv` in a subprocess, as the operator would.

    The smoke test's settings point at `smoke_api`, and its credentials are
    in the environment unless the project's `.env` names them (environment
    variables win over `.env`, so they would hide the test's own values).
    A None in ENV removes a variable.
    """
    import smoke_server

    def run(
        *args: str,
        env: dict | None = None,
        timeout: float = 120,
        cwd=None,
        stdin: str | None = None,
    ) -> InvResult:
        child = {
            k: v
            for k, v in os.environ.items()
            # The tests' own settings and secrets only: real environment
            # variables win over .env, so the runner's would leak in.
            if not k.startswith(RUNNER_VARIABLES_DROPPED)
        }
        child.update(
            PATH=str(fly.bin) + os.pathsep + child.get("PATH", ""),
            FLYCTL_DOUBLE_STATE=str(fly.dir),
            NO_COLOR="1",
            PYTHONUTF8="1",
            INVOKE_OCTO_APPS_API_HEALTH_URL=health.url,
            INVOKE_OCTO_TIMEOUTS_HEALTH="6",
            INVOKE_OCTO_TIMEOUTS_MACHINES="6",
            INVOKE_OCTO_TIMEOUTS_WORKER_LOGS="5",
            INVOKE_OCTO_TIMEOUTS_COMMAND="10",
            INVOKE_OCTO_SMOKE_API_URL=smoke_api.url,
            INVOKE_OCTO_SMOKE_ENTITY_ID=smoke_server.ENTITY,
            INVOKE_OCTO_SMOKE_TEMPLATE_ID=smoke_server.TEMPLATE,
            INVOKE_OCTO_SMOKE_DEADLINE="5",
            INVOKE_OCTO_SMOKE_POLL_SECONDS="0.2",
        )
        in_dotenv = _dotenv_names(Path(cwd or project) / ".env")
        credentials = {
            "SUPABASE_URL": smoke_api.url,
            "SUPABASE_ANON_KEY": smoke_server.ANON_KEY,
            "SMOKE_EMAIL": smoke_server.EMAIL,
            "SMOKE_PASSWORD": smoke_server.PASSWORD,
        }
        child.update({k: v for k, v in credentials.items() if k not in in_dotenv})
        for name, value in (env or {}).items():
            if value is None:
                child.pop(name, None)
            else:
                child[name] = value
        completed = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=cwd or project,
            env=child,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
        )
        return InvResult(completed.returncode, completed.stdout, completed.stderr)

    return run
