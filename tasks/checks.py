"""Judge what flyctl and the backend answered (pure: no I/O).

Parsers accept every shape flyctl versions print (see
`../shared/reference/flyctl.md`); verifiers return the full list of problems
so that a task reports them all at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
# Exception class names (RuntimeError), level words and tracebacks; plain
# words only whole, so that "errors_total=0" or "terror" do not count.
ERROR_WORDS = re.compile(
    r"\b(?:\w*Error|\w*Exception|Traceback|ERROR|CRITICAL|FATAL"
    r"|error|exception|fatal|panic)\b"
)
# Minimum flyctl with per-command --json, lower-case secret keys and
# FLY_EMIT_RELEASE_JSON; older ones work, with less evidence.
RECOMMENDED_FLYCTL = (0, 4, 56)


class ParseError(ValueError):
    """flyctl printed something of an unexpected shape."""


def parse_version(text: str) -> str:
    """flyctl's version from `flyctl version --json` (compact, one line)."""
    try:
        data = json.loads(text)
        return str(data["Version"])
    except (json.JSONDecodeError, KeyError, TypeError):
        match = re.search(r"v?(\d+\.\d+\.\d+)", text)
        if match:
            return match.group(1)
        raise ParseError(f"no version in {text.strip()[:80]!r}") from None


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


# --- secrets -------------------------------------------------------------


@dataclass(frozen=True)
class SecretEntry:
    name: str
    digest: str
    status: str  # Deployed, Staged, Partial, Unknown, or "" before v0.4.6


def parse_secrets(data: Any) -> list[SecretEntry]:
    """`secrets list --json`: lower-case keys since v0.3.178, Go names before."""
    if not isinstance(data, list):
        raise ParseError("secrets list is not a JSON array")
    entries = []
    for item in data:
        if not isinstance(item, Mapping):
            raise ParseError("secrets list holds something that is not an object")
        name = item.get("name", item.get("Name"))
        if not isinstance(name, str):
            raise ParseError("a secret without a name")
        entries.append(
            SecretEntry(
                name=name,
                digest=str(item.get("digest", item.get("Digest", ""))),
                status=str(item.get("status", "")),
            )
        )
    return entries


@dataclass(frozen=True)
class SecretNames:
    """How an app's secret names compare with the required list."""

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    staged: tuple[str, ...]
    partial: tuple[str, ...]


def compare_secret_names(
    entries: Sequence[SecretEntry],
    required: Iterable[str],
    optional: Iterable[str] = (),
) -> SecretNames:
    present = {e.name for e in entries}
    required = list(required)
    known = set(required) | set(optional)
    return SecretNames(
        missing=tuple(n for n in required if n not in present),
        unexpected=tuple(sorted(present - known)),
        staged=tuple(e.name for e in entries if e.status.lower() == "staged"),
        partial=tuple(e.name for e in entries if e.status.lower() == "partial"),
    )


# --- releases ------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    version: int
    status: str
    image: str
    created_at: str = ""


def parse_releases(data: Any) -> list[Release]:
    """`releases --json`, newest first (flyctl shows the 25 newest)."""
    if not isinstance(data, list):
        raise ParseError("releases is not a JSON array")
    releases = []
    for item in data:
        try:
            releases.append(
                Release(
                    version=int(item["Version"]),
                    status=str(item.get("Status", "")),
                    image=str(item.get("ImageRef", "")),
                    created_at=str(item.get("CreatedAt", "")),
                )
            )
        except (KeyError, TypeError, ValueError):
            raise ParseError("a release without a version") from None
    return sorted(releases, key=lambda r: r.version, reverse=True)


def parse_release_line(stdout: str) -> Release | None:
    """The compact line a deploy prints with FLY_EMIT_RELEASE_JSON=1."""
    for line in reversed(stdout.splitlines()):
        line = ANSI_ESCAPE.sub("", line).strip()
        if not (line.startswith("{") and '"image_ref"' in line):
            continue
        try:
            data = json.loads(line)
            return Release(
                version=int(data["version"]), status="complete", image=data["image_ref"]
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return None


# --- machines ------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    output: str


@dataclass(frozen=True)
class Machine:
    id: str
    state: str
    region: str
    version: str
    image: str
    checks: tuple[Check, ...] = ()
    events: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)

    @property
    def exits(self) -> int:
        """Exit events in the machine's recent history: a crash loop shows many."""
        return sum(1 for e in self.events if e.get("type") == "exit")

    @property
    def started_at(self) -> float | None:
        """When its process last started, in seconds since the epoch (Fly's clock)."""
        starts = [
            e["timestamp"] / 1000
            for e in self.events
            if e.get("type") == "start" and isinstance(e.get("timestamp"), int | float)
        ]
        return max(starts) if starts else None


@dataclass(frozen=True)
class AppStatus:
    name: str
    version: int
    deployed: bool
    machines: tuple[Machine, ...]


def parse_status(data: Any) -> AppStatus:
    """`status --json`: a map with `Machines` as fly-go machine objects."""
    if not isinstance(data, Mapping) or "Machines" not in data:
        raise ParseError("status is not an object with Machines")
    machines = []
    for item in data.get("Machines") or []:
        config = item.get("config") or {}
        metadata = config.get("metadata") or {}
        machines.append(
            Machine(
                id=str(item.get("id", "")),
                state=str(item.get("state", "")),
                region=str(item.get("region", "")),
                version=str(metadata.get("fly_release_version", "")),
                image=str(config.get("image", "")),
                checks=tuple(
                    Check(
                        name=str(ch.get("name", "")),
                        status=str(ch.get("status", "")),
                        output=str(ch.get("output", "")),
                    )
                    for ch in item.get("checks") or []
                ),
                events=tuple(item.get("events") or []),
            )
        )
    return AppStatus(
        name=str(data.get("Name", data.get("ID", ""))),
        version=int(data.get("Version") or 0),
        deployed=bool(data.get("Deployed")),
        machines=tuple(machines),
    )


