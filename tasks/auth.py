"""Section 1: who is logged in, and can they reach each app."""

from __future__ import annotations

from invoke import task

from tasks import checks, flyctl, preflight, ui
from tasks.errors import FlyctlError, OctoError, task_boundary
from tasks.session import Session, open_session


class AppsUnreachable(OctoError):
    """Logged in, but some configured apps cannot be reached."""

    def __init__(self, message: str, *, apps: list[str], diagnoses: tuple) -> None:
        super().__init__(message, diagnoses=diagnoses)
        self.apps = apps


@task
def check(c):
    """
    Show the Fly.io login and check each app is reachable.

    Each app is probed with `flyctl status` rather than `flyctl apps list`,
    which an app-scoped deploy token (CI) is not allowed to run.
    """
    with task_boundary("auth.check"):
        session = open_session(c)
        preflight.warn_empty_token_variables()
        check_access(session)


def check_access(session: Session) -> dict[str, checks.AppStatus]:
    """The status of every configured app; raise naming each unreachable one."""
    ui.step("Checking Fly.io login and app access")
    fly = session.fly
    try:
        who = fly.read_json(flyctl.whoami())
        ui.ok("logged in", str(who.get("email", "?")) if isinstance(who, dict) else "?")
    except FlyctlError as exc:
        _report(exc)
        fix = exc.diagnoses[0].fix if exc.diagnoses else "flyctl auth login"
        raise OctoError(
            "not logged in to Fly.io", next_command=fix, diagnoses=exc.diagnoses
        ) from None

    # NOTE: whoami succeeding proves little: a stale session still answers it
    # while app commands fail with "Not authorized to access this firecrackerapp".
    statuses, failed, diagnoses = {}, [], []
    for app in session.settings.apps:
        try:
            data = fly.read_json(flyctl.status(app.name), app=app.name)
            status = checks.parse_status(data)
        except checks.ParseError as exc:
            raise OctoError(
                f"flyctl status for {app.name} has an unknown shape: {exc}"
            ) from None
        except FlyctlError as exc:
            ui.fail(f"{app.label} not reachable")
            _report(exc)
            failed.append(app.name)
            diagnoses += [d for d in exc.diagnoses if d not in diagnoses]
            continue
        statuses[app.key] = status
        ui.ok(
            f"{app.label} reachable",
            f"release v{status.version}, {len(status.machines)} machine(s)",
        )
    if failed:
        raise AppsUnreachable(
            f"{len(failed)} app(s) not reachable: {', '.join(failed)}",
            apps=failed,
            diagnoses=tuple(diagnoses),
        )
    return statuses


def _report(exc: FlyctlError) -> None:
    # The diagnoses travel on the error raised at the end, shown once there.
    ui.detail(f"flyctl said: {exc.stderr_tail or exc.message}")
