"""Walk the rotation of one exposed secret (runbook section 11).

Order matters: the new value is staged on every app that uses the name
before any app restarts, so no two apps run with different values for long;
the old value is revoked only after every app is verified on the new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks import db, deploy, flyctl, journal, probes, secrets, ui, values, verify
from tasks.errors import OctoError, UsageError
from tasks.release import Pipeline, StepFailed
from tasks.session import Session
from tasks.settings import AppSettings, Secret, read_env_file

OPENAI_KEYS_PAGE = "https://platform.openai.com/api-keys"


@dataclass(frozen=True)
class Guidance:
    """What an operator does outside this tool to rotate NAME."""

    # Done before the rotation, when the new value only exists once the old
    # one has been replaced at its source (a database password).
    before: str
    revoke: str


GUIDANCE = {
    values.OPENAI_KEY: Guidance(
        before="Create the new key first (OpenAI dashboard, API keys, same "
        "project) so that the old one keeps working until the apps are moved.",
        revoke=f"Delete the old key at {OPENAI_KEYS_PAGE} (the project that "
        "issued it); check the project's usage page for calls you did not make.",
    ),
    values.SERVICE_KEY: Guidance(
        before="A new sb_secret_ key: create it in Supabase (Project Settings > "
        "API Keys) first. A legacy service_role JWT cannot be replaced alone: "
        "rotating the legacy JWT secret replaces SUPABASE_ANON_KEY too and signs "
        "every user out, so rotate both names, one after the other.",
        revoke="Delete the old sb_secret_ key in Supabase (Project Settings > "
        "API Keys), or, for a legacy JWT, the new JWT secret already revoked it; "
        "then review the project's logs for use of the old key.",
    ),
    values.ANON_KEY: Guidance(
        before="The anon (publishable) key is public by design; it changes when "
        "the legacy JWT secret is rotated, together with the service_role key.",
        revoke="Nothing to revoke separately: the JWT secret rotation did it. "
        "Update the frontend's copy of the key too.",
    ),
    values.DB_URL: Guidance(
        before="Reset the database password in Supabase (Project Settings > "
        "Database) right before this: from then until the apps are deployed, "
        "their new database connections fail.",
        revoke="The reset already revoked the old password. Stop any other "
        "client still using it: repeated failures get an address banned.",
    ),
}
GENERIC = Guidance(
    before="Issue the new value at its source first, keeping the old one valid.",
    revoke="Revoke the old value at its source once every app is verified.",
)


def rotate_secret(session: Session, name: str, *, yes: bool) -> None:
    """Take, validate, stage, deploy, verify and record a new value for NAME."""
    apps = [
        session.settings.app(k) for k in secrets.targets(session.settings.apps, [name])
    ]
    if not apps:
        raise UsageError(
            f"no app uses {name}; rotate one of the names under "
            "required_secrets or optional_secrets in invoke.yaml"
        )
    guidance = GUIDANCE.get(name, GENERIC)
    ui.step(f"Rotating {name} on {', '.join(a.name for a in apps)}")
    old = session.settings.value(name)
    if name == values.DB_URL:
        # Before the operator resets the password (which breaks the apps'
        # new connections), make sure the URL can be rebuilt around a new one.
        check_current_db_url(session, old)
    ui.detail(f"before: {guidance.before}")

    new = read_new_value(name, old)
    check_new_value(session, name, old, new)
    show_plan(session, name, apps)
    if session.dry_run:
        return
    if not ui.confirm(
        f"Stage the new {name} on {', '.join(a.name for a in apps)}, then "
        "restart them on their running images and verify them?",
        yes=yes,
    ):
        raise OctoError(f"not confirmed; {name} is unchanged everywhere")

    pipeline = Pipeline(session, title="rotation summary")
    with journal.recording(session, "security.rotate", pipeline.results):
        stage_everywhere(session, pipeline, name, apps, old, new)
        try:
            for app in apps:
                apply_and_verify(session, pipeline, app)
        except StepFailed as failed:
            pipeline.summary()
            # The step's own next command (e.g. read the logs) is in the
            # diagnosis; what is left to decide is going on or going back.
            failed.error.next_command = ""
            stand = "".join(
                f"\n  {line}" for line in where_apps_stand(pipeline, name, apps)
            )
            raise OctoError(
                f"step {failed.step} failed: {failed.error.render()}\nwhere the "
                f"apps stand:{stand}",
                next_command=_after_failure(session, name),
            ) from None
        # Only now: until every app runs the new value, .env keeps the old
        # one, the way back.
        remember(session, name, new)
    pipeline.summary()
    ui.ok(f"{name} rotated", f"{', '.join(a.name for a in apps)} verified on it")
    ui.detail(f"now revoke the old value: {guidance.revoke}")


def where_apps_stand(
    pipeline: Pipeline, name: str, apps: list[AppSettings]
) -> list[str]:
    """One line per app: which value it runs, from the steps' results."""
    results = {r.step: r.result for r in pipeline.results}
    lines = []
    for app in apps:
        applied = results.get(f"apply.{app.key}")
        if results.get(f"verify.{app.key}") == "ok":
            state = f"runs the new {name}, verified"
        elif results.get(f"verify.{app.key}") == "failed":
            state = f"runs the new {name}, but its verification failed"
        elif applied == "failed":
            state = (
                f"restarting with the new {name} failed part way: its machines may "
                "run either value"
            )
        else:
            state = f"runs the old {name}; the new one is staged, not applied"
        lines.append(f"{app.name}: {state}")
    return lines


