"""A test double of flyctl v0.4.87, for the acceptance tests.

Written from ../shared/reference/flyctl.md and ../shared/flyctl-samples/: the
same JSON shapes (4-space indent, Go key names and order), text shapes (ANSI
on log lines even when piped), `Error:` lines on stderr and exit codes.

State lives in the folder named by FLYCTL_DOUBLE_STATE:
    state.json         tokens, apps (secrets, releases, machines) and faults
    calls.jsonl        one line per invocation: argv and whether stdin was fed
    logs/<app>.jsonl   the app's log buffer, one compact entry per line;
                       `flyctl logs` follows it, and tests or the local smoke
                       server may append lines while a stream is open

Faults (state["faults"]):
    hang: [command, ...]          e.g. "status", "deploy", "logs", "secrets list"
    fail: {command: {"stderr": "...", "exit": 1}}   any command fails so
                                  (with "app": name, only for that app)
    deploy_health_fail: [app]     the first machine never passes health checks
    crash_loop: [app]             the new release keeps exiting (exit events,
                                  and its crash lines in the logs)
    silent: [app]                 the worker prints no polling lines
    garbage: [command]            prints an HTML error page and exits 0
    logs_unauthorized: [app]      `logs` fails with 401 Unauthorized
    missing_images: [image ref]   deploy --image cannot find it
    The lists deploy_health_fail, crash_loop and silent may also hold an
    image ref: then only a deploy of that image fails, or only machines
    running it stay silent, as when a bad build, not the app, is at fault.
    bad_builds: {app: [kind, ...]}  every image a deploy of APP builds (no
                                  --image) gets those faults; images deployed
                                  by ref keep theirs, so a rollback can work
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

STATE_DIR = Path(os.environ.get("FLYCTL_DOUBLE_STATE", "."))
STATE_FILE = STATE_DIR / "state.json"
NO_TOKEN = "no access token available. Please login with 'flyctl auth login'"
QUERY = (
    "failed to run query ($appName: String!) { appcompact:app(name: $appName) "
    "{ id internalNumericId name hostname cnameTarget deployed network status "
    "appUrl platformVersion organization { id internalNumericId slug paidPlan } "
    "postgresAppRole: role { name } } }"
)

# Flags per command: name -> takes a value. Short forms map to long ones.
COMMON = {"app": True, "config": True, "json": False}
SHORT = {
    "-a": "--app",
    "-c": "--config",
    "-j": "--json",
    "-t": "--access-token",
    "-n": "--no-tail",
    "-i": "--image",
    "-y": "--yes",
    "-r": "--region",
    "-q": "--quiet",
    "-m": "--machine",
}
COMMANDS = {
    "version": {"json": False},
    "auth whoami": {"json": False},
    "auth login": {"interactive": False, "email": True, "password": True, "otp": True},
    "auth logout": {},
    "apps list": {"json": False, "org": True, "quiet": False},
    "status": {**COMMON, "all": False, "deployment": False},
    "secrets list": COMMON,
    "secrets set": {**COMMON, "stage": False, "detach": False, "dns-checks": False},
    "secrets import": {**COMMON, "stage": False, "detach": False, "dns-checks": False},
    "secrets unset": {**COMMON, "stage": False, "detach": False, "dns-checks": False},
    "secrets deploy": {**COMMON, "detach": False, "dns-checks": False},
    "releases": {**COMMON, "image": False},
    "deploy": {
        **COMMON,
        "image": True,
        "remote-only": False,
        "local-only": False,
        "strategy": True,
        "wait-timeout": True,
        "yes": False,
        "detach": False,
        "deploy-retries": True,
        "now": False,
        "image-label": True,
    },
    "logs": {
        **COMMON,
        "no-tail": False,
        "region": True,
        "machine": True,
        "instance": True,
    },
    "checks list": {**COMMON, "check-name": True},
    "machine list": {**COMMON, "quiet": False},
}
ALIASES = {
    "secrets ls": "secrets list",
    "apps releases": "releases",
    "apps ls": "apps list",
    "machines list": "machine list",
    "machine ls": "machine list",
    "checks ls": "checks list",
}
GLOBAL = {"access-token": True, "verbose": False, "debug": False}


class FlyError(Exception):
    def __init__(self, message: str, code: int = 1, extra: str = "") -> None:
        super().__init__(message)
        self.message, self.code, self.extra = message, code, extra


# --- state ----------------------------------------------------------------


def load() -> dict:
    return json.loads(STATE_FILE.read_text(encoding="utf-8"))


def save(state: dict) -> None:
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    tmp.replace(STATE_FILE)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_nano() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def digest(value: str) -> str:
    # Value-only and stable, like Fly's (which cannot be computed locally).
    return hashlib.blake2b(value.encode(), key=b"fly-double", digest_size=8).hexdigest()


def ulid() -> str:
    return "01K" + "".join(random.choices("0123456789ABCDEFGHJKMNPQRSTVWXYZ", k=23))


def machine_id() -> str:
    return "".join(random.choices("0123456789abcdef", k=14))


def append_log(
    app: str, message: str, instance: str, region: str, level: str = "info"
) -> None:
    logs = STATE_DIR / "logs"
    logs.mkdir(exist_ok=True)
    entry = {
        "timestamp": now_nano(),
        "instance": instance,
        "region": region,
        "level": level,
        "message": message,
    }
    with (logs / f"{app}.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


# --- argument parsing -----------------------------------------------------


def parse(argv: list[str]) -> tuple[str, dict, list[str]]:
    words, flags, positional = [], {}, []
    i = 0
    command = None
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and arg != "-":
            name, _, inline = arg.partition("=")
            if not name.startswith("--"):
                if name not in SHORT:
                    raise FlyError(f"unknown shorthand flag: '{name[1:]}' in {arg}")
                name = SHORT[name]
            key = name[2:]
            spec = {**GLOBAL, **(COMMANDS.get(command, {}) if command else {})}
            if key not in spec:
                raise FlyError(f"unknown flag: {name}")
            if spec[key]:
                if inline:
                    flags[key] = inline
                else:
                    i += 1
                    if i >= len(argv):
                        raise FlyError(f"flag needs an argument: {name}")
                    flags[key] = argv[i]
            else:
                flags[key] = True
        elif command is None:
            words.append(arg)
            joined = " ".join(words)
            joined = ALIASES.get(joined, joined)
            if joined in COMMANDS:
                command = joined
            elif not any(c.startswith(joined + " ") for c in [*COMMANDS, *ALIASES]):
                print("Run 'flyctl --help' for usage.")
                raise FlyError(f'unknown command "{arg}" for "flyctl"')
        else:
            positional.append(arg)
        i += 1
    if command is None:
        raise FlyError("no command given")
    return command, flags, positional


# --- authentication -------------------------------------------------------


def token_of(state: dict, flags: dict) -> str | None:
    if "access-token" in flags:
        return flags["access-token"]
    # flyctl takes the first variable that is *set*, even when empty.
    for name in ("FLY_ACCESS_TOKEN", "FLY_API_TOKEN"):
        if name in os.environ:
            return os.environ[name]
    return state.get("config_token")


def session(state: dict, flags: dict) -> dict:
    token = token_of(state, flags)
    if not token:
        raise FlyError(NO_TOKEN)
    known = state["tokens"].get(token)
    if known is None:
        raise FlyError(f"{QUERY}: You must be authenticated to view this.")
    return known


def app_of(
    state: dict, flags: dict, who: dict, wrap: str = "failed to get app: "
) -> dict:
    name = flags.get("app") or os.environ.get("FLY_APP")
    if not name:
        raise FlyError(
            "the config for your app is missing an app name, add an app "
            "field to the fly.toml file or specify with the -a flag"
        )
    app = state["apps"].get(name)
    if app is None:
        raise FlyError(f'{wrap}{QUERY}: Could not find App "{name}"')
    if who.get("apps") is not None and name not in who["apps"]:
        raise FlyError(f"{wrap}{QUERY}: Not authorized to access this firecrackerapp")
    return app


# --- rendering -------------------------------------------------------------


def out_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=4) + "\n")


def secret_status(app: dict, secret: dict) -> str:
    machines = app["machines"]
    if not machines:
        return "Staged"
    applied = [m for m in machines if m["release_tick"] >= secret["updated"]]
    if len(applied) == len(machines):
        return "Deployed"
    return "Staged" if not applied else "Partial"


def machine_json(app: dict, m: dict) -> dict:
    repository, _, tag = m["image"].removeprefix("registry.fly.io/").partition(":")
    http = app["kind"] == "http"
    config = {
        "env": {
            "APP_ENV": "prod",
            "FLY_PROCESS_GROUP": m["process"],
            "PRIMARY_REGION": m["region"],
        },
        "init": {},
        "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 1024},
        "metadata": {
            "fly_flyctl_version": "0.4.87",
            "fly_platform_version": "v2",
            "fly_process_group": m["process"],
            "fly_release_id": f"rel{m['version']}",
            "fly_release_version": str(m["version"]),
        },
    }
    if http:
        config["services"] = [
            {
                "protocol": "tcp",
                "internal_port": 8080,
                "autostop": True,
                "autostart": True,
                "min_machines_running": 0,
                "checks": [
                    {
                        "type": "http",
                        "interval": "15s",
                        "timeout": "5s",
                        "method": "GET",
                        "path": "/health",
                        "protocol": "http",
                    }
                ],
            }
        ]
    config["image"] = m["image"]
    config["restart"] = {"policy": "on-failure", "max_retries": 10}
    data = {
        "id": m["id"],
        "name": f"machine-{m['id'][:4]}",
        "state": m["state"],
        "region": m["region"],
        "image_ref": {
            "registry": "registry.fly.io",
            "repository": repository,
            "tag": tag,
            "digest": "sha256:" + "0" * 64,
        },
        "instance_id": ulid(),
        "private_ip": "fdaa:9:1b2c:a7b:2f3::2",
        "created_at": "2026-08-01T09:12:44Z",
        "updated_at": now(),
        "config": config,
        "events": machine_events(m),
    }
    if http:
        data["checks"] = [dict(c, updated_at=now()) for c in m["checks"]]
    data["host_status"] = "ok"
    data["cordoned"] = False
    return data


def exit_event(code: int, requested: bool, restarts: int, at: int) -> dict:
    """An exit event as the Machines API records it (fly-go MachineEvent)."""
    return {
        "type": "exit",
        "status": "stopped",
        "request": {
            "exit_event": {
                "requested_stop": requested,
                "restarting": not requested and restarts < 10,
                "guest_exit_code": code,
                "guest_signal": -1,
                "guest_error": "",
                "exit_code": code,
                "signal": -1,
                "error": "",
                "oom_killed": False,
                "exited_at": "2026-08-21T10:04:00.614Z",
            },
            "restart_count": restarts,
        },
        "source": "flyd",
        "timestamp": at,
    }


def now_ms() -> int:
    return int(time.time() * 1000)


def machine_events(m: dict) -> list[dict]:
    """The machine's recent events, newest first, as flyctl prints them.

    A crash loop leaves one exit (code 1) per restart; a stop on request
    (Fly Proxy's auto-stop, `m["stopped_by"] == "autostop"`) leaves an exit
    with requested_stop after a stop from source "user".
    """
    # When the double last (re)started it; an older fixed time otherwise.
    at = m.get("started_ms", 1787234640000)
    events = [{"type": "start", "status": "started", "source": "flyd", "timestamp": at}]
    for i in range(1, m.get("exits", 0) + 1):
        events.append(exit_event(1, False, i, at + 10 * i))
        events.append(
            {
                "type": "start",
                "status": "started",
                "source": "flyd",
                "timestamp": at + 10 * i + 5,
            }
        )
    if m.get("exits") and m["state"] == "stopped":
        events.pop()  # the last restart never came
    if m.get("stopped_by") == "autostop":
        events.append(
            {
                "type": "stop",
                "status": "stopping",
                "request": {"reason": ""},
                "source": "user",
                "timestamp": at + 1000,
            }
        )
        events.append(exit_event(0, True, 0, at + 1001))
    return sorted(events, key=lambda e: e["timestamp"], reverse=True)


def crash_lines(app: dict, m: dict, command: str) -> None:
    """What a machine whose process exits at start-up leaves in the logs."""
    for line in (
        " INFO Starting init (commit: 3040ac0)...",
        f" INFO Preparing to run: `{command}` as root",
        " INFO Main child exited normally with code: 1",
        " INFO Starting clean up.",
        "machine has reached its max restart count of 10",
    ):
        append_log(app["name"], line, m["id"], m["region"])


# --- commands --------------------------------------------------------------


def cmd_version(state, flags, pos, stdin):
    v = state.get("version", "0.4.87")
    if flags.get("json"):
        print(
            json.dumps(
                {
                    "Name": "flyctl",
                    "Version": v,
                    "Commit": "3eb236fab6a9",
                    "BranchName": "",
                    "BuildDate": "2026-08-20T18:56:30Z",
                    "OS": "linux",
                    "Architecture": "amd64",
                    "Environment": "production",
                },
                separators=(",", ":"),
            )
        )
    else:
        print(
            f"flyctl v{v} linux/amd64 Commit: 3eb236fab6a9 BuildDate: 2026-08-20T18:56:30Z"
        )


def cmd_auth_whoami(state, flags, pos, stdin):
    try:
        who = session(state, flags)
    except FlyError as exc:
        if "authenticated" in exc.message:
            raise FlyError(
                "failed retrieving current user: You must be authenticated "
                "to view this."
            ) from None
        raise
    if flags.get("json"):
        out_json({"email": who["email"]})
    else:
        print(who["email"])


def cmd_auth_login(state, flags, pos, stdin):
    raise FlyError(
        "fly auth login requires an interactive terminal. In headless "
        "environments, set FLY_API_TOKEN to a token created with "
        "`fly tokens create`"
    )


def cmd_auth_logout(state, flags, pos, stdin):
    state["config_token"] = None
    save(state)


def cmd_apps_list(state, flags, pos, stdin):
    who = session(state, flags)
    if who.get("apps") is not None:
        raise FlyError("Not authorized to access this firecrackerapp")
    out_json(
        [
            {
                "ID": name,
                "Name": name,
                "Deployed": app["deployed"],
                "Status": "deployed",
            }
            for name, app in state["apps"].items()
        ]
    )


def cmd_status(state, flags, pos, stdin):
    app = app_of(state, flags, session(state, flags))
    version = max(
        (r["version"] for r in app["releases"] if r["status"] == "complete"), default=0
    )
    machines = sorted(app["machines"], key=lambda m: m["id"], reverse=True)
    name = app["name"]
    data = {
        "AppURL": f"https://{name}.fly.dev" if app["kind"] == "http" else "",
        "Deployed": app["deployed"],
        "Hostname": f"{name}.fly.dev",
        "ID": name,
        "Machines": [machine_json(app, m) for m in machines],
        "Name": name,
        "Organization": {
            "ID": "Zk3q",
            "InternalNumericID": "1",
            "Name": "",
            "Slug": "octo",
            "RawSlug": "",
            "PaidPlan": True,
        },
        "PlatformVersion": "machines",
        "Status": "deployed" if app["deployed"] else "pending",
        "Version": version,
    }
    if flags.get("json"):
        out_json(data)
        return
    print("\x1b[1mApp\x1b[0m")
    print(f" Name     │ {name} ")
    print()
    print("\x1b[1mMachines\x1b[0m")
    for m in machines:
        print(f" app │ {m['id']} │ {m['version']} │ {m['region']} │ {m['state']} ")
    print()


def cmd_secrets_list(state, flags, pos, stdin):
    app = app_of(state, flags, session(state, flags))
    rows = [
        {"name": n, "digest": s["digest"], "status": secret_status(app, s)}
        for n, s in sorted(app["secrets"].items())
    ]
    if flags.get("json"):
        out_json(rows)
        return
    print(" NAME │ DIGEST │ STATUS ")
    for r in rows:
        print(f" {r['name']} │ {r['digest']} │ {r['status']} ")
    print()


def parse_import(text: str) -> dict[str, str]:
    """flyctl's own secrets-import parser (reference section 3.4)."""
    values, lines = {}, text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise FlyError(
                "Failed to parse secrets from stdin: Secrets must be provided "
                f"as NAME=VALUE pairs ({line} is invalid)"
            )
        name, value = line.split("=", 1)
        name, value = name.strip(), value.lstrip(" ")
        if value.startswith('"""'):
            rest = value[3:]
            if rest.endswith('"""'):
                values[name] = rest[:-3]
                continue
            parts = [rest + "\n"]
            while i < len(lines):
                nxt = lines[i]
                i += 1
                if nxt.rstrip().endswith('"""'):
                    parts.append(nxt.rstrip()[:-3])
                    break
                parts.append(nxt + "\n")
            values[name] = "".join(parts)
            continue
        if "#" in value and value[: value.index("#")].count('"') % 2 == 0:
            value = value[: value.index("#")].rstrip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name] = value
    return values


