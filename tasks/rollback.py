"""Section 9: roll the API and the worker back to earlier images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from invoke import task

from tasks import checks, deploy, flyctl, journal, targets, ui, verify
from tasks.errors import OctoError, UsageError, task_boundary
from tasks.session import Session, open_session
from tasks.settings import AppSettings

if TYPE_CHECKING:
    from tasks.release import Pipeline, StepFailed

MODES = ("automatic", "ask", "never")
TO_HELP = (
    "Release version whose image to deploy again, e.g. 12 (default: the newest "
    "earlier complete release with another image)"
)
YES_HELP = "Roll back without asking first (for CI)"
DRY_RUN_HELP = (
    "Show what would go back to which image, and the commands; change nothing"
)
IMAGE_ONLY = (
    "an image rollback restores only the image: secrets and the Fly config "
    "stay as they are now"
)


@dataclass
class Progress:
    """Where one app's rollback is, so an interruption can say so."""

    app: AppSettings
    plan: targets.Plan
    stage: str = "waiting"  # waiting, deploying, verifying, done, failed
    release: checks.Release | None = None  # the release the rollback made
    error: str = ""


@task(default=True, help={"yes": YES_HELP, "dry_run": DRY_RUN_HELP})
def pair(c, yes=False, dry_run=False):
    """
    Roll back the API and the worker to the last good pair.

    Deploys again the images both apps ran before the last release in the
    journal (without one: each app's newest earlier complete release), the
    worker first, and verifies each app as a release does. Secrets and the
    Fly config stay as they are; the secrets changed since are listed.
    """
    _rollback_task(c, "rollback", (), 0, yes, dry_run)


@task(help={"to": TO_HELP, "yes": YES_HELP, "dry_run": DRY_RUN_HELP})
def api(c, to=0, yes=False, dry_run=False):
    """
    Roll back the API to an earlier release's image.

    Deploys with fly.toml the image of the newest earlier complete release
    whose image differs from the running one (or of release --to), then
    verifies the API as `inv verify.api` does.
    """
    _rollback_task(c, "rollback.api", ("api",), to, yes, dry_run)


@task(help={"to": TO_HELP, "yes": YES_HELP, "dry_run": DRY_RUN_HELP})
def worker(c, to=0, yes=False, dry_run=False):
    """
    Roll back the worker to an earlier release's image.

    Deploys with fly.worker.toml the image of the newest earlier complete
    release whose image differs from the running one (or of release --to),
    then verifies the worker as `inv verify.worker` does.
    """
    _rollback_task(c, "rollback.worker", ("worker",), to, yes, dry_run)


def _rollback_task(
    c, name: str, keys: Sequence[str], to: int, yes: bool, dry_run: bool
) -> None:
    # NOTE: release.py imports this module for its automatic rollback, so
    # the pipeline is imported here, when a task runs, not at the top.
    from tasks.release import Pipeline

    with task_boundary(name):
        session = open_session(c, dry_run=dry_run)
        settings = session.settings
        apps = [settings.app(k) for k in keys] or rollback_order(settings.apps)
        records = journal.read(journal.path_of(settings))
        plans = plan_apps(session, apps, records, to=int(to), pair=not keys)
        todo = [p for p in plans if p.needed]
        show_plans(session, plans, records)
        if not todo:
            ui.ok("nothing to roll back", "every app already runs its target image")
            return
        if dry_run:
            for plan in todo:
                app = settings.app(plan.app)
                ui.plan(session.fly.display(_deploy_args(session, app, plan.target)))
                ui.plan(f"inv verify.{app.key} --version <the new release>")
            return

        names = ", ".join(settings.app(p.app).name for p in todo)
        if not ui.confirm(f"Roll back {names}?", yes=yes):
            raise OctoError("not confirmed; nothing was rolled back")
        pipeline = Pipeline(session)
        with journal.recording(session, name, pipeline.results) as recorder:
            progress = roll_back(session, pipeline, todo, recorder)
            pipeline.summary()
            failed = [item for item in progress if item.stage != "done"]
            if failed:
                recorder.result = "failed"
                raise OctoError(remaining_work(session, failed))
        ui.ok(f"{names} rolled back and verified")
        ui.done(name, session.started)


def rollback_order(apps: Sequence[AppSettings]) -> list[AppSettings]:
    """The release order reversed: the worker stops running new code first.

    The worker is the app that acts on its own (claiming jobs); putting it
    back before the API leaves the shortest time in which old API code
    enqueues work for a new worker.
    """
    return list(reversed(apps))


