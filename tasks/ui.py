"""Everything the operator reads: step lines, outcomes, tables and prompts.

Progress and verdicts go to stderr; tables and JSON meant for piping go to
stdout. Colour is a hint only (rich turns it off when the stream is not a
terminal or NO_COLOR is set); the words carry the meaning.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from tasks.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from tasks.diagnose import Failure
    from tasks.settings import Secret

OK = "✓"
FAIL = "✗"
WARN = "!"
SKIP = "-"


@functools.cache
def _console(stderr: bool = True) -> Console:
    # rich costs tens of milliseconds to import: only pay when printing.
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    console = Console(file=stream, highlight=False, markup=False, emoji=False)
    if not console.is_terminal:
        # Piped output (CI logs, tests) must not be wrapped mid-word.
        console.width = max(console.width, 160)
    return console


def _say(text: str, style: str = "") -> None:
    _console().print(text, style=style or None, soft_wrap=True)


def step(text: str) -> None:
    """Announce a step before it starts: `==> Deploying api ...`."""
    _say(f"==> {text} ...", "bold cyan")


def ok(subject: str, evidence: str = "") -> None:
    _say(f"  {OK} {subject}" + (f": {evidence}" if evidence else ""), "green")


def fail(subject: str, evidence: str = "") -> None:
    _say(f"  {FAIL} {subject}" + (f": {evidence}" if evidence else ""), "red")


def warn(subject: str, evidence: str = "") -> None:
    _say(f"  {WARN} {subject}" + (f": {evidence}" if evidence else ""), "yellow")


def skip(subject: str, evidence: str = "") -> None:
    _say(f"  {SKIP} {subject}" + (f": {evidence}" if evidence else ""), "dim")


def detail(text: str) -> None:
    """Evidence under an outcome line: log lines, fixes, commands."""
    _say(f"      {text}")


def diagnosis(failures: Iterable[Failure]) -> None:
    """Catalogue entries the evidence above matched: meaning, then fix."""
    for failure in failures:
        detail(f"diagnosis: {failure.meaning}")
        detail(f"fix: {failure.fix}")


def plan(command: str) -> None:
    """A command a dry run would have run."""
    _say(f"  would run: {command}", "magenta")


def done(task: str, started: float) -> None:
    _say(f"{task}: finished in {time.monotonic() - started:.1f} s", "bold")


def table(
    title: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    result_column: int = 1,
) -> None:
    """A table on stdout; rows are coloured by the word in `result_column`."""
    from rich.table import Table

    styles = {"ok": "green", "failed": "red", "warning": "yellow", "skipped": "dim"}
    grid = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for header in headers:
        grid.add_column(header, overflow="fold")
    for row in rows:
        grid.add_row(*row, style=styles.get(row[result_column], None))
    _console(stderr=False).print(grid)


def data(text: str) -> None:
    """Data meant for piping (JSON) on stdout, exactly as given."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def require_terminal(why: str) -> None:
    """Fail now, before any work, when a later question could not be asked."""
    if not sys.stdin or not sys.stdin.isatty():
        raise UsageError(
            f"{why}, but standard input is not a terminal; pass --yes to confirm"
        )


def read_secret(what: str) -> Secret:
    """A secret typed without echo, or one line piped on standard input."""
    import getpass

    from tasks.settings import Secret

    if sys.stdin is not None and sys.stdin.isatty():
        value = getpass.getpass(f"{what} (not echoed): ")
    else:
        line = sys.stdin.readline() if sys.stdin is not None else ""
        value = line.rstrip("\r\n")
    if not value:
        raise UsageError(
            f"nothing given for: {what} (type it at the prompt, or pipe one line "
            "on standard input)"
        )
    return Secret(value)


def confirm(question: str, *, yes: bool) -> bool:
    """Ask a yes/no question whose default is No; `yes` pre-confirms.

    Without a terminal to ask on there is nobody to answer: that is a usage
    error (exit 2), never a silent default.
    """
    if yes:
        return True
    if not sys.stdin or not sys.stdin.isatty():
        raise UsageError(
            f"{question} needs an answer, but standard input is not a terminal; "
            "pass --yes to confirm"
        )
    _console().print(f"{question} [y/N] ", end="", style="bold", soft_wrap=True)
    try:
        answer = input()
    except EOFError:
        answer = ""
    return answer.strip().lower() in {"y", "yes"}
