"""Sections 4 and 5: deploy the API and the worker to Fly.io."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from invoke import task

from tasks import checks, flyctl, journal, ui, verify
from tasks.diagnose import merge
from tasks.errors import FlyctlError, OctoError, task_boundary
from tasks.session import Session, open_session
from tasks.settings import AppSettings

IMAGE_HELP = (
    "Deploy this pre-built image ref instead of building "
    "(e.g. registry.fly.io/<app>:deployment-...)"
)
YES_HELP = "Deploy without asking first (for CI)"
DRY_RUN_HELP = "Show the deploy command and the release it replaces; change nothing"
# Deploy failures after the new release ran on a machine: its logs hold the cause.
MACHINES_RAN = {
    "deploy-health-checks",
    "deploy-machine-state",
    "crash-loop",
    "release-command-failed",
}


@dataclass(frozen=True)
class DeployRecord:
    """One app's release before and after a deploy."""

    app: AppSettings
    before: checks.Release | None
    after: checks.Release | None


@task(help={"image": IMAGE_HELP, "yes": YES_HELP, "dry_run": DRY_RUN_HELP})
def api(c, image="", yes=False, dry_run=False):
    """
    Deploy the API app with fly.toml (section 4).

    Streams flyctl's output and prints the release version and image before
    and after. Verify afterwards with `inv verify.api`.
    """
    _deploy_task(c, "api", image, yes, dry_run)


@task(help={"image": IMAGE_HELP, "yes": YES_HELP, "dry_run": DRY_RUN_HELP})
def worker(c, image="", yes=False, dry_run=False):
    """
    Deploy the worker app with fly.worker.toml (section 5).

    Streams flyctl's output and prints the release version and image before
    and after. Verify afterwards with `inv verify.worker`.
    """
    _deploy_task(c, "worker", image, yes, dry_run)


@task(
    help={
        "app": "Key of the app under octo.apps in invoke.yaml (e.g. scheduler)",
        "image": IMAGE_HELP,
        "yes": YES_HELP,
        "dry_run": DRY_RUN_HELP,
    }
)
def app(c, app, image="", yes=False, dry_run=False):
    """
    Deploy any configured app by its key, e.g. a scheduler.

    The same as deploy.api and deploy.worker for apps added to invoke.yaml.
    """
    _deploy_task(c, app, image, yes, dry_run)


def _deploy_task(c, key: str, image: str, yes: bool, dry_run: bool) -> None:
    with task_boundary(f"deploy.{key}"):
        session = open_session(c, dry_run=dry_run)
        target = session.settings.app(key)
        if not dry_run and not ui.confirm(
            f"Deploy {target.name} to production?", yes=yes
        ):
            raise OctoError("not confirmed; nothing was deployed")
        with journal.recording(session, f"deploy.{key}"):
            deploy_app(session, target, image=image)
        ui.done(f"deploy.{key}", session.started)


def current_release(session: Session, app: AppSettings) -> checks.Release | None:
    """The newest release of APP, or None for an app never deployed."""
    data = session.fly.read_json(flyctl.releases(app.name), app=app.name)
    try:
        releases = checks.parse_releases(data)
    except checks.ParseError as exc:
        raise OctoError(
            f"releases of {app.name} have an unknown shape: {exc}"
        ) from None
    return releases[0] if releases else None


def deploy_app(session: Session, app: AppSettings, *, image: str = "") -> DeployRecord:
    """Deploy APP and return its release before and after.

    Raise naming the release it was on, so the operator knows what to roll
    back to.
    """
    ui.step(f"Deploying {app.label} with {app.config.name}")
    session.fly_config(app)  # a missing or broken config fails before flyctl runs
    if session.fly.available:
        before = current_release(session, app)
    else:
        before = None
        ui.plan(session.fly.display(flyctl.releases(app.name)))
    if before:
        ui.ok(f"{app.name} now runs v{before.version}", before.image or "image unknown")
    args = flyctl.deploy(app.name, _relative(app.config, session), image=image)
    if session.fly.available and not session.dry_run:
        session.replaced.setdefault(app.key, before)
    try:
        result = session.fly.change(args, app=app.name)
    except FlyctlError as exc:
        back = (
            f"flyctl deploy --app {app.name} --config {app.config.name} "
            f"--image {before.image}"
            if before and before.image
            else f"flyctl releases --app {app.name} --image"
        )
        exc.next_command = back
        if {f.id for f in exc.diagnoses} & MACHINES_RAN:
            exc.diagnoses = merge(
                exc.diagnoses, verify.failure_evidence_from_logs(session, app)
            )
        raise
    if result is None:
        return DeployRecord(app, before, None)
    after = checks.parse_release_line(result.stdout) or current_release(session, app)
    if after:
        ui.ok(f"{app.name} deployed v{after.version}", after.image)
    return DeployRecord(app, before, after)


def apply_staged_secrets(session: Session, app: AppSettings) -> None:
    """Restart APP's machines with its staged secrets, on the image it runs.

    A secret change is no code change: `flyctl secrets deploy` keeps the
    running image and config, where `flyctl deploy` would build this
    folder's code and release it too.
    """
    ui.step(f"Applying the staged secrets on {app.label}")
    if session.fly.available and not session.dry_run:
        session.replaced.setdefault(app.key, current_release(session, app))
    session.fly.change(flyctl.secrets_deploy(app.name), app=app.name)


def _relative(path: Path, session: Session) -> Path:
    """The config path as the operator would type it from the repository root."""
    try:
        return path.relative_to(session.settings.root)
    except ValueError:
        return path