def mode_of(extra: Mapping[str, Any], option: str) -> str:
    """The automatic-rollback mode: the option, else octo.auto_rollback."""
    mode = (option or str(extra.get("auto_rollback") or "automatic")).strip().lower()
    if mode not in MODES:
        where = "--rollback" if option else "octo.auto_rollback"
        raise UsageError(
            f"{where} is {mode!r}; use one of {', '.join(MODES)} (invoke.yaml "
            "or inv release --rollback MODE)"
        )
    return mode


# --- planning -----------------------------------------------------------------


def plan_apps(
    session: Session,
    apps: Sequence[AppSettings],
    records: Sequence[Mapping[str, Any]],
    *,
    to: int,
    pair: bool,
) -> list[targets.Plan]:
    """Choose every app's target; report every app without one, at once."""
    last = journal.last_release(records) if pair else None
    befores = journal.befores(last) if last else {}
    if pair and last is None:
        ui.warn(
            "the journal holds no release",
            "each app goes back to its newest earlier complete release",
        )
    plans, problems = [], []
    for app in apps:
        releases = _releases(session, app)
        before = befores.get(app.name)
        if last is not None and before is None and releases:
            # The last release did not deploy this app: it stays where it is.
            before = releases[0]
        try:
            plans.append(
                targets.choose(
                    app.key,
                    releases,
                    to=to,
                    recorded=journal.known_releases(records, app.name),
                    before=before,
                    avoid=journal.rolled_back_from(records, app.name),
                )
            )
        except targets.NoTarget as exc:
            problems.append(f"{app.name} {exc}")
    if problems:
        raise UsageError(
            "nothing to roll back to, so nothing was changed:\n  "
            + "\n  ".join(problems),
            next_command="flyctl releases --app APP --image shows the visible "
            "releases; inv deploy.api --image REF deploys any image",
        )
    return plans


def _releases(session: Session, app: AppSettings) -> list[checks.Release]:
    data = session.fly.read_json(flyctl.releases(app.name), app=app.name)
    try:
        return checks.parse_releases(data)
    except checks.ParseError as exc:
        raise OctoError(
            f"releases of {app.name} have an unknown shape: {exc}"
        ) from None


def show_plans(
    session: Session,
    plans: Sequence[targets.Plan],
    records: Sequence[Mapping[str, Any]],
) -> None:
    """Say what each app goes back to, and what an image rollback leaves."""
    ui.step("Choosing the release each app goes back to")
    for plan in plans:
        app = session.settings.app(plan.app)
        current, target = plan.current, plan.target
        if not plan.needed:
            ui.skip(
                f"{app.name} already runs the image of v{target.version}",
                f"v{current.version} {current.image}; nothing to do",
            )
            continue
        ui.ok(
            f"{app.name} v{current.version} ({current.status}) -> the image "
            f"of v{target.version}",
            target.image,
        )
        ui.detail(f"chosen as {plan.reason}")
        if plan.skipped:
            ui.detail(f"passed over: {', '.join(plan.skipped)}")
        if current.status == "running":
            ui.warn(
                f"{app.name} v{current.version} is still running",
                "another deploy may be under way; check flyctl releases first",
            )
        _show_machines(session, app)

    needed = [p for p in plans if p.needed]
    if needed:
        ui.warn(IMAGE_ONLY)
        for plan in needed:
            for line in drift_notes(
                session, session.settings.app(plan.app), plan, records
            ):
                ui.detail(line)


def _show_machines(session: Session, app: AppSettings) -> None:
    try:
        data = session.fly.read_json(flyctl.status(app.name), app=app.name)
        status = checks.parse_status(data)
    except (OctoError, checks.ParseError):
        return  # evidence only: the rollback does not depend on it
    versions = {m.version for m in status.machines}
    if len(versions) > 1:
        ui.warn(
            f"{app.name} machines run mixed releases: {targets.machine_spread(status)}",
            "a rolling deploy stopped part way; the rollback moves them all",
        )


