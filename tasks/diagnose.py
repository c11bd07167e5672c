"""Recognise known failures from their evidence, using `failures.toml`."""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

CATALOGUE = Path(__file__).with_name("failures.toml")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Failure:
    id: str
    source: str
    patterns: tuple[re.Pattern[str], ...]
    meaning: str
    fix: str

    def matches(self, text: str) -> bool:
        return any(p.search(text) for p in self.patterns)


@functools.cache
def catalogue(path: Path = CATALOGUE) -> tuple[Failure, ...]:
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    return tuple(
        Failure(
            id=entry["id"],
            source=entry["source"],
            patterns=tuple(
                re.compile(p, re.IGNORECASE | re.MULTILINE) for p in entry["match"]
            ),
            meaning=entry["meaning"],
            fix=entry["fix"],
        )
        for entry in data["failure"]
    )


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
        if source is not None and failure.source != source:
            continue
        if failure.matches(text):
            if app:
                failure = _for_app(failure, app)
            found.append(failure)
    return tuple(found)


def _for_app(failure: Failure, app: str) -> Failure:
    return Failure(
        id=failure.id,
        source=failure.source,
        patterns=failure.patterns,
        meaning=failure.meaning.replace("<app>", app),
        fix=failure.fix.replace("<app>", app),
    )