def apply_secrets(state, app, flags, changes: dict[str, str | None]) -> None:
    state["tick"] += 1
    for name, value in changes.items():
        if value is None:
            app["secrets"].pop(name, None)
        else:
            app["secrets"][name] = {
                "digest": digest(value),
                "value": value,
                "updated": state["tick"],
            }
    if flags.get("stage"):
        print(
            "Secrets have been staged, but not set on VMs. Deploy or update machines "
            "in this app for the secrets to take effect."
        )
    elif not app["machines"]:
        print("Secrets are staged for the first deployment")
    else:
        restart(state, app)
    save(state)


def restart(state, app) -> None:
    state["tick"] += 1
    n = len(app["machines"])
    print(f"Updating existing machines in '{app['name']}' with rolling strategy")
    for i, m in enumerate(app["machines"], 1):
        m["release_tick"] = state["tick"]
        m["started_ms"] = now_ms()
        print(f"> [{i}/{n}] Updating {m['id']} [{m['process']}]")
        print(f"✔ [{i}/{n}] Machine {m['id']} [{m['process']}] update succeeded")


def cmd_secrets_set(state, flags, pos, stdin):
    app = app_of(state, flags, session(state, flags), wrap="")
    if not pos:
        raise FlyError("requires at least 1 arg(s), only received 0")
    changes = {}
    for arg in pos:
        name, eq, value = arg.partition("=")
        if not eq:
            raise FlyError(
                f"could not parse secrets: '{arg}': must be in the format NAME=VALUE"
            )
        changes[name] = value
    apply_secrets(state, app, flags, changes)


