"""The release journal: one JSON line per release, deploy and rollback.

Each line records, per app the task deployed, the release version and image
before and after, a hash of the Fly config file and the digests of the
app's secrets, plus who ran the task, when, and every step's result and
duration. Digests are what `flyctl secrets list` prints: equal digests mean
equal values, and no value can be recovered from them (reference section
3.2). Secret values are never read, so they cannot be written.

The record builders and lookups at the top are pure; `read`, `append` and
`recording` at the bottom touch the file and flyctl.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks import checks, flyctl, ui
from tasks.errors import FlyctlError, OctoError

if TYPE_CHECKING:
    from tasks.session import Session
    from tasks.settings import AppSettings, Settings

log = logging.getLogger(__name__)

SCHEMA = 1
DEFAULT_FILE = "journal.jsonl"
# flyctl's exit code when it was cancelled with Ctrl-C (reference section 0).
FLYCTL_CANCELLED = 127


# --- records (pure) --------------------------------------------------------


def release_fields(release: checks.Release | None) -> dict[str, Any] | None:
    if release is None:
        return None
    return {
        "version": release.version,
        "image": release.image,
        "status": release.status,
    }


def release_from(fields: Any) -> checks.Release | None:
    if not isinstance(fields, Mapping) or not isinstance(fields.get("version"), int):
        return None
    return checks.Release(
        version=fields["version"],
        status=str(fields.get("status") or ""),
        image=str(fields.get("image") or ""),
    )


def config_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def app_entry(
    *,
    key: str,
    name: str,
    config: str,
    config_sha256: str,
    before: checks.Release | None,
    after: checks.Release | None,
    secret_digests: Mapping[str, str] | None,
    rollback: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One app's part of a record; None means flyctl could not tell."""
    entry: dict[str, Any] = {
        "key": key,
        "name": name,
        "config": config,
        "config_sha256": config_sha256,
        "before": release_fields(before),
        "after": release_fields(after),
        "secret_digests": dict(secret_digests) if secret_digests is not None else None,
    }
    if rollback:
        entry["rollback"] = dict(rollback)
    return entry


def new_record(
    *,
    task: str,
    started_at: datetime,
    seconds: float,
    result: str,
    who: Mapping[str, str],
    apps: Sequence[Mapping[str, Any]],
    steps: Sequence[Mapping[str, Any]],
    error: str = "",
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "task": task,
        "started_at": started_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round(seconds, 1),
        "result": result,
        "who": dict(who),
        "apps": list(apps),
        "steps": [dict(s) for s in steps],
    }
    if error:
        record["error"] = error
    return record


def step_fields(step: Any) -> dict[str, Any]:
    """A pipeline step (a dataclass) as the journal stores it."""
    fields = asdict(step) if is_dataclass(step) else dict(step)
    fields["seconds"] = round(float(fields.get("seconds", 0.0)), 1)
    return fields


def dumps(records: Sequence[Mapping[str, Any]]) -> str:
    """Records as indented JSON, for `release.history --json`."""
    return json.dumps(list(records), indent=2, ensure_ascii=False)


def parse_lines(lines: Iterable[str]) -> tuple[list[dict[str, Any]], int]:
    """Records, oldest first, and the number of lines that are not records.

    A line cut short by a crash mid-write must not hide every other record.
    """
    records, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("apps"), list):
            records.append(record)
        else:
            bad += 1
    return records, bad


def _entries(records: Iterable[Mapping[str, Any]], app: str) -> Iterator[Mapping]:
    for record in records:
        for entry in record.get("apps", []):
            if isinstance(entry, Mapping) and entry.get("name") == app:
                yield entry