def _after_failure(session: Session, name: str) -> str:
    kept = _kept_in_env_file(session, name)
    back = (
        f"to go back, `inv secrets.set {name}` stages the old value, which "
        f"{session.settings.env_file.name} still holds, then `inv release`"
        if kept
        else f"to go back, stage the old value again with `inv secrets.set {name}`"
    )
    return (
        "do not revoke the old value yet: it is still valid. To go on, fix the "
        f"cause and run `inv release`, which applies the staged {name}, then put "
        f"the new value in {session.settings.env_file.name}; {back}"
    )


def check_current_db_url(session: Session, old: Secret | None) -> None:
    """Refuse to start a database rotation from a URL that cannot be rebuilt."""
    if old is None:
        raise UsageError(
            f"no {values.DB_URL} in .env to rebuild around the new password; build "
            "it with `inv db.url`, then `inv secrets.set SUPABASE_DB_URL`"
        )
    findings = values.validate(session.settings.values, names=(values.DB_URL,))
    if values.errors(findings):
        secrets.report_findings_for(values.errors(findings))
        raise UsageError(
            f"the current {values.DB_URL} is wrong (listed above), so no new one can "
            "be built from it: do not reset the database password yet; fix the URL "
            "with `inv db.url` first"
        )


def read_new_value(name: str, old: Secret | None) -> Secret:
    """The new value, typed without echo; for the database, only its password."""
    if name != values.DB_URL or old is None:
        return ui.read_secret(f"New value of {name}")
    password = ui.read_secret("New database password")
    try:
        return Secret(values.with_password(old.reveal(), password.reveal()))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def check_new_value(
    session: Session, name: str, old: Secret | None, new: Secret
) -> None:
    """Refuse an invalid, unsendable or unchanged value before anything changes."""
    if old is not None and new == old:
        raise UsageError(f"the new {name} is the value already in use; nothing to do")
    context = dict(session.settings.values, **{name: new})
    findings = values.validate(context, names=(name,), has_ipv6=probes.has_ipv6_route())
    secrets.report_findings_for(findings)
    if values.errors(findings):
        raise OctoError(
            f"refusing the new {name}: it does not pass validation (listed above); "
            "nothing was changed"
        )
    secrets.check_sendable({name: new})
    ui.ok(f"new {name}", "valid")


