"""The one place that runs flyctl.

Reads run hidden, bounded by a timeout, and are parsed; commands that change
production are echoed and stream their output live. Log streams are read as
they arrive and stopped at a deadline. Secrets reach flyctl on standard
input only, never in its arguments.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from tasks import flyctl
from tasks.diagnose import Failure, diagnose
from tasks.errors import FlyctlError, FlyctlMissing, FlyctlTimeout, OctoError

if TYPE_CHECKING:
    from invoke import Context
    from invoke.runners import Result

    from tasks.settings import Settings

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install flyctl: in PowerShell `iwr https://fly.io/install.ps1 -useb | iex`, "
    "on Linux or macOS `curl -L https://fly.io/install.sh | sh`, then open a new "
    "terminal; or set octo.flyctl in invoke.yaml to its full path"
)
TOKEN_VARIABLES = ("FLY_ACCESS_TOKEN", "FLY_API_TOKEN")
# Catalogue entries about a rejected or missing credential.
TOKEN_FAILURES = frozenset({"not-logged-in", "not-authorized", "unauthenticated"})
WINDOWS = sys.platform == "win32"
# How often a stream waiting for lines looks at its stop event.
STOP_CHECK_SECONDS = 0.2
# How long a stream whose output has closed may take to exit.
STREAM_EXIT_SECONDS = 5.0
GRAPHQL_QUERY = re.compile(r"failed to run query .*\}: ")


def find_flyctl(configured: str) -> str | None:
    """The flyctl executable: the configured path, else flyctl or fly on PATH."""
    if configured:
        found = shutil.which(configured)
        return found
    # shutil.which adds .exe (PATHEXT) on Windows.
    return shutil.which("flyctl") or shutil.which("fly")


def child_environment(
    environ: Mapping[str, str], dotenv_tokens: Mapping[str, str]
) -> dict[str, str]:
    """The environment flyctl runs with.

    flyctl takes the first token variable that is *set*, even when empty, so
    an empty FLY_ACCESS_TOKEN would hide a good FLY_API_TOKEN: empty ones are
    removed. Tokens from `.env` fill in only what the environment lacks.
    """
    env = dict(environ)
    for name in TOKEN_VARIABLES:
        if name in env and not env[name].strip():
            del env[name]
        if name not in env and dotenv_tokens.get(name):
            env[name] = dotenv_tokens[name]
    # FLY_JSON would turn every table into JSON behind our back.
    env.pop("FLY_JSON", None)
    env["FLY_NO_UPDATE_CHECK"] = "1"
    env["NO_COLOR"] = "1"
    # One compact line naming the new release version and image (v0.4.56+).
    env["FLY_EMIT_RELEASE_JSON"] = "1"
    return env


def empty_token_variables(environ: Mapping[str, str]) -> list[str]:
    return [n for n in TOKEN_VARIABLES if n in environ and not environ[n].strip()]


def last_error_lines(stderr: str, limit: int = 3) -> str:
    """The `Error:` line flyctl ends with, or the last lines of stderr."""
    # Since v0.3.191 flyctl quotes the whole GraphQL query before the server's
    # words ("failed to run query (...) { ... }: Could not find App"); the
    # query is noise to an operator.
    stderr = GRAPHQL_QUERY.sub("", stderr)
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")]
    picked = errors[-1:] if errors else lines[-limit:]
    return " / ".join(picked)


class Flyctl:
    """flyctl bound to one task's invoke context and settings."""

    def __init__(self, c: Context, settings: Settings, *, dry_run: bool = False):
        self.c = c
        self.settings = settings
        self.dry_run = dry_run
        self.program = find_flyctl(settings.flyctl)
        tokens = {n: v.reveal() for n in TOKEN_VARIABLES if (v := settings.value(n))}
        self.env = child_environment(os.environ, tokens)

    @property
    def available(self) -> bool:
        return self.program is not None

    def require(self) -> str:
        if self.program is None:
            where = self.settings.flyctl or "flyctl or fly on PATH"
            raise FlyctlMissing(f"flyctl not found ({where}); {INSTALL_HINT}")
        return self.program

    def display(self, args: list[str]) -> str:
        """The command as an operator would type it."""
        return flyctl.render("flyctl", args, windows=WINDOWS)

    def read(self, args: list[str], *, app: str = "", timeout: float = 0) -> str:
        """Run a read-only command hidden and return its standard output."""
        program = self.require()
        timeout = timeout or self.settings.timeouts.command
        result = self._run(program, args, hide=True, timeout=timeout)
        self._raise_for(result, args, app)
        return result.stdout

    def read_json(self, args: list[str], *, app: str = "", timeout: float = 0) -> Any:
        text = self.read(args, app=app, timeout=timeout)
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            sample = text.strip().splitlines()[:1]
            raise OctoError(
                f"`{self.display(args)}` printed something that is not JSON "
                f"(first line: {sample[0][:120] if sample else 'nothing'!r}); "
                "check `flyctl version` (0.4.x expected) and that FLY_JSON is unset"
            ) from None

    def change(
        self,
        args: list[str],
        *,
        app: str = "",
        timeout: float = 0,
        stdin: str | None = None,
        quiet: bool = False,
    ) -> Result | None:
        """Run a command that changes production, echoed and streamed.

        Under a dry run it is only shown, and None is returned. `stdin` (for
        secrets) is fed to the process and its output hidden with it.
        """
        if self.dry_run:
            from tasks import ui

            ui.plan(self.display(args) + (" < (values on stdin)" if stdin else ""))
            return None
        program = self.require()
        timeout = timeout or self.settings.timeouts.deploy
        result = self._run(
            program,
            args,
            hide=quiet or stdin is not None,
            echo=True,
            timeout=timeout,
            in_stream=_WholeStream(stdin) if stdin is not None else None,
        )
        self._raise_for(result, args, app)
        return result

    def interactive(self, args: list[str]) -> int:
        """Run a command that talks to the operator on this terminal.

        `flyctl auth login` opens a browser and waits on the terminal, so it
        gets the real standard input and output rather than invoke's pipes.
        Returns flyctl's exit code.
        """
        program = self.require()
        from tasks import ui

        ui.step(f"Running {self.display(args)}")
        return subprocess.run([program, *args], env=self.env, check=False).returncode

    def stream(
        self,
        args: list[str],
        *,
        app: str,
        deadline: float,
        stop: threading.Event | None = None,
    ) -> Iterator[dict]:
        """JSON objects from a long-running command until DEADLINE.

        `flyctl logs --json` prints 4-space-indented objects back to back; an
        object is framed by a `{` line and a `}` line. The process is killed
        when the caller stops iterating, the deadline passes or STOP is set
        (from another thread, which cannot close this generator itself).
        """
        program = self.require()
        log.debug("streaming %s", self.display(args))
        process = subprocess.Popen(
            [program, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            encoding="utf-8",
            errors="replace",
        )
        lines: queue.Queue[str | None] = queue.Queue()
        stderr_chunks: list[str] = []
        stdout_reader = threading.Thread(
            target=_pump, args=(process.stdout, lines), daemon=True
        )
        stdout_reader.start()
        stderr_reader = threading.Thread(
            target=lambda: stderr_chunks.append(process.stderr.read()), daemon=True
        )
        stderr_reader.start()
        try:
            yield from _decode_objects(lines, deadline, stop)
            if stop is not None and stop.is_set():
                return
            if process.poll() is None and time.monotonic() >= deadline:
                return
            # Standard output closed: the process is ending. It may not have
            # been reaped yet, so wait for its exit code rather than poll
            # once, or a failing `flyctl logs` would pass for a quiet one.
            try:
                process.wait(timeout=STREAM_EXIT_SECONDS)
            except subprocess.TimeoutExpired:
                return
            if process.returncode != 0:
                stderr_reader.join(timeout=STREAM_EXIT_SECONDS)
                stderr = "".join(stderr_chunks)
                raise self._error(args, app, process.returncode, stderr)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            # Once the process is gone its pipes reach EOF and the readers
            # end; then the pipes can be closed without pulling them away
            # from a reader mid-read.
            for reader, pipe in (
                (stdout_reader, process.stdout),
                (stderr_reader, process.stderr),
            ):
                reader.join(timeout=STREAM_EXIT_SECONDS)
                if not reader.is_alive():
                    pipe.close()

    def _run(self, program: str, args: list[str], **kwargs: Any) -> Result:
        from invoke.exceptions import CommandTimedOut

        command = flyctl.render(program, args, windows=WINDOWS)
        log.debug("running %s", command)
        kwargs.setdefault("in_stream", False)
        if kwargs["in_stream"] is None:
            kwargs["in_stream"] = False
        try:
            return self.c.run(
                command,
                warn=True,
                env=self.env,
                replace_env=True,
                encoding="utf-8",
                pty=False,
                **kwargs,
            )
        except CommandTimedOut:
            raise FlyctlTimeout(
                f"`{self.display(args)}` did not finish within "
                f"{kwargs['timeout']:.0f} s and was stopped",
                command=self.display(args),
                exit_code=None,
                stderr_tail="",
                next_command="check the network and `flyctl status`; raise "
                "octo.timeouts in invoke.yaml if Fly.io is just slow",
            ) from None

    def _raise_for(self, result: Result, args: list[str], app: str) -> None:
        if result.ok:
            return
        raise self._error(args, app, result.exited, result.stderr)

    def _error(self, args: list[str], app: str, code: int, stderr: str) -> FlyctlError:
        return FlyctlError(
            f"`{self.display(args)}` failed with exit code {code}",
            command=self.display(args),
            exit_code=code,
            stderr_tail=last_error_lines(stderr),
            diagnoses=self._for_token(diagnose(stderr, "flyctl", app=app), app),
        )

    def _for_token(self, diagnoses: tuple[Failure, ...], app: str) -> tuple:
        """Login fixes, rewritten when a token variable is what flyctl used.

        flyctl prefers FLY_ACCESS_TOKEN/FLY_API_TOKEN to the login, so with
        one set, logging in again changes nothing: the token is the fix.
        """
        variable = next((n for n in TOKEN_VARIABLES if self.env.get(n)), "")
        if not variable:
            return diagnoses
        target = f"--app {app}" if app else "--app <app>"
        fix = (
            f"{variable} is set, so flyctl uses that token, not your login: replace "
            f"it with a fresh one (`flyctl tokens create deploy {target}`, or an org "
            f"token for several apps), or remove the variable to use your login"
        )
        return tuple(
            dataclasses.replace(d, fix=fix) if d.id in TOKEN_FAILURES else d
            for d in diagnoses
        )


class _WholeStream(io.StringIO):
    """Text for a child's standard input, handed over in one read.

    invoke reads a non-terminal in_stream one character per loop and sleeps
    10 ms between loops, so a few kilobytes of secrets took longer than the
    command timeout; returning everything at once, then "", feeds the text
    and closes the child's stdin (EOF) straight away.
    """

    def read(self, size: int | None = -1) -> str:
        return super().read()


def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _decode_objects(
    lines: queue.Queue[str | None],
    deadline: float,
    stop: threading.Event | None = None,
) -> Iterator[dict]:
    chunk: list[str] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (stop is not None and stop.is_set()):
            return
        if stop is not None:
            remaining = min(remaining, STOP_CHECK_SECONDS)
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            return
        stripped = line.rstrip("\r\n")
        if not chunk and stripped.startswith("{") and stripped.endswith("}"):
            chunk = [stripped]
        elif not chunk and stripped == "{":
            chunk = [stripped]
            continue
        elif chunk and stripped != "}":
            chunk.append(stripped)
            continue
        elif chunk:
            chunk.append(stripped)
        else:
            log.debug("skipping stream line outside an object: %r", stripped[:200])
            continue
        text, chunk = "\n".join(chunk), []
        try:
            entry = json.loads(text)
        except json.JSONDecodeError:
            log.debug("skipping an object that does not parse: %r", text[:200])
            continue
        if isinstance(entry, dict):
            yield entry