def last_release(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The newest `release` record that deployed at least one app."""
    for record in reversed(records):
        if record.get("task") == "release" and any(
            release_from(e.get("before")) for e in record.get("apps", [])
        ):
            return record
    return None


def befores(record: Mapping[str, Any]) -> dict[str, checks.Release]:
    """App name -> the release it ran before RECORD's task deployed it."""
    found = {}
    for entry in record.get("apps", []):
        before = release_from(entry.get("before"))
        if before is not None and before.image:
            found[str(entry.get("name"))] = before
    return found


def known_releases(
    records: Sequence[Mapping[str, Any]], app: str
) -> dict[int, checks.Release]:
    """Every release of APP the journal saw, by version (newest facts win)."""
    known: dict[int, checks.Release] = {}
    for entry in _entries(records, app):
        for side in ("before", "after"):
            release = release_from(entry.get(side))
            if release is not None and release.image:
                known[release.version] = release
    return known


def snapshot_of(
    records: Sequence[Mapping[str, Any]], app: str, version: int
) -> Mapping[str, Any] | None:
    """The newest entry of APP taken while VERSION ran or right after it.

    Its secret digests and config hash are what that release ran with, as
    far as the journal knows.
    """
    found = None
    for entry in _entries(records, app):
        versions = {
            r.version
            for r in (
                release_from(entry.get("before")),
                release_from(entry.get("after")),
            )
            if r is not None
        }
        if version in versions:
            found = entry
    return found


def rolled_back_from(records: Sequence[Mapping[str, Any]], app: str) -> set[str]:
    """Images of APP that a rollback moved away from: known to be bad."""
    images = set()
    for entry in _entries(records, app):
        rollback = entry.get("rollback")
        if isinstance(rollback, Mapping) and rollback.get("from"):
            images.add(str(rollback["from"]))
    return images


def changed_secrets(then: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """Secret names whose digest differs between two snapshots, with how."""
    changes = []
    for name in sorted(set(then) | set(now)):
        if name not in now:
            changes.append(f"{name} (removed)")
        elif name not in then:
            changes.append(f"{name} (added)")
        elif then[name] != now[name]:
            changes.append(f"{name} (changed)")
    return changes


def history_rows(
    records: Sequence[Mapping[str, Any]], limit: int = 0
) -> list[tuple[str, ...]]:
    """Rows for `release.history`, newest first."""
    newest = list(reversed(records))
    if limit > 0:
        newest = newest[:limit]
    return [
        (
            str(r.get("started_at", "")),
            str(r.get("task", "")),
            str(r.get("result", "")),
            _who(r.get("who") or {}),
            "; ".join(_app_change(e) for e in r.get("apps", [])) or "-",
            f"{float(r.get('seconds') or 0):.1f} s",
        )
        for r in newest
    ]


def _who(who: Mapping[str, str]) -> str:
    fly, local = who.get("fly") or "", who.get("os") or ""
    if fly and local:
        return f"{fly} ({local})"
    return fly or local or "?"


def _app_change(entry: Mapping[str, Any]) -> str:
    before = release_from(entry.get("before"))
    after = release_from(entry.get("after"))
    text = (
        f"{entry.get('key', entry.get('name'))} "
        f"v{before.version if before else '?'} -> v{after.version if after else '?'}"
    )
    rollback = entry.get("rollback")
    if isinstance(rollback, Mapping):
        text += f" (rollback {rollback.get('result', '?')})"
    return text


# --- the file and flyctl ----------------------------------------------------


def path_of(settings: Settings) -> Path:
    """The journal file: octo.journal, or journal.jsonl in octo.state_dir."""
    configured = settings.extra.get("journal")
    if configured:
        return settings.root / str(configured)
    return settings.state_dir / DEFAULT_FILE


def read(path: Path) -> list[dict[str, Any]]:
    """The journal's records, oldest first; no file means no records yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OctoError(f"cannot read the journal {path}: {exc}") from None
    records, bad = parse_lines(text.splitlines())
    if bad:
        ui.warn(f"journal {path}", f"{bad} line(s) are not records and were skipped")
    return records


def append(path: Path, record: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    with path.open("a", encoding="utf-8", newline="\n") as fh:
        fh.write(line + "\n")


def is_interruption(exc: BaseException) -> bool:
    """Ctrl-C: raised here, or seen by flyctl, which then exits 127.

    invoke forwards Ctrl-C to a running command instead of raising it, so
    an interrupted deploy shows up as flyctl failing with 127.
    """
    if isinstance(exc, KeyboardInterrupt):
        return True
    return isinstance(exc, FlyctlError) and exc.flyctl_exit_code == FLYCTL_CANCELLED


class Recorder:
    """Collects one task run; `recording` writes it when the task ends."""

    def __init__(self, session: Session, task: str, steps: list[Any]) -> None:
        self.session = session
        self.task = task
        self.steps = steps
        self.started_at = datetime.now(UTC)
        self.started = time.monotonic()
        # Set by the task when "ok" or "failed" would not say enough.
        self.result = ""
        self.rollbacks: dict[str, dict[str, str]] = {}

    def note_rollback(self, key: str, *, source: str, target: str, result: str) -> None:
        self.rollbacks[key] = {"from": source, "to": target, "result": result}

    def record(self, result: str, error: str, *, ask_flyctl: bool) -> dict[str, Any]:
        settings = self.session.settings
        apps = [settings.app(key) for key in self.session.replaced]
        steps = [step_fields(s) for s in self.steps] or [
            {"step": self.task, "result": result, "seconds": self._seconds()}
        ]
        return new_record(
            task=self.task,
            started_at=self.started_at,
            seconds=self._seconds(),
            result=result,
            who={
                "fly": self._fly_email() if ask_flyctl else "",
                "os": _os_user(),
            },
            apps=[self._entry(app, ask_flyctl=ask_flyctl) for app in apps],
            steps=steps,
            error=error,
        )

    def _seconds(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def _entry(self, app: AppSettings, *, ask_flyctl: bool) -> dict[str, Any]:
        from tasks.deploy import current_release

        after = digests = None
        if ask_flyctl:
            after = _quietly(lambda: current_release(self.session, app))
            digests = _quietly(lambda: current_digests(self.session, app))
        try:
            sha = config_hash(app.config.read_bytes())
        except OSError:
            sha = ""
        return app_entry(
            key=app.key,
            name=app.name,
            config=app.config.name,
            config_sha256=sha,
            before=self.session.replaced[app.key],
            after=after,
            secret_digests=digests,
            rollback=self.rollbacks.get(app.key),
        )

    def _fly_email(self) -> str:
        data = _quietly(lambda: self.session.fly.read_json(flyctl.whoami()))
        return str(data.get("email", "")) if isinstance(data, Mapping) else ""


def current_digests(session: Session, app: AppSettings) -> dict[str, str]:
    """Name -> digest of APP's secrets now (digests only; values never)."""
    data = session.fly.read_json(flyctl.secrets_list(app.name), app=app.name)
    try:
        entries = checks.parse_secrets(data)
    except checks.ParseError as exc:
        raise OctoError(f"secrets of {app.name} have an unknown shape: {exc}") from None
    return {e.name: e.digest for e in entries}


@contextlib.contextmanager
def recording(
    session: Session, task: str, steps: list[Any] | None = None
) -> Iterator[Recorder]:
    """Append the task's record to the journal when it ends, however it ends.

    Dry runs change nothing and are not recorded, nor are runs refused
    before they deployed anything. After Ctrl-C no more flyctl calls are
    made: the record then says what was known.
    """
    recorder = Recorder(session, task, steps if steps is not None else [])
    if session.dry_run:
        yield recorder
        return
    result, error, ask = "ok", "", session.fly.available
    try:
        yield recorder
    except (KeyboardInterrupt, OctoError) as exc:
        if is_interruption(exc):
            result, ask = "interrupted", False
        else:
            result = "failed" if exc.exit_code == 1 else "not started"
            error = exc.message.splitlines()[0]
        raise
    finally:
        # A run refused before it changed anything (exit 2) is no event in
        # production's history; one that deployed is recorded however it ended.
        if result != "not started" or session.replaced:
            _write(session, recorder, recorder.result or result, error, ask)


def _write(
    session: Session, recorder: Recorder, result: str, error: str, ask: bool
) -> None:
    path = path_of(session.settings)
    try:
        append(path, recorder.record(result, error, ask_flyctl=ask))
    except OSError as exc:
        ui.warn(f"journal {path} not written", str(exc))
        return
    shown = (
        path.relative_to(session.settings.root)
        if path.is_relative_to(session.settings.root)
        else path
    )
    ui.ok(f"recorded in {shown}", "inv release.history shows it")


def _quietly(read: Any) -> Any:
    """A journal fact from flyctl, or None: recording never fails a task."""
    try:
        return read()
    except OctoError as exc:
        log.debug("journal: %s", exc.message)
        return None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - getpass raises several kinds when no user is set
        return ""