def drift_notes(
    session: Session,
    app: AppSettings,
    plan: targets.Plan,
    records: Sequence[Mapping[str, Any]],
) -> list[str]:
    """What differs from the target release besides the image, per the journal."""
    version = plan.target.version
    then = journal.snapshot_of(records, app.name, version)
    if then is None:
        return [
            f"{app.name}: the journal has no record of v{version}, so it cannot "
            "tell which secrets or config changed since"
        ]
    notes = []
    digests = then.get("secret_digests")
    try:
        now = journal.current_digests(session, app)
    except OctoError as exc:
        now = None
        notes.append(f"{app.name}: secrets unreadable now ({exc.message})")
    if isinstance(digests, Mapping) and now is not None:
        changed = journal.changed_secrets(digests, now)
        notes.append(
            f"{app.name}: secrets changed since v{version}: {', '.join(changed)}"
            if changed
            else f"{app.name}: no secret changed since v{version} (by digest)"
        )
    elif now is not None:
        notes.append(f"{app.name}: the journal has no secret digests for v{version}")
    try:
        sha_now = journal.config_hash(app.config.read_bytes())
    except OSError:
        sha_now = ""
    if then.get("config_sha256") and sha_now and then["config_sha256"] != sha_now:
        notes.append(
            f"{app.name}: {app.config.name} changed since v{version}; the "
            "rollback deploys the current file"
        )
    return notes


# --- rolling back -------------------------------------------------------------


def roll_back(
    session: Session,
    pipeline: Pipeline,
    plans: Sequence[targets.Plan],
    recorder: journal.Recorder,
) -> list[Progress]:
    """Deploy each plan's target image and verify it; carry on past failures.

    Every app is tried even when one fails: two apps half rolled back is the
    state this exists to prevent. On Ctrl-C, say where each app stands.
    """
    progress = [Progress(session.settings.app(p.app), p) for p in plans]
    try:
        for item in progress:
            _roll_back_one(session, pipeline, item)
            _note(recorder, item)
    except KeyboardInterrupt:
        for item in progress:
            if item.stage != "waiting":
                _note(recorder, item, result="interrupted")
        ui.fail("interrupted during the rollback; where each app stands:")
        for line in where_apps_stand(progress):
            ui.detail(line)
        raise
    return progress


def _roll_back_one(session: Session, pipeline: Pipeline, item: Progress) -> None:
    from tasks.release import StepFailed

    app, target = item.app, item.plan.target
    ui.step(f"Rolling back {app.label} to the image of v{target.version}")
    item.stage = "deploying"
    try:
        record = pipeline.run(
            f"rollback.{app.key}",
            lambda: deploy.deploy_app(session, app, image=target.image),
            evidence=lambda record: (
                f"v{item.plan.current.version} -> "
                f"v{record.after.version if record.after else '?'} "
                f"(image of v{target.version})"
            ),
        )
    except StepFailed as failed:
        _stop(item, failed)
        return
    item.release = record.after
    version = record.after.version if record.after else None
    item.stage = "verifying"
    try:
        pipeline.run(
            f"rollback.verify.{app.key}",
            lambda: verify.verify_app(session, app, version),
            evidence=lambda _: f"v{version}" if version else "",
        )
    except StepFailed as failed:
        _stop(item, failed)
        return
    item.stage = "done"


def _stop(item: Progress, failed: StepFailed) -> None:
    if journal.is_interruption(failed.error):
        raise KeyboardInterrupt
    item.stage = "failed"
    item.error = failed.error.render()


def _note(recorder: journal.Recorder, item: Progress, result: str = "") -> None:
    recorder.note_rollback(
        item.app.key,
        source=item.plan.current.image,
        target=item.plan.target.image,
        result=result or ("verified" if item.stage == "done" else "failed"),
    )


def where_apps_stand(progress: Sequence[Progress]) -> list[str]:
    """One line per app: what it runs now, as far as this run knows."""
    lines = []
    for item in progress:
        name, plan = item.app.name, item.plan
        target = f"the image of v{plan.target.version}"
        made = f" (v{item.release.version})" if item.release else ""
        lines.append(
            {
                "waiting": f"{name}: not rolled back; still on v{plan.current.version}",
                "deploying": f"{name}: stopped while deploying {target}; its "
                "machines may run a mix of the old and the new image (see "
                f"flyctl status --app {name})",
                "verifying": f"{name}: runs {target} again{made}, not verified",
                "done": f"{name}: back on {target}{made}, verified",
                "failed": f"{name}: rollback to {target} failed",
            }[item.stage]
        )
    return lines


def remaining_work(session: Session, failed: Sequence[Progress]) -> str:
    """The failure message: what went wrong, and the exact commands left."""
    lines = ["the rollback did not finish; where each app stands:"]
    lines += [f"  {line}" for line in where_apps_stand(failed)]
    for item in failed:
        if item.error:
            lines.append("  " + item.error.replace("\n", "\n  "))
    lines.append("run by hand what remains:")
    for item in failed:
        if item.release is None:
            args = _deploy_args(session, item.app, item.plan.target)
            lines.append("  " + session.fly.display(args))
        lines.append(f"  inv verify.{item.app.key}")
    return "\n".join(lines)