def show_plan(session: Session, name: str, apps: list[AppSettings]) -> None:
    def show(text: str) -> None:
        if session.dry_run:
            ui.plan(text)
        else:
            ui.detail(f"plan: {text}")

    for app in apps:
        show(
            session.fly.display(flyctl.secrets_import(app.name, stage=True))
            + " < (the new value on stdin)"
        )
    for app in apps:
        show(
            session.fly.display(flyctl.secrets_deploy(app.name))
            + " (restarts it on its running image with the staged value)"
        )
        show(f"verify {app.label}")
    if _kept_in_env_file(session, name):
        show(
            f"replace {name} in {session.settings.env_file.name}, once all are verified"
        )


def stage_everywhere(
    session: Session,
    pipeline: Pipeline,
    name: str,
    apps: list[AppSettings],
    old: Secret | None,
    new: Secret,
) -> None:
    """Stage NEW on every app, or put back OLD on those staged when one fails."""
    staged: list[AppSettings] = []
    # Digests before anything changed, to tell whether the put-back restored
    # exactly what each app held.
    before: dict[str, str] = {}
    for app in apps:
        before[app.key] = journal.current_digests(session, app).get(name, "")
        try:
            pipeline.run(
                f"stage.{app.key}",
                lambda app=app: secrets.stage_values(session, app, {name: new}),
                evidence=lambda changed: "changed" if changed else "unchanged",
            )
        except StepFailed as failed:
            pipeline.summary()
            failed.error.next_command = ""
            raise OctoError(
                f"step {failed.step} failed: {failed.error.render()}",
                next_command=_restore(session, name, staged, old, before),
            ) from None
        staged.append(app)


def _restore(
    session: Session,
    name: str,
    staged: list[AppSettings],
    old: Secret | None,
    before: dict[str, str],
) -> str:
    """Stage OLD again where NEW was staged; return what to do next.

    "Old" is the value .env (or the environment) holds: Fly never shows a
    value back, so when production had drifted from .env, the put-back
    stages .env's value, and the digests say so.
    """
    again = f"fix the cause, then run `inv security.rotate {name}` again"
    if not staged:
        return f"nothing was changed on any app; {again}"
    names = ", ".join(a.name for a in staged)
    if old is None:
        return (
            f"the new {name} stays staged on {names} (no old value in .env to put "
            f"back) and applies at their next deploy; {again}"
        )
    drifted = []
    for app in staged:
        ui.step(f"Putting the old {name} back on {app.name}")
        secrets.stage_values(session, app, {name: old})
        if journal.current_digests(session, app).get(name, "") != before[app.key]:
            drifted.append(app.name)
    if drifted:
        ui.warn(
            f"{', '.join(drifted)} now have .env's old {name} staged",
            "it differs from the value they ran before (see `inv secrets.check`); "
            "it applies at their next deploy",
        )
    else:
        ui.ok(f"{name} unchanged", f"{names} hold exactly the old value again")
    return (
        f"no app runs or holds the new {name}; keep the old one (do not revoke "
        f"it); {again}"
    )


def remember(session: Session, name: str, new: Secret) -> None:
    """Keep .env the source of truth, if that is where the value lives."""
    path = session.settings.env_file
    if _kept_in_env_file(session, name):
        db.write_env_value(path, name, new)
        ui.ok(f"{name} replaced in {path.name}")
    else:
        ui.warn(
            f"{name} is not in {path.name}",
            "update it wherever your environment sets it (e.g. the CI secret store)",
        )


def _kept_in_env_file(session: Session, name: str) -> bool:
    in_file, _ = read_env_file(session.settings.env_file)
    return name in in_file


def apply_and_verify(session: Session, pipeline: Pipeline, app: AppSettings) -> None:
    """Apply the staged value on APP's running image, then verify APP."""
    pipeline.run(f"apply.{app.key}", lambda: deploy.apply_staged_secrets(session, app))
    pipeline.run(f"verify.{app.key}", lambda: verify.verify_app(session, app, None))
