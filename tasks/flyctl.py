"""Build flyctl argument lists (pure: no I/O, no invoke, no subprocess).

Every builder passes the app explicitly, so no command depends on the
fly.toml of the current folder, uses long option names so that an echoed
command documents itself, and asks for JSON on every read.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

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
