"""Load the tasks' settings once: invoke configuration plus `.env` values."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.errors import UsageError

REDACTED = "[REDACTED]"


class Secret:
    """A secret value whose every text form is a redaction marker.

    The real value is reachable only through `reveal()`, which is called
    where the bytes leave the process: flyctl's standard input, an HTTP
    header, a database connection.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class AppSettings:
    """One Fly app of the backend, as configured under `octo.apps`."""

    key: str
    name: str
    config: Path
    health_url: str
    poll_pattern: str
    required_secrets: tuple[str, ...]
    optional_secrets: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.key} ({self.name})"


@dataclass(frozen=True)
class Timeouts:
    command: float
    deploy: float
    health: float
    machines: float
    worker_logs: float


@dataclass(frozen=True)
class Settings:
    root: Path
    apps: tuple[AppSettings, ...]
    flyctl: str
    env_file: Path
    state_dir: Path
    timeouts: Timeouts
    # Every name=value from .env and the environment, values wrapped.
    values: Mapping[str, Secret] = field(repr=False)
    # Keys of `octo` beyond the release path's, for later sections.
    extra: Mapping[str, Any] = field(repr=False)
    env_file_problems: tuple[str, ...] = ()

    def app(self, key: str) -> AppSettings:
        for app in self.apps:
            if app.key == key:
                return app
        known = ", ".join(a.key for a in self.apps)
        raise UsageError(
            f"no app {key!r} in settings (configured: {known}); "
            "add it under octo.apps in invoke.yaml"
        )

    def value(self, name: str) -> Secret | None:
        """The value of NAME from the environment or `.env`, if non-empty."""
        secret = self.values.get(name)
        return secret if secret else None


def load(config: Mapping[str, Any], root: Path | None = None) -> Settings:
    """Build `Settings` from invoke's `config.octo` and the `.env` file.

    Every problem is collected and reported at once, by setting name.
    """
    root = Path.cwd() if root is None else root
    octo = config.get("octo")
    if not isinstance(octo, Mapping):
        raise UsageError(
            "no `octo` settings found: run inv from the folder holding tasks.py "
            "and invoke.yaml"
        )

    problems: list[str] = []
    apps = _load_apps(octo.get("apps"), root, problems)
    timeouts = _load_timeouts(octo.get("timeouts") or {}, problems)
    env_file = root / str(octo.get("env_file") or ".env")
    state_dir = root / str(octo.get("state_dir") or ".octo")
    if problems:
        raise UsageError(
            "bad settings in invoke.yaml (or its overrides):\n  - "
            + "\n  - ".join(problems)
        )

    file_values, env_problems = read_env_file(env_file)
    values = {name: Secret(v) for name, v in file_values.items()}
    # Real environment variables win over .env (python-dotenv's own rule).
    values.update({name: Secret(v) for name, v in os.environ.items()})

    known = {"apps", "timeouts", "env_file", "state_dir", "flyctl"}
    return Settings(
        root=root,
        apps=apps,
        flyctl=str(octo.get("flyctl") or ""),
        env_file=env_file,
        state_dir=state_dir,
        timeouts=timeouts,
        values=values,
        extra={k: v for k, v in octo.items() if k not in known},
        env_file_problems=tuple(env_problems),
    )


def read_env_file(path: Path) -> tuple[dict[str, str], list[str]]:
    """Values of a `.env` file, and the lines python-dotenv could not parse.

    A missing file is no problem: CI passes everything as environment
    variables.
    """
    if not path.is_file():
        return {}, []

    # NOTE: parse_stream is what dotenv_values uses underneath; reading it
    # directly gives the line numbers of bad lines without python-dotenv's
    # own logging warning.
    from dotenv.parser import parse_stream

    text = path.read_text(encoding="utf-8-sig")
    values: dict[str, str] = {}
    problems = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            problems.append(
                f"{path.name} line {binding.original.line}: not NAME=VALUE "
                "(quote values holding spaces or #, close every quote)"
            )
        elif binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    return values, problems


def _load_apps(raw: Any, root: Path, problems: list[str]) -> tuple[AppSettings, ...]:
    if not isinstance(raw, Mapping) or not raw:
        problems.append("octo.apps must map app keys (api, worker, ...) to settings")
        return ()
    apps = []
    for key, entry in raw.items():
        where = f"octo.apps.{key}"
        if not isinstance(entry, Mapping):
            problems.append(f"{where} must be a mapping")
            continue
        name = str(entry.get("name") or "")
        config = str(entry.get("config") or "")
        if not name:
            problems.append(f"{where}.name is empty: set the Fly app name")
        if not config:
            problems.append(f"{where}.config is empty: set the Fly config file")
        health_url = str(entry.get("health_url") or "")
        if health_url and not health_url.startswith(("https://", "http://")):
            problems.append(f"{where}.health_url must start with https://")
        apps.append(
            AppSettings(
                key=str(key),
                name=name,
                config=root / config,
                health_url=health_url,
                poll_pattern=str(entry.get("poll_pattern") or ""),
                required_secrets=_names(entry.get("required_secrets"), where, problems),
                optional_secrets=_names(entry.get("optional_secrets"), where, problems),
            )
        )
    return tuple(apps)


def _names(raw: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple) or not all(isinstance(n, str) for n in raw):
        problems.append(f"{where}: secret lists must be lists of names")
        return ()
    return tuple(raw)


def _load_timeouts(raw: Mapping[str, Any], problems: list[str]) -> Timeouts:
    seconds = {}
    for name in ("command", "deploy", "health", "machines", "worker_logs"):
        value = raw.get(name)
        try:
            seconds[name] = float(value)
        except (TypeError, ValueError):
            problems.append(f"octo.timeouts.{name} must be a number of seconds")
            seconds[name] = 0.0
            continue
        if seconds[name] <= 0:
            problems.append(f"octo.timeouts.{name} must be more than 0 seconds")
    return Timeouts(**seconds)
