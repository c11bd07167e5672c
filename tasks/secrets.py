"""Sections 2 and 3: the apps' secrets, by name; values never shown."""

from __future__ import annotations

from invoke import task

from tasks import checks, flyctl, ui
from tasks.errors import FlyctlError, OctoError, task_boundary
from tasks.session import Session, open_session


@task
def check(c):
    """
    Check that each app has every required secret name.

    Reports names only: missing (a failure), staged but not deployed, and
    names no setting expects. Fly never shows values back.
    """
    with task_boundary("secrets.check"):
        check_names(open_session(c))


def check_names(session: Session) -> dict[str, list[checks.SecretEntry]]:
    """Every app's secret entries; raise when a required name is missing."""
    ui.step("Checking secret names")
    entries_by_app, missing_total = {}, []
    for app in session.settings.apps:
        try:
            data = session.fly.read_json(flyctl.secrets_list(app.name), app=app.name)
            entries = checks.parse_secrets(data)
        except checks.ParseError as exc:
            raise OctoError(
                f"secrets list of {app.name} has an unknown shape: {exc}"
            ) from None
        except FlyctlError as exc:
            raise OctoError(
                f"cannot list the secrets of {app.name}: {exc.render()}"
            ) from None
        entries_by_app[app.key] = entries
        names = checks.compare_secret_names(
            entries, app.required_secrets, app.optional_secrets
        )
        if names.missing:
            ui.fail(f"{app.label} is missing", ", ".join(names.missing))
            missing_total += [f"{app.name}: {n}" for n in names.missing]
        else:
            ui.ok(
                f"{app.label}",
                f"all {len(app.required_secrets)} required names present",
            )
        if names.staged:
            ui.warn(
                f"{app.label} staged, not deployed",
                ", ".join(names.staged) + " (the next deploy applies them)",
            )
        if names.partial:
            ui.warn(f"{app.label} partially deployed", ", ".join(names.partial))
        if names.unexpected:
            ui.warn(
                f"{app.label} has names no setting expects", ", ".join(names.unexpected)
            )
    if missing_total:
        raise OctoError(
            f"{len(missing_total)} required secret(s) missing: {'; '.join(missing_total)}",
            next_command="add them to .env and stage them: "
            "flyctl secrets import --app <app> --stage (values on stdin)",
        )
    return entries_by_app
