"""Recognise known failures from their evidence, using `failures.toml`.

Evidence is text: flyctl's stderr, an app's log lines, a database error, an
HTTP answer rendered by `http_evidence`, or a machine's state and events
rendered by `machine_evidence`. The renderings live here so that every task
and the tests give the catalogue the same text.
"""

from __future__ import annotations

import functools
import http
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.checks import Machine

CATALOGUE = Path(__file__).with_name("failures.toml")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
# An error page is long; its first lines say what it is.
HTTP_BODY_SHOWN = 2000


@dataclass(frozen=True)
class Failure:
    id: str
    sources: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    meaning: str
    fix: str

    @property
    def source(self) -> str:
        """The first place it shows; most entries have only one."""
        return self.sources[0]

    def matches(self, text: str) -> bool:
        return any(p.search(text) for p in self.patterns)


@functools.cache
def catalogue(path: Path = CATALOGUE) -> tuple[Failure, ...]:
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    return tuple(_entry(entry) for entry in data["failure"])


def _entry(entry: Mapping[str, Any]) -> Failure:
    # One entry may show in several places (a database error from secrets.test
    # and the same words in the worker's logs): `source` is a name or a list.
    source = entry["source"]
    sources = (source,) if isinstance(source, str) else tuple(source)
    return Failure(
        id=entry["id"],
        sources=sources,
        patterns=tuple(
            re.compile(p, re.IGNORECASE | re.MULTILINE) for p in entry["match"]
        ),
        meaning=entry["meaning"],
        fix=entry["fix"],
    )


def sources() -> tuple[str, ...]:
    """Every kind of evidence the catalogue knows, in order of appearance."""
    return tuple(dict.fromkeys(s for f in catalogue() for s in f.sources))


def diagnose(
    text: str, source: str | None = None, app: str = ""
) -> tuple[Failure, ...]:
    """Every catalogue entry whose pattern appears in TEXT.

    `source` limits the search to one kind of evidence; `app` replaces the
    `<app>` placeholder in the fixes so that they can be pasted as they are.
    """
    text = ANSI_ESCAPE.sub("", text)
    found = []
    for failure in catalogue():
        if source is not None and source not in failure.sources:
            continue
        if failure.matches(text):
            if app:
                failure = _for_app(failure, app)
            found.append(failure)
    return tuple(found)


def merge(*groups: Iterable[Failure]) -> tuple[Failure, ...]:
    """The diagnoses of several pieces of evidence, each entry once, in order."""
    seen: dict[str, Failure] = {}
    for group in groups:
        for failure in group:
            seen.setdefault(failure.id, failure)
    return tuple(seen.values())


def http_evidence(
    status: int,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: str,
    *,
    reason: str = "",
    request: tuple[str, str, Iterable[tuple[str, str]]] | None = None,
) -> str:
    """An HTTP exchange as the catalogue reads it, in curl -v's shape.

    The request, when given as (method, path, headers), as "> METHOD /path"
    and "> name: value" lines; the answer as "< HTTP/1.1 STATUS REASON" and
    "< name: value" lines (names lower-cased, in the order received); then a
    blank line and the start of the body. Entries match on those prefixes.
    """
    lines = []
    if request is not None:
        method, path, sent = request
        lines.append(f"> {method} {path}")
        lines += [f"> {name.lower()}: {value}" for name, value in sent]
    if not reason:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    lines.append(f"< HTTP/1.1 {status} {reason}".rstrip())
    items = headers.items() if isinstance(headers, Mapping) else headers
    lines += [f"< {name.lower()}: {value}" for name, value in items]
    lines.append("")
    lines.append(body[:HTTP_BODY_SHOWN])
    return "\n".join(lines)


def machine_evidence(machines: Iterable[Machine]) -> str:
    """Machines' state and recent events as the catalogue reads them.

    One line per machine, then one per exit event, with the Machines API's
    own field names and values (`exit_code=1 requested_stop=false ...`), so
    that an entry's patterns quote what `flyctl status --json` holds.
    """
    lines = []
    for m in machines:
        lines.append(f"machine {m.id} region={m.region} state={m.state}")
        for event in m.events:
            lines.append(f"machine {m.id} event " + _render_event(event))
    return "\n".join(lines)


def _render_event(event: Mapping[str, Any]) -> str:
    fields = [
        f"type={event.get('type', '')}",
        f"status={event.get('status', '')}",
        f"source={event.get('source', '')}",
    ]
    request = event.get("request")
    if isinstance(request, Mapping):
        # Older machines nest the exit under "MonitorEvent".
        monitor = request.get("MonitorEvent")
        exit_event = request.get("exit_event") or (
            monitor.get("exit_event") if isinstance(monitor, Mapping) else None
        )
        if isinstance(exit_event, Mapping):
            for key in ("exit_code", "requested_stop", "restarting", "oom_killed"):
                if key in exit_event:
                    fields.append(f"{key}={_plain(exit_event[key])}")
        if "restart_count" in request:
            fields.append(f"restart_count={_plain(request['restart_count'])}")
    return " ".join(fields)


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _for_app(failure: Failure, app: str) -> Failure:
    return Failure(
        id=failure.id,
        sources=failure.sources,
        patterns=failure.patterns,
        meaning=failure.meaning.replace("<app>", app),
        fix=failure.fix.replace("<app>", app),
    )
