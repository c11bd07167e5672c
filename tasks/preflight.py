"""Section 0: check the prerequisites before touching Fly.io."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from invoke import task

from tasks import checks, flyctl, ui
from tasks.diagnose import diagnose
from tasks.errors import FlyctlMissing, UsageError, task_boundary
from tasks.runner import empty_token_variables
from tasks.session import PROJECT_ROOT, Session, open_session


@task
def preflight(c):
    """
    Check flyctl, the Fly config files and the working folder.

    Read-only and local apart from `flyctl version`. Run it first on a new
    machine; `inv release` runs it as its first step.
    """
    with task_boundary("preflight"):
        check(open_session(c))


def check(session: Session) -> None:
    """Raise with every problem found; a dry run tolerates a missing flyctl."""
    ui.step("Checking prerequisites")
    problems = []

    if Path.cwd().resolve() != PROJECT_ROOT:
        problems.append(
            f"the working folder is {Path.cwd()}, not the repository root "
            f"{PROJECT_ROOT}: flyctl deploy builds from the working folder; "
            f'cd "{PROJECT_ROOT}" first'
        )
    else:
        ui.ok("working folder", str(PROJECT_ROOT))

    # A missing flyctl is raised last, so the other prerequisites are still
    # checked and shown: the operator fixes everything in one go.
    missing = None
    try:
        _check_flyctl(session)
    except FlyctlMissing as exc:
        if session.dry_run:
            ui.warn("flyctl", f"{exc.message}; the plan below is still shown")
        else:
            ui.fail("flyctl", exc.message)
            missing = exc

    for app in session.settings.apps:
        problems += _check_config(app.config, app.name, http=bool(app.health_url))

    for problem in session.settings.env_file_problems:
        problems.append(f"{problem} (fix {session.settings.env_file})")

    warn_empty_token_variables()

    for problem in problems:
        ui.fail(problem)
    if missing is not None:
        if problems:
            missing.message += f"; also {'; '.join(problems)}"
        raise missing
    if problems:
        # Named again in the error: the doctor's table and a release's
        # summary show only this message.
        raise UsageError(
            f"{len(problems)} prerequisite(s) missing: " + "; ".join(problems)
        )


def warn_empty_token_variables() -> None:
    """Say which empty token variables the tasks drop, and the shell's own fix."""
    for name in empty_token_variables(os.environ):
        ui.warn(f"{name} is set but empty", "removed for the flyctl these tasks run")
        for failure in diagnose(f"{name} is set but empty", "env"):
            ui.detail(f"fix for your own shell: {failure.fix}")


def _check_flyctl(session: Session) -> None:
    program = session.fly.require()
    text = session.fly.read(flyctl.version())
    version = checks.parse_version(text)
    if checks.version_tuple(version) < checks.RECOMMENDED_FLYCTL:
        wanted = ".".join(map(str, checks.RECOMMENDED_FLYCTL))
        ui.warn(
            f"flyctl {version} at {program}",
            f"older than {wanted}: release versions are read afterwards instead "
            "of from the deploy; upgrade with `flyctl version upgrade`",
        )
    else:
        ui.ok(f"flyctl {version}", program)


def _check_config(path: Path, app: str, *, http: bool) -> list[str]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return [f"{path.name} (Fly config of {app}) does not exist in {path.parent}"]
    except tomllib.TOMLDecodeError as exc:
        return [f"{path.name} is not valid TOML ({exc}): fix the file"]
    problems = [
        f"{path.name}: {p}" for p in checks.config_problems(data, app, http=http)
    ]
    if not problems:
        kind = "HTTP service with a health check" if http else "no HTTP service"
        ui.ok(f"{path.name}", f"app {app}, {kind}")
    return problems
