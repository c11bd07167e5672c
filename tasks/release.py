"""The whole release: check, deploy and verify every app, in order."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from invoke import task

from tasks import auth, deploy, flyctl, journal, preflight, secrets, smoke, ui, verify
from tasks.errors import OctoError, UsageError, task_boundary
from tasks.rollback import after_failure, interrupted_release, mode_of
from tasks.session import Session, open_session


@dataclass
class StepResult:
    step: str
    result: str  # ok, failed, skipped, planned
    seconds: float
    evidence: str = ""


class StepFailed(Exception):
    def __init__(self, step: str, error: OctoError) -> None:
        super().__init__(step)
        self.step = step
        self.error = error


@dataclass
class Pipeline:
    """Runs named steps in order, timing each; the first failure stops it."""

    session: Session
    results: list[StepResult] = field(default_factory=list)
    title: str = "release summary"

    def run(
        self,
        step: str,
        action: Callable[[], Any],
        evidence: Callable[[Any], str] = lambda value: "",
    ) -> Any:
        started = time.monotonic()
        try:
            value = action()
        except OctoError as exc:
            self.results.append(
                StepResult(step, "failed", time.monotonic() - started, exc.message)
            )
            raise StepFailed(step, exc) from None
        outcome = (
            "planned"
            if self.session.dry_run and step.startswith(("deploy", "verify"))
            else "ok"
        )
        self.results.append(
            StepResult(step, outcome, time.monotonic() - started, evidence(value))
        )
        return value

    def skip(self, step: str, reason: str, commands: list[list[str]] = ()) -> None:
        """Record a step that cannot run, showing the commands it would have run."""
        ui.skip(step, reason)
        for args in commands:
            ui.plan(self.session.fly.display(args))
        self.results.append(StepResult(step, "skipped", 0.0, reason))

    def summary(self) -> None:
        ui.table(
            self.title,
            ["step", "result", "duration", "evidence"],
            [
                (r.step, r.result, f"{r.seconds:.1f} s", r.evidence)
                for r in self.results
            ],
        )


@task(
    default=True,
    help={
        "yes": "Release without asking first (for CI)",
        "dry_run": "Run the read-only checks and print every command a release "
        "would run, in order; change nothing (works without flyctl)",
        "rollback": "When a step fails after a deploy: automatic, ask or never "
        "roll back the apps deployed so far (default from octo.auto_rollback)",
        "skip_smoke": "Release without the smoke test that otherwise runs last "
        "(inv smoke, section 8)",
    },
)
def run(c, yes=False, dry_run=False, rollback="", skip_smoke=False):
    """
    Release the backend: check, deploy and verify each app.

    Runs preflight, auth.check and secrets.check, then deploys and verifies
    the API and then the worker, and ends with the smoke test. At the first
    failure after a deploy, puts the apps deployed so far back on their
    previous images and verifies them. Ends with a summary table; the
    journal keeps the run.
    """
    with task_boundary("release"):
        # First: refusing invoke's --dry says more than asking for a terminal.
        session = open_session(c, dry_run=dry_run)
        if not dry_run and not yes:
            ui.require_terminal("release asks before deploying to production")
        mode = mode_of(session.settings.extra, rollback)
        pipeline = Pipeline(session)
        with journal.recording(session, "release", pipeline.results) as recorder:
            try:
                release_apps(session, pipeline, yes=yes, skip_smoke=skip_smoke)
            except StepFailed as failed:
                error = after_failure(
                    session, pipeline, recorder, failed, mode=mode, yes=yes
                )
                pipeline.summary()
                raise error from None
            except KeyboardInterrupt:
                interrupted_release(session)
                raise
            pipeline.summary()
        verb = "planned (dry run, nothing changed)" if dry_run else "released"
        ui.ok(f"{', '.join(a.name for a in session.settings.apps)} {verb}")
        ui.done("release", session.started)


@task(
    help={
        "json": "Print the records as a JSON array on stdout (newest first), "
        "for scripts",
        "limit": "Show only the newest N runs (default: all)",
    }
)
def history(c, json=False, limit=0):
    """
    Show the release journal, newest first.

    One row per release, deploy and rollback: when, result, who ran it and
    each app's release before and after. With --json, the full records
    (steps, image refs, config hashes, secret digests) go to stdout.
    """
    with task_boundary("release.history"):
        session = open_session(c)
        path = journal.path_of(session.settings)
        records = journal.read(path)
        if json:
            newest = list(reversed(records))
            ui.data(journal.dumps(newest[: int(limit)] if limit else newest))
            return
        if not records:
            ui.skip("the journal is empty", f"no runs recorded in {path} yet")
            return
        ui.table(
            f"release journal ({path.name}, newest first)",
            ["when (UTC)", "task", "result", "who", "apps", "duration"],
            journal.history_rows(records, int(limit)),
            result_column=2,
        )


def release_apps(
    session: Session, pipeline: Pipeline, *, yes: bool, skip_smoke: bool = False
) -> None:
    """Every step of a release; raise `StepFailed` at the first failure."""
    apps = session.settings.apps
    # Missing smoke settings stop the release before it changes anything; a
    # dry run still shows the rest of the plan, and says the release would stop.
    smoke_plan, no_smoke = None, "--skip-smoke given"
    if not skip_smoke:
        try:
            smoke_plan = smoke.prepare(
                session,
                next_command="set them, or release without: inv release --skip-smoke",
            )
        except UsageError as exc:
            if not session.dry_run:
                raise
            ui.warn("a real release would stop here, before deploying", exc.render())
            no_smoke = "settings missing (see the warning above)"
    pipeline.run("preflight", lambda: preflight.check(session))
    if session.fly.available:
        pipeline.run("auth.check", lambda: auth.check_access(session))
        pipeline.run("secrets.check", lambda: secrets.check_names(session))
    else:
        reason = "flyctl not found (dry run)"
        pipeline.skip(
            "auth.check",
            reason,
            [flyctl.whoami()] + [flyctl.status(a.name) for a in apps],
        )
        pipeline.skip(
            "secrets.check", reason, [flyctl.secrets_list(a.name) for a in apps]
        )

    if not session.dry_run:
        names = ", ".join(a.name for a in apps)
        if not ui.confirm(f"Deploy {names} to production?", yes=yes):
            raise OctoError("not confirmed; nothing was deployed")

    for app in apps:
        record = pipeline.run(
            f"deploy.{app.key}",
            lambda app=app: deploy.deploy_app(session, app),
            evidence=_deploy_evidence,
        )
        expected = record.after.version if record.after else None
        pipeline.run(
            f"verify.{app.key}",
            lambda app=app, expected=expected: verify.verify_app(
                session, app, expected
            ),
            evidence=lambda _, expected=expected: f"v{expected}" if expected else "",
        )

    smoke.run_in_release(session, pipeline, smoke_plan, why_not=no_smoke)


def _deploy_evidence(record: deploy.DeployRecord) -> str:
    if not record.after:
        return ""
    before = f"v{record.before.version}" if record.before else "none"
    return f"{before} -> v{record.after.version} {record.after.image}"