@dataclass(frozen=True)
class MachineVerdict:
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    settled: bool  # nothing is still on its way (starting, replacing)


# A machine in one of these states is on its way and may yet settle.
TRANSIENT_STATES = {"created", "starting", "replacing", "stopping"}
CRASH_LOOP_EXITS = 3


def judge_machines(
    status: AppStatus, expected_version: int | None, *, auto_stop: bool
) -> MachineVerdict:
    """Every machine started, on the expected release, with passing checks.

    An app that scales to zero (`auto_stop`) may have stopped machines: they
    are a warning, since the first request starts one.
    """
    problems, warnings = [], []
    settled = True
    if not status.machines:
        problems.append(f"{status.name} has no machines: deploy it first")
    for m in status.machines:
        where = f"machine {m.id} ({m.region})"
        if m.state in TRANSIENT_STATES:
            settled = False
            problems.append(f"{where} is {m.state}")
        elif m.state in {"stopped", "suspended"}:
            if auto_stop:
                warnings.append(
                    f"{where} is {m.state} (auto-stop; a request starts it)"
                )
            else:
                problems.append(f"{where} is {m.state}")
        elif m.state != "started":
            problems.append(f"{where} is {m.state}")
        if expected_version is not None and m.version != str(expected_version):
            settled = settled and m.state not in TRANSIENT_STATES
            problems.append(
                f"{where} runs release v{m.version or '?'}, expected v{expected_version}"
            )
        if m.exits >= CRASH_LOOP_EXITS:
            problems.append(
                f"{where} exited {m.exits} times recently: a crash loop "
                "(see its logs for the exception)"
            )
        if m.state == "started":
            for check in m.checks:
                if check.status == "passing":
                    continue
                note = f"{where} check {check.name} is {check.status}"
                if check.output:
                    note += f" ({check.output[:160]})"
                if check.status == "warning":
                    settled = False
                    warnings.append(note)
                else:
                    problems.append(note)
    return MachineVerdict(tuple(problems), tuple(warnings), settled)


# --- health --------------------------------------------------------------


def judge_health(status_code: int, body: str) -> str | None:
    """None when `GET /health` is healthy: 200 with the JSON `{"ok": true}`."""
    snippet = " ".join(body.split())[:120]
    if status_code != 200:
        return f"HTTP {status_code}" + (f": {snippet}" if snippet else "")
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return f"HTTP 200 but the body is not JSON: {snippet!r}"
    if not isinstance(data, Mapping) or data.get("ok") is not True:
        return f'HTTP 200 but the body lacks "ok": true: {snippet!r}'
    return None


# --- logs ----------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    timestamp: str
    instance: str
    region: str
    level: str
    message: str

    def render(self) -> str:
        return f"{self.timestamp} {self.instance} {self.region} [{self.level}] {self.message}"


def parse_log_entry(entry: Mapping[str, Any]) -> LogLine:
    return LogLine(
        timestamp=str(entry.get("timestamp", "")),
        instance=str(entry.get("instance", "")),
        region=str(entry.get("region", "")),
        level=str(entry.get("level", "")),
        message=ANSI_ESCAPE.sub("", str(entry.get("message", ""))),
    )


def log_time(timestamp: str) -> float | None:
    """A log line's RFC 3339 timestamp (nanoseconds allowed) as epoch seconds."""
    match = re.match(
        r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", timestamp
    )
    if not match:
        return None
    from datetime import datetime

    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + (float(fraction) if fraction else 0.0)


def is_fresh(line: LogLine, not_before: float) -> bool:
    """Whether LINE was logged at NOT_BEFORE or later.

    `flyctl logs` first replays the app's log buffer, which can hold lines
    of an earlier release or of hours ago. A line whose time cannot be read
    counts as fresh rather than failing a healthy app.
    """
    moment = log_time(line.timestamp)
    return moment is None or moment >= not_before


def is_poll_line(line: LogLine, pattern: str) -> bool:
    """A worker polling line: the pattern is a prefix of the query's name.

    `jobs.claim_batch` matches the scoped query and `jobs.claim_batch_any`.
    """
    return pattern in line.message


def looks_like_error(line: LogLine) -> bool:
    if line.level.lower() in {"error", "fatal", "critical"}:
        return True
    return bool(ERROR_WORDS.search(line.message))


# --- Fly config files ----------------------------------------------------


def config_problems(data: Mapping[str, Any], app: str, *, http: bool) -> list[str]:
    """What is wrong with a parsed fly.toml for APP.

    An HTTP app needs an `[http_service]` with a health check on a path; a
    worker needs none. A different `app` line is a problem: flyctl is always
    given `--app`, but a mismatch means the file belongs to another app.
    """
    problems = []
    named = data.get("app")
    if named and named != app:
        problems.append(f"names app {named!r}, but settings deploy it as {app!r}")
    service = data.get("http_service")
    if http:
        if not isinstance(service, Mapping):
            problems.append("has no [http_service], so Fly has no health check")
        else:
            if not service.get("internal_port"):
                problems.append("[http_service] has no internal_port")
            checks = service.get("checks") or []
            if not any(isinstance(ch, Mapping) and ch.get("path") for ch in checks):
                problems.append("[http_service] has no HTTP check with a path")
    return problems