def cmd_secrets_import(state, flags, pos, stdin):
    app = app_of(state, flags, session(state, flags), wrap="")
    values = parse_import(stdin)
    if not values:
        raise FlyError("requires at least one SECRET=VALUE pair")
    apply_secrets(state, app, flags, values)


def cmd_secrets_unset(state, flags, pos, stdin):
    app = app_of(state, flags, session(state, flags), wrap="")
    apply_secrets(state, app, flags, {name: None for name in pos})


def cmd_secrets_deploy(state, flags, pos, stdin):
    app = app_of(state, flags, session(state, flags), wrap="")
    if not app["machines"]:
        raise FlyError(
            "no machines available to deploy",
            extra=(
                "'fly secrets deploy' will only work if the app has been deployed and "
                "there are machines available\n\nTry 'fly deploy' first\n"
            ),
        )
    restart(state, app)
    save(state)


def cmd_releases(state, flags, pos, stdin):
    try:
        app = app_of(state, flags, session(state, flags), wrap="")
    except FlyError as exc:
        if "Could not find" in exc.message or "Not authorized" in exc.message:
            raise FlyError(
                f"failed retrieving app releases {flags.get('app')}: {exc.message}"
            ) from None
        raise
    rows = sorted(app["releases"], key=lambda r: r["version"], reverse=True)[:25]
    out_json(
        [
            {
                "ID": r["id"],
                "Version": r["version"],
                "Stable": r["status"] == "complete",
                "InProgress": False,
                "Reason": "",
                "Description": "Release",
                "Status": r["status"],
                "DeploymentStrategy": "",
                "Metadata": None,
                "User": {
                    "ID": "x8Bq",
                    "Name": "Deploy Bot",
                    "Email": "deployer@example.com",
                    "EnablePaidHobby": False,
                },
                "EvaluationID": "",
                "CreatedAt": r["created_at"],
                "ImageRef": r["image"],
            }
            for r in rows
        ]
    )


