"""Build flyctl argument lists (pure: no I/O, no invoke, no subprocess).

Every builder passes the app explicitly, so no command depends on the
fly.toml of the current folder, uses long option names so that an echoed
command documents itself, and asks for JSON on every read.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path

SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# How long flyctl deploy waits for each machine to become healthy.
DEPLOY_WAIT_TIMEOUT = "5m"


def version() -> list[str]:
    return ["version", "--json"]


def whoami() -> list[str]:
    return ["auth", "whoami", "--json"]


def status(app: str) -> list[str]:
    return ["status", "--app", app, "--json"]


def secrets_list(app: str) -> list[str]:
    return ["secrets", "list", "--app", app, "--json"]


def secrets_import(app: str, *, stage: bool = True) -> list[str]:
    """Read NAME=VALUE lines from standard input: values never touch argv."""
    args = ["secrets", "import", "--app", app]
    return [*args, "--stage"] if stage else args


def secrets_deploy(app: str) -> list[str]:
    return ["secrets", "deploy", "--app", app]


def releases(app: str) -> list[str]:
    return ["releases", "--app", app, "--json"]


def deploy(app: str, config: Path, *, image: str = "") -> list[str]:
    """A rolling deploy of APP with its config, optionally of a built image.

    `--remote-only` makes an `--image` resolve on Fly's side and builds on
    Fly's builder otherwise, so an operator needs no local Docker.
    """
    args = [
        "deploy",
        "--app",
        app,
        "--config",
        str(config),
        "--remote-only",
        "--strategy",
        "rolling",
        "--wait-timeout",
        DEPLOY_WAIT_TIMEOUT,
        "--yes",
    ]
    return [*args, "--image", image] if image else args


def logs(app: str, *, no_tail: bool = False) -> list[str]:
    """The app's log stream as JSON objects (back to back, not JSON Lines)."""
    args = ["logs", "--app", app, "--json"]
    return [*args, "--no-tail"] if no_tail else args


def render(program: str, args: list[str], *, windows: bool) -> str:
    """One command line for the shell invoke runs: cmd.exe or a POSIX shell.

    cmd.exe does not understand POSIX quoting, and POSIX shells do not
    understand Windows quoting, so each gets its own.
    """
    argv = [program, *args]
    if windows:
        return subprocess.list2cmdline(argv)
    return shlex.join(argv)


class UnsendableValue(ValueError):
    """A value flyctl's import parser would change; carries the name only."""


# flyctl reads standard input with a line scanner that gives up on longer lines.
IMPORT_LINE_LIMIT = 64 * 1024


def render_import(values: Mapping[str, str]) -> str:
    """Standard input for `flyctl secrets import` that arrives byte for byte.

    flyctl's parser (reference section 3.4) does no escape processing: it
    cuts a value at `#` unless an odd number of `"` precede it, strips one
    pair of surrounding quotes, and reads `\"\"\"` ... `\"\"\"` across lines.
    So a value is written as `NAME="value"` when that survives, and as
    `NAME=\"\"\"value\"\"\"` (possibly over several lines) otherwise.
    """
    lines = []
    for name, value in values.items():
        if not SECRET_NAME.match(name):
            raise UnsendableValue(f"{name!r} is not a secret name (A-Z, 0-9, _)")
        if "\r" in value:
            raise UnsendableValue(f"{name} holds a carriage return, which flyctl drops")
        if _plain_quotes_survive(value):
            line = f'{name}="{value}"'
        else:
            _check_triple(name, value)
            line = f'{name}="""{value}"""'
        if any(len(part.encode()) >= IMPORT_LINE_LIMIT for part in line.split("\n")):
            raise UnsendableValue(
                f"{name} has a line longer than flyctl reads (64 KiB)"
            )
        lines.append(line)
    return "".join(line + "\n" for line in lines)


def _plain_quotes_survive(value: str) -> bool:
    # Wrapped in quotes, a value starting `""` (or a lone `"`) would open a
    # triple-quoted block instead.
    if "\n" in value or f'"{value}"'.startswith('"""'):
        return False
    hash_at = value.find("#")
    # The parser counts the opening quote too: an odd count inside the value
    # before the first `#` would make it cut the value there.
    return hash_at < 0 or value[:hash_at].count('"') % 2 == 0


def _check_triple(name: str, value: str) -> None:
    lines = value.split("\n")
    # A line that itself ends in three quotes would close the value early; so
    # would trailing blanks on the first line, which some flyctl versions trim.
    for line in lines[:-1]:
        if line.rstrip().endswith('"""'):
            raise UnsendableValue(
                f'{name} has a line ending in """, which flyctl cannot import'
            )
    if len(lines) > 1 and lines[0] != lines[0].rstrip():
        raise UnsendableValue(
            f"{name}'s first line ends in blanks, which flyctl may trim"
        )
