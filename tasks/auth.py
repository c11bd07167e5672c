"""Section 1: who is logged in, and can they reach each app."""

from __future__ import annotations

from invoke import task

from tasks import checks, flyctl, ui
from tasks.errors import FlyctlError, OctoError, task_boundary
from tasks.session import Session, open_session


@task
def check(c):
    """
    Show the Fly.io login and check each app is reachable.

    Each app is probed with `flyctl status` rather than `flyctl apps list`,
    which an app-scoped deploy token (CI) is not allowed to run.
    """
    with task_boundary("auth.check"):
        check_access(open_session(c))


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
        raise OctoError("not logged in to Fly.io", next_command=fix) from None

    # NOTE: whoami succeeding proves little: a stale session still answers it
    # while app commands fail with "Not authorized to access this firecrackerapp".
    statuses, failed = {}, []
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
            continue
        statuses[app.key] = status
        ui.ok(
            f"{app.label} reachable",
            f"release v{status.version}, {len(status.machines)} machine(s)",
        )
    if failed:
        raise OctoError(
            f"{len(failed)} app(s) not reachable: {', '.join(failed)} (diagnosis above)"
        )
    return statuses


def _report(exc: FlyctlError) -> None:
    ui.detail(f"flyctl said: {exc.stderr_tail or exc.message}")
    ui.diagnosis(exc.diagnoses)