def _deploy_args(
    session: Session, app: AppSettings, target: checks.Release
) -> list[str]:
    """The deploy a rollback runs, as `deploy_app` builds it."""
    config = deploy._relative(app.config, session)
    return flyctl.deploy(app.name, config, image=target.image)


# --- after a failed release ---------------------------------------------------


def after_failure(
    session: Session,
    pipeline: Pipeline,
    recorder: journal.Recorder,
    failed: StepFailed,
    *,
    mode: str,
    yes: bool,
) -> OctoError:
    """Put back the apps this release deployed; return the error to raise.

    Any failed step after the first deploy lands here (a deploy, a
    verification, a later smoke test), and every app deployed so far goes
    back to the image it ran before this release.
    """
    if journal.is_interruption(failed.error):
        interrupted_release(session)
        raise KeyboardInterrupt
    head = f"step {failed.step} failed"
    cause = "  " + failed.error.render().replace("\n", "\n  ")
    plans = _undo_plans(session, pipeline)
    if not plans:
        error = OctoError(f"{head}; nothing after it ran\n{cause}")
        # A step that could not start (no flyctl, bad settings) keeps exit 2.
        error.exit_code = failed.error.exit_code
        return error

    names = ", ".join(session.settings.app(p.app).name for p in plans)
    go = mode == "automatic" or (
        mode == "ask"
        and ui.confirm(f"Roll back {names} to their previous images?", yes=yes)
    )
    if not go:
        why = (
            "the rollback was not confirmed"
            if mode == "ask"
            else "automatic rollback is never (octo.auto_rollback or --rollback)"
        )
        pipeline.skip("rollback", f"{names} not rolled back: {why}")
        recorder.result = "failed, not rolled back"
        return OctoError(
            f"{head}; nothing after it ran, and {names} stay on the new image(s): "
            f"{why}\n{cause}",
            next_command="inv rollback --yes",
        )

    progress = roll_back(session, pipeline, plans, recorder)
    stuck = [item for item in progress if item.stage != "done"]
    if stuck:
        recorder.result = "failed, rollback failed"
        return OctoError(f"{head}\n{cause}\n{remaining_work(session, stuck)}")
    recorder.result = "failed, rolled back"
    back = "".join(f"\n  {line}" for line in where_apps_stand(progress))
    # A failed deploy's own next command is to deploy the previous image,
    # which the rollback just did; what is left is the cause.
    if failed.step.startswith("deploy."):
        failed.error.next_command = ""
    cause = "  " + failed.error.render().replace("\n", "\n  ")
    return OctoError(
        f"{head}; the apps it deployed are back on their previous images:"
        f"{back}\nwhat failed:\n{cause}",
        next_command="fix the cause shown above, then `inv release` again",
    )


def _undo_plans(session: Session, pipeline: Pipeline) -> list[targets.Plan]:
    """Rollbacks for the apps this run changed, in reverse deploy order."""
    plans = []
    for key, before in reversed(list(session.replaced.items())):
        app = session.settings.app(key)
        step = f"rollback.{key}"
        try:
            current = deploy.current_release(session, app)
        except OctoError as exc:
            current = None
            ui.warn(f"releases of {app.name} unreadable", exc.message)
        if before is None:
            pipeline.skip(
                step, f"{app.name} had no release before; nothing to go back to"
            )
        elif current is None:
            pipeline.skip(step, f"current release of {app.name} unknown")
        elif current.version == before.version:
            pipeline.skip(step, f"{app.name} still on v{before.version}, untouched")
        elif current.image == before.image:
            pipeline.skip(
                step, f"{app.name} already runs the image of v{before.version}"
            )
        else:
            plans.append(
                targets.Plan(
                    key, current, before, "the image it ran before this release"
                )
            )
    return plans


def interrupted_release(session: Session) -> None:
    """After Ctrl-C in a release: which apps it had deployed, and what next."""
    if not session.replaced:
        return
    ui.fail("interrupted; the release had deployed:")
    for key, before in session.replaced.items():
        app = session.settings.app(key)
        was = f"v{before.version} ({before.image})" if before else "nothing"
        ui.detail(f"{app.name}: deploy started or done; it ran {was} before")
    ui.detail("to go back: inv rollback --yes (or rollback.api / rollback.worker)")
