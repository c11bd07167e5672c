"""The failures a task expects, and their conversion to invoke's `Exit`.

OctoError            a step ran and failed: exit 1
├── FlyctlError      flyctl answered with an error (carries diagnoses)
│   └── FlyctlTimeout    flyctl did not answer in time
└── UsageError       the task could not start as asked: exit 2
    └── FlyctlMissing    no flyctl executable found
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

log = logging.getLogger(__name__)


class OctoError(Exception):
    """A failure the operator can act on: what failed, evidence, next step."""

    exit_code = 1

    def __init__(
        self, message: str, *, next_command: str = "", diagnoses: tuple = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.next_command = next_command
        # Catalogue entries (tasks/failures.toml) the evidence matched.
        self.diagnoses = diagnoses

    def render(self) -> str:
        lines = [self.message]
        lines += _diagnosis_lines(self.diagnoses)
        if self.next_command:
            lines.append(f"  next: {self.next_command}")
        return "\n".join(lines)


class UsageError(OctoError):
    exit_code = 2


class FlyctlMissing(UsageError):
    pass


class FlyctlError(OctoError):
    def __init__(
        self,
        message: str,
        *,
        command: str,
        exit_code: int | None,
        stderr_tail: str,
        diagnoses: tuple = (),
        next_command: str = "",
    ) -> None:
        super().__init__(message, next_command=next_command, diagnoses=diagnoses)
        self.command = command
        self.flyctl_exit_code = exit_code
        self.stderr_tail = stderr_tail

    def render(self) -> str:
        lines = [self.message]
        if self.stderr_tail:
            lines.append(f"  flyctl said: {self.stderr_tail}")
        lines += _diagnosis_lines(self.diagnoses)
        if self.next_command:
            lines.append(f"  next: {self.next_command}")
        return "\n".join(lines)


class FlyctlTimeout(FlyctlError):
    pass


def _diagnosis_lines(diagnoses: tuple) -> list[str]:
    lines = []
    for diagnosis in diagnoses:
        lines.append(f"  diagnosis: {diagnosis.meaning}")
        lines.append(f"  fix: {diagnosis.fix}")
    return lines


@contextlib.contextmanager
def task_boundary(task_name: str) -> Iterator[None]:
    """Turn every expected failure inside a task into one `Exit` line.

    A traceback then always means a bug in this code, never a production
    problem (house style, rule 12).
    """
    from invoke.exceptions import Exit

    try:
        yield
    except OctoError as exc:
        log.debug("%s failed", task_name, exc_info=True)
        raise Exit(f"{task_name}: {exc.render()}", code=exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit(f"{task_name}: interrupted", code=130) from None
