"""The local record of secrets this tool set, for drift checks without values.

Fly.io shows a digest per secret but computes it server-side with a key of
its own, so a local value cannot be hashed into Fly's digest (reference
`flyctl.md` section 3.2). Instead, whenever a task sets a secret it records
the digest Fly then reports next to a keyed hash of the value it sent.
Because Fly's digest depends on the value only, any later digest can be
looked up in the record: a known digest tells which local hash it stands
for, so `.env` and production can be compared without reading either
value back.

The local hash is HMAC-SHA256 under a random 32-byte key kept in its own
file (`digest.key`, owner-only permissions) beside the record. A bare
SHA-256 of a short value, such as `WORKER_BATCH=5` or a weak password, is
reversed by trying every candidate; with the key, the record alone (shared
in an issue, copied in a backup) reveals nothing. Whoever holds the key
file too could still try candidates, so the folder stays git-ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets as random_source
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.errors import OctoError

if TYPE_CHECKING:
    from tasks.settings import Secret

RECORD_FILE = "secret-digests.json"
KEY_FILE = "digest.key"
FORMAT = 1


def local_hash(key: bytes, value: Secret) -> str:
    """A keyed hash of VALUE: equal values give equal hashes under one key."""
    mac = hmac.new(key, value.reveal().encode("utf-8"), hashlib.sha256)
    return "hmac-sha256:" + mac.hexdigest()


@dataclass(frozen=True)
class Entry:
    app: str
    name: str
    local: str  # keyed hash of the value sent
    fly_digest: str  # what `secrets list` reported right after
    recorded_at: str


class Record:
    """The JSON record under settings.state_dir, and the key beside it."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.path = state_dir / RECORD_FILE
        self.key_path = state_dir / KEY_FILE
        self._key: bytes | None = None
        self.entries: dict[tuple[str, str], Entry] = {}
        if self.path.is_file():
            self.entries = _read_entries(self.path)

    def key(self, *, create: bool = False) -> bytes | None:
        """The hashing key; made on first use when CREATE, else None if absent."""
        if self._key is not None:
            return self._key
        if self.key_path.is_file():
            self._key = bytes.fromhex(self.key_path.read_text(encoding="ascii").strip())
        elif create:
            self.dir.mkdir(parents=True, exist_ok=True)
            key = random_source.token_bytes(32)
            # O_EXCL: two tasks racing must not each write a different key.
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(key.hex())
            self._key = key
        return self._key

    def hash(self, value: Secret) -> str | None:
        key = self.key()
        return local_hash(key, value) if key is not None else None

    def add(self, app: str, name: str, value: Secret, fly_digest: str) -> None:
        key = self.key(create=True)
        assert key is not None
        self.entries[(app, name)] = Entry(
            app=app,
            name=name,
            local=local_hash(key, value),
            fly_digest=fly_digest,
            recorded_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FORMAT,
            "note": "Written by octo-release: keyed hashes and Fly digests, never values.",
            "entries": [
                vars(e)
                for e in sorted(self.entries.values(), key=lambda e: (e.app, e.name))
            ],
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.path)

    def by_digest(self) -> dict[str, str]:
        return known_digests(self.entries.values())


def _read_entries(path: Path) -> dict[tuple[str, str], Entry]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = [Entry(**item) for item in data["entries"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise OctoError(
            f"{path} is not a secret digest record ({exc.__class__.__name__})",
            next_command=f"delete {path}; the next `inv secrets.push` writes a new one",
        ) from None
    return {(e.app, e.name): e for e in entries}


def known_digests(entries: Iterable[Entry]) -> dict[str, str]:
    """Fly digest -> local hash, from every entry (Fly's digest is value-only)."""
    return {e.fly_digest: e.local for e in entries if e.fly_digest}


# --- verdicts (pure) ----------------------------------------------------------

SAME = "same"
DIFFERENT = "different"
UNKNOWN = "unknown"
NOT_LOCAL = "not in .env"


def compare_with_local(
    fly_digest: str, local: str | None, known: Mapping[str, str]
) -> str:
    """Whether a production secret holds the `.env` value, by digests only."""
    if local is None:
        return NOT_LOCAL
    recorded = known.get(fly_digest)
    if recorded is None:
        return UNKNOWN
    return SAME if recorded == local else DIFFERENT


def parity(digests_by_app: Mapping[str, Mapping[str, str]]) -> dict[str, list[str]]:
    """Names present on several apps whose digests differ: name -> apps."""
    apps_by_name: dict[str, dict[str, str]] = {}
    for app, digests in digests_by_app.items():
        for name, digest in digests.items():
            apps_by_name.setdefault(name, {})[app] = digest
    return {
        name: sorted(apps)
        for name, apps in sorted(apps_by_name.items())
        if len(apps) > 1 and len(set(apps.values())) > 1
    }


def changed_names(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Names whose digest is new or different after a change."""
    return sorted(n for n, d in after.items() if before.get(n) != d)