def cmd_deploy(state, flags, pos, stdin):
    who = session(state, flags)
    config = flags.get("config", "fly.toml")
    path = Path(config)
    if not path.is_file():
        raise FlyError(f"config file not found at specified path: {config}")
    try:
        import tomllib

        tomllib.loads(path.read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001 - any parse error is flyctl's error too
        raise FlyError(f"failed loading app config from {path}: {exc}") from None
    app = app_of(state, flags, who, wrap="")
    name = app["name"]
    image = flags.get("image") or f"registry.fly.io/{name}:deployment-{ulid()}"
    if not flags.get("image"):
        # A fault of a bad build belongs to the image it produced.
        for kind in state["faults"].get("bad_builds", {}).get(name, []):
            state["faults"].setdefault(kind, []).append(image)
    if image in state.get("missing_images", []):
        raise FlyError(
            f"failed to fetch an image or build from source: could not "
            f'find image "{image}"'
        )
    err = sys.stderr
    err.write("==> Verifying app config\n--> Verified app config\n==> Building image\n")
    err.write(
        f"Searching for image '{image}' remotely...\nimage found: img_8rlxp2nzn32o\n"
    )
    err.flush()
    print(f"Validating {path.resolve()}")
    print("\x1b[32m✓\x1b[0m Configuration is valid\n")
    print(f"Watch your deployment at https://fly.io/apps/{name}/monitoring\n")
    print(f"Updating existing machines in '{name}' with rolling strategy")
    sys.stdout.flush()

    state["tick"] += 1
    version = max((r["version"] for r in app["releases"]), default=0) + 1
    release = {
        "id": f"rel{version}",
        "version": version,
        "status": "complete",
        "image": image,
        "created_at": now(),
        "tick": state["tick"],
    }
    app["releases"].append(release)
    if not app["machines"]:
        app["machines"] = [new_machine(app, image, version, state["tick"])]
    n = len(app["machines"])
    failing = {name, image} & set(state["faults"].get("deploy_health_fail", []))
    crashing = {name, image} & set(state["faults"].get("crash_loop", []))
    for i, m in enumerate(app["machines"], 1):
        tag = f"[{i}/{n}] " if n > 1 else ""
        print(f"> {tag}Updating machine config for {m['id']}")
        m.update(
            version=version,
            image=image,
            release_tick=state["tick"],
            state="started",
            started_ms=now_ms(),
        )
        m.pop("stopped_by", None)
        print(f"> {tag}Waiting for machine {m['id']} to reach a good state")
        sys.stdout.flush()
        if failing or crashing:
            if failing:
                m["checks"] = [
                    {
                        "name": "servicecheck-00-http-8080",
                        "status": "critical",
                        "output": "context deadline exceeded while awaiting headers",
                    }
                ]
                reason = (
                    f"failed to update machine {m['id']}: Unrecoverable error: timeout "
                    f"reached waiting for health checks to pass for machine {m['id']}: "
                    f'failed to get VM {m["id"]}: Get "https://api.machines.dev/v1/'
                    f'apps/{name}/machines/{m["id"]}": net/http: request canceled'
                )
            else:
                m["exits"] = 5
                m["state"] = "stopped"
                command = (
                    "uvicorn app.main:app --host 0.0.0.0 --port 8080"
                    if app["kind"] == "http"
                    else "python -m app.worker"
                )
                crash_lines(app, m, command)
                reason = (
                    f"smoke checks for {m['id']} failed: the app appears to be crashing"
                )
            print(f"✖ {tag}Unrecoverable error: {reason}")
            for j in range(i + 1, n + 1):
                print(f"✖ [{j}/{n}] skipping machine update due to earlier failure")
            release["status"] = "failed"
            app["deployed"] = True
            save(state)
            raise FlyError(reason)
        m["checks"] = (
            [
                {
                    "name": "servicecheck-00-http-8080",
                    "status": "passing",
                    "output": '{"ok":true}',
                }
            ]
            if app["kind"] == "http"
            else []
        )
        m["exits"] = 0
        print(f"✔ {tag}Machine {m['id']} is now in a good state")
        start_lines(app, m)
    app["deployed"] = True
    save(state)
    if app["kind"] == "http":
        err.write(
            f"Checking DNS configuration for {name}.fly.dev\n✓ DNS configuration verified\n"
        )
        print(f"\nVisit your newly deployed app at https://{name}.fly.dev/\n")
    if os.environ.get("FLY_EMIT_RELEASE_JSON") == "1":
        print(
            json.dumps(
                {"id": release["id"], "version": version, "image_ref": image},
                separators=(",", ":"),
            )
        )


def new_machine(app, image, version, tick) -> dict:
    return {
        "id": machine_id(),
        "region": "syd",
        "state": "started",
        "process": "app" if app["kind"] == "http" else "worker",
        "version": version,
        "image": image,
        "release_tick": tick,
        "checks": [],
        "exits": 0,
        "started_ms": now_ms(),
    }


def start_lines(app, m) -> None:
    if app["kind"] == "http":
        lines = [
            "INFO:     Started server process [642]",
            "INFO:octo:db_rtt host=db.example.supabase.co port=5432 rtt_ms=3.1",
            "INFO:     Uvicorn running on http://0.0.0.0:8080 (Press CTRL+C to quit)",
        ]
    else:
        lines = [
            "worker_start worker_id=5b8e7f2a-0c1d-4e5f-8a9b-0c1d2e3f4a5b mode=shared "
            "scoped_org_id=None poll_ms=1000 batch_size=5"
        ]
    for line in lines:
        append_log(app["name"], line, m["id"], m["region"])


def render_log(entry: dict, as_json: bool) -> str:
    if as_json:
        full = {
            "level": entry["level"],
            "instance": entry["instance"],
            "message": entry["message"],
            "region": entry["region"],
            "timestamp": entry["timestamp"],
            "meta": {
                "Instance": entry["instance"],
                "Region": entry["region"],
                "Event": {"Provider": "app"},
                "HTTP": {
                    "Request": {"ID": "", "Method": "", "Version": ""},
                    "Response": {"status_code": 0},
                },
                "Error": {"Code": 0, "Message": ""},
                "URL": {"Full": ""},
            },
        }
        return json.dumps(full, indent=4) + "\n"
    stamp = entry["timestamp"][:19] + "Z"
    return (
        f"\x1b[2m{stamp}\x1b[0m app[{entry['instance']}] \x1b[32m{entry['region']}"
        f"\x1b[0m [\x1b[34m{entry['level']}\x1b[0m]{entry['message']}\n"
    )


def cmd_logs(state, flags, pos, stdin):
    app = app_of(state, flags, session(state, flags), wrap="")
    name = app["name"]
    if (
        state["faults"].get("logs_unauthorized")
        and name in state["faults"]["logs_unauthorized"]
    ):
        raise FlyError("401 Unauthorized")
    as_json = bool(flags.get("json"))
    path = STATE_DIR / "logs" / f"{name}.jsonl"
    offset = 0

    def drain() -> int:
        nonlocal offset
        if not path.exists():
            return 0
        with path.open(encoding="utf-8") as fh:
            fh.seek(offset)
            chunk = fh.read()
        complete = chunk[: chunk.rfind("\n") + 1]
        offset += len(complete.encode("utf-8"))
        count = 0
        for line in complete.splitlines():
            if line.strip():
                sys.stdout.write(render_log(json.loads(line), as_json))
                count += 1
        sys.stdout.flush()
        return count

    printed = drain()
    if flags.get("no-tail") and printed:
        return
    # --no-tail on an empty buffer keeps polling, as the real one does.
    poller = (
        app.get("poller") if name not in state["faults"].get("silent", []) else None
    )
    next_poll = time.monotonic()
    while True:
        drain()
        if poller and not flags.get("no-tail") and time.monotonic() >= next_poll:
            current = load()
            silent = set(current["faults"].get("silent", []))
            for m in current["apps"][name]["machines"]:
                if m["state"] == "started" and m["image"] not in silent:
                    entry = {
                        "timestamp": now_nano(),
                        "instance": m["id"],
                        "region": m["region"],
                        "level": "info",
                        "message": poller["message"],
                    }
                    sys.stdout.write(render_log(entry, as_json))
            sys.stdout.flush()
            next_poll = time.monotonic() + poller.get("interval", 0.5)
        time.sleep(0.05)


def cmd_checks_list(state, flags, pos, stdin):
    app = app_of(state, flags, session(state, flags))
    out_json(
        {
            m["id"]: [dict(c, updated_at=now()) for c in m["checks"]]
            for m in sorted(app["machines"], key=lambda m: m["id"])
        }
    )


def cmd_machine_list(state, flags, pos, stdin):
    app = app_of(state, flags, session(state, flags))
    out_json([machine_json(app, m) for m in app["machines"]])


HANDLERS = {
    "version": cmd_version,
    "auth whoami": cmd_auth_whoami,
    "auth login": cmd_auth_login,
    "auth logout": cmd_auth_logout,
    "apps list": cmd_apps_list,
    "status": cmd_status,
    "secrets list": cmd_secrets_list,
    "secrets set": cmd_secrets_set,
    "secrets import": cmd_secrets_import,
    "secrets unset": cmd_secrets_unset,
    "secrets deploy": cmd_secrets_deploy,
    "releases": cmd_releases,
    "deploy": cmd_deploy,
    "logs": cmd_logs,
    "checks list": cmd_checks_list,
    "machine list": cmd_machine_list,
}


def main(argv: list[str]) -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")
        sys.stderr.reconfigure(encoding="utf-8")
    stdin = ""
    try:
        command, flags, pos = parse(argv)
        state = load()
        if command in ("secrets import",) or "-" in [p.partition("=")[2] for p in pos]:
            stdin = sys.stdin.read()
        with (STATE_DIR / "calls.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(
                json.dumps(
                    {
                        "argv": argv,
                        "command": command,
                        "cwd": os.getcwd(),
                        "stdin": bool(stdin),
                    }
                )
                + "\n"
            )
        faults = state.get("faults", {})
        if command in faults.get("hang", []):
            time.sleep(3600)
        if command in faults.get("garbage", []):
            sys.stdout.write("<html><body>502 Bad Gateway</body></html>\n")
            return 0
        fault = faults.get("fail", {}).get(command)
        if fault and fault.get("app") in (None, flags.get("app")):
            sys.stderr.write(fault["stderr"].rstrip("\n") + "\n")
            return int(fault.get("exit", 1))
        HANDLERS[command](state, flags, pos, stdin)
        return 0
    except FlyError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"Error: {exc.message}\n")
        if exc.extra:
            sys.stderr.write(exc.extra + "\n")
        return exc.code
    except KeyboardInterrupt:
        return 127
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
