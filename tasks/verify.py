"""Sections 6 and 7: verify that the API answers and the worker polls."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from invoke import task

from tasks import checks, cors, deploy, flyctl, journal, secrets, ui
from tasks.db import write_env_value
from tasks.diagnose import Failure, diagnose, http_evidence, machine_evidence, merge
from tasks.errors import FlyctlError, OctoError, UsageError, task_boundary
from tasks.session import Session, open_session
from tasks.settings import AppSettings, Secret

if TYPE_CHECKING:
    import httpx

VERSION_HELP = "Release version every machine must run (default: the app's current)"
USER_AGENT = "octo-release-runbook (verify.api)"
# Seconds spent reading recent log lines as evidence; the buffer read can hang.
EVIDENCE_SECONDS = 5.0
LAST_LINES_SHOWN = 10
# Seconds a poll line may be old and still prove the worker polls now; it
# polls every WORKER_POLL_MS (1 s), and this absorbs clock skew between
# this computer and Fly's log timestamps.
POLL_LINE_MAX_AGE = 60.0


@task(help={"version": VERSION_HELP})
def api(c, version=0):
    """
    Verify the API: machines, checks and GET /health.

    Waits through a cold start (the API scales to zero) up to the health
    deadline, and shows recent log lines that look like errors.
    """
    _verify_task(c, "api", version)


@task(help={"version": VERSION_HELP})
def worker(c, version=0):
    """
    Verify the worker: machines up and polling in its logs.

    Reads the live log stream until a polling line (e.g. jobs.claim_batch)
    appears or the deadline passes, then says what to check.
    """
    _verify_task(c, "worker", version)


@task(
    help={
        "app": "Key of the app under octo.apps in invoke.yaml (e.g. scheduler)",
        "version": VERSION_HELP,
    }
)
def app(c, app, version=0):
    """
    Verify any configured app by its key.

    An app with a health_url is checked over HTTP, one with a poll_pattern by
    its log stream, any other by its machines alone.
    """
    _verify_task(c, app, version)


def _verify_task(c, key: str, version: int) -> None:
    with task_boundary(f"verify.{key}"):
        session = open_session(c)
        verify_app(session, session.settings.app(key), int(version) or None)
        ui.done(f"verify.{key}", session.started)


def verify_app(
    session: Session, app: AppSettings, expected_version: int | None
) -> None:
    """Raise unless APP's machines, and its health or its polling, are good."""
    if session.dry_run:
        ui.step(f"Verifying {app.label}")
        ui.plan(session.fly.display(flyctl.status(app.name)))
        if app.health_url:
            ui.plan(f'GET {app.health_url} until 200 {{"ok": true}}')
        if app.poll_pattern:
            ui.plan(
                session.fly.display(flyctl.logs(app.name))
                + f" until {app.poll_pattern!r}"
            )
        return
    status = wait_for_machines(session, app, expected_version)
    if app.health_url:
        wait_for_health(session, app)
        show_recent_errors(session, app)
    if app.poll_pattern:
        wait_for_polling(session, app, status)


def wait_for_machines(
    session: Session,
    app: AppSettings,
    expected_version: int | None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> checks.AppStatus:
    """Poll `flyctl status` until every machine is settled and good."""
    ui.step(f"Checking the machines of {app.label}")
    auto_stop = session.auto_stops(app)
    deadline = time.monotonic() + session.settings.timeouts.machines
    while True:
        data = session.fly.read_json(flyctl.status(app.name), app=app.name)
        try:
            status = checks.parse_status(data)
        except checks.ParseError as exc:
            raise OctoError(
                f"status of {app.name} has an unknown shape: {exc}"
            ) from None
        wanted = expected_version or status.version
        verdict = checks.judge_machines(status, wanted, auto_stop=auto_stop)
        if verdict.settled or time.monotonic() >= deadline:
            break
        sleep(min(2.0, max(0.0, deadline - time.monotonic())))

    for warning in verdict.warnings:
        ui.warn(warning)
    if verdict.problems:
        for problem in verdict.problems:
            ui.fail(problem)
        raise OctoError(
            f"{len(verdict.problems)} machine problem(s) on {app.name} "
            f"(release v{wanted})",
            next_command=f"flyctl status --app {app.name}; "
            f"flyctl logs --app {app.name} --no-tail",
            diagnoses=merge(
                diagnose(machine_evidence(status.machines), "machine", app=app.name),
                failure_evidence_from_logs(session, app),
            ),
        )
    started = sum(1 for m in status.machines if m.state == "started")
    ui.ok(
        f"{app.name} machines",
        f"{started} of {len(status.machines)} started, all on v{wanted}",
    )
    return status


def wait_for_health(session: Session, app: AppSettings) -> None:
    """GET the health URL until it answers 200 `{"ok": true}` or time runs out.

    The API scales to zero, so the first requests may time out or get a 502
    from Fly's proxy while a machine starts; that is retried, with a growing
    pause capped at 1 s so a machine that comes up is noticed within a second,
    up to one overall deadline.
    """
    import httpx
    from tenacity import Retrying, retry_if_result, stop_after_delay, wait_exponential

    budget = session.settings.timeouts.health
    ui.step(f"Waiting for {app.health_url} to answer 200 (up to {budget:.0f} s)")
    started = time.monotonic()
    deadline = started + budget
    seen: list[str] = []
    last_answer = [""]

    def probe(client: httpx.Client) -> str | None:
        per_try = max(1.0, min(15.0, deadline - time.monotonic()))
        try:
            response = client.get(
                app.health_url,
                timeout=httpx.Timeout(per_try, connect=min(per_try, 10.0)),
            )
            problem = checks.judge_health(response.status_code, response.text)
            last_answer[0] = http_evidence(
                response.status_code, response.headers.multi_items(), response.text
            )
        except httpx.TimeoutException:
            problem = f"no answer within {per_try:.0f} s"
            last_answer[0] = ""
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
            last_answer[0] = ""
        if problem and (not seen or seen[-1] != problem):
            ui.detail(
                f"not yet healthy after {time.monotonic() - started:.1f} s: {problem}"
            )
            seen.append(problem)
        return problem

    retrying = Retrying(
        stop=stop_after_delay(budget),
        wait=wait_exponential(multiplier=0.25, min=0.25, max=1.0),
        retry=retry_if_result(lambda problem: problem is not None),
        retry_error_callback=lambda state: state.outcome.result(),
    )
    with httpx.Client(
        follow_redirects=False, headers={"User-Agent": USER_AGENT}
    ) as client:
        problem = retrying(probe, client)
    if problem:
        raise OctoError(
            f"{app.health_url} not healthy within {budget:.0f} s; last answer: {problem}",
            next_command=f"flyctl logs --app {app.name} --no-tail; "
            f"flyctl status --app {app.name}",
            diagnoses=merge(
                diagnose(last_answer[0], "http", app=app.name),
                failure_evidence_from_logs(session, app),
            ),
        )
    ui.ok(
        f"{app.health_url}",
        f'200 {{"ok": true}} after {time.monotonic() - started:.1f} s',
    )


def recent_log_lines(session: Session, app: AppSettings) -> list[checks.LogLine]:
    """APP's buffered log lines, read for a few seconds at most."""
    deadline = time.monotonic() + EVIDENCE_SECONDS
    args = flyctl.logs(app.name, no_tail=True)
    return [
        checks.parse_log_entry(e)
        for e in session.fly.stream(args, app=app.name, deadline=deadline)
    ]


def log_diagnoses(lines: list[checks.LogLine], app: str) -> tuple[Failure, ...]:
    return diagnose("\n".join(line.render() for line in lines), "log", app=app)


def failure_evidence_from_logs(
    session: Session, app: AppSettings
) -> tuple[Failure, ...]:
    """Diagnoses from APP's recent logs after a failure; shows the error lines.

    The cause of a crash loop or a refused connection is in the app's own
    start-up lines, not in what flyctl or the health URL answered.
    """
    try:
        lines = recent_log_lines(session, app)
    except FlyctlError as exc:
        ui.detail(f"recent logs unreadable: {exc.stderr_tail or exc.message}")
        return ()
    found = log_diagnoses(lines, app.name)
    telling = [
        line
        for line in lines
        if checks.looks_like_error(line) or (found and log_diagnoses([line], ""))
    ]
    if telling:
        ui.detail(f"last telling log lines of {app.name}:")
        for line in telling[-LAST_LINES_SHOWN:]:
            ui.detail(f"  {line.render()}")
    return found


def show_recent_errors(session: Session, app: AppSettings) -> None:
    """Recent log lines that look like errors, as evidence (never a verdict)."""
    try:
        lines = recent_log_lines(session, app)
    except FlyctlError as exc:
        ui.warn(f"recent logs of {app.name} unreadable", exc.stderr_tail or exc.message)
        return
    errors = [line for line in lines if checks.looks_like_error(line)]
    if not errors:
        ui.ok(f"{app.name} recent logs", f"{len(lines)} line(s), none look like errors")
        return
    ui.warn(f"{app.name} recent logs", f"{len(errors)} line(s) look like errors")
    for line in errors[-LAST_LINES_SHOWN:]:
        ui.detail(line.render())
    ui.diagnosis(log_diagnoses(errors, app.name))


def wait_for_polling(
    session: Session, app: AppSettings, status: checks.AppStatus
) -> None:
    """Read the worker's log stream until a polling line shows up.

    The worker polls every second, so a healthy one shows a line within
    seconds; the stream is read as it arrives, never with fixed sleeps.
    """
    budget = session.settings.timeouts.worker_logs
    pattern = app.poll_pattern
    ui.step(
        f"Waiting for {pattern!r} in the logs of {app.label} (up to {budget:.0f} s)"
    )
    started = time.monotonic()
    current = {m.id for m in status.machines if m.version == str(status.version)}
    # A poll line proves the worker polls now only when its process logged
    # it: not before the machine last started (an earlier release's lines
    # stay in the buffer flyctl replays first), nor long ago.
    recent = time.time() - POLL_LINE_MAX_AGE
    not_before = {m.id: max(m.started_at or 0.0, recent) for m in status.machines}
    stale = 0
    last_seen: deque[checks.LogLine] = deque(maxlen=LAST_LINES_SHOWN)
    args = flyctl.logs(app.name)
    for entry in session.fly.stream(args, app=app.name, deadline=started + budget):
        line = checks.parse_log_entry(entry)
        last_seen.append(line)
        # Lines of machines still on an older release prove nothing new.
        if current and line.instance and line.instance not in current:
            continue
        if not checks.is_poll_line(line, pattern):
            continue
        if not checks.is_fresh(line, not_before.get(line.instance, recent)):
            stale += 1
            continue
        ui.ok(
            f"{app.name} polls",
            f"after {time.monotonic() - started:.1f} s on machine {line.instance}",
        )
        ui.detail(line.render())
        return

    ui.fail(f"no {pattern!r} line from {app.name} within {budget:.0f} s")
    if stale:
        ui.detail(
            f"{stale} older {pattern!r} line(s) came from the log buffer: logged "
            f"before the machine last started or over {POLL_LINE_MAX_AGE:.0f} s "
            "ago, so they prove nothing about the worker now (if this computer's "
            "clock is off by minutes, fix that first)"
        )
    if last_seen:
        ui.detail(f"last {len(last_seen)} line(s) seen:")
        for line in last_seen:
            ui.detail(line.render())
    else:
        ui.detail("no log lines at all arrived")
    for hint in _silent_worker_hints(status, bool(last_seen)):
        ui.detail(f"check: {hint}")
    raise OctoError(
        f"{app.name} shows no polling line ({pattern!r}) within {budget:.0f} s",
        next_command=f"flyctl logs --app {app.name}; flyctl status --app {app.name}",
        diagnoses=merge(
            log_diagnoses(list(last_seen), app.name),
            diagnose(machine_evidence(status.machines), "machine", app=app.name),
        ),
    )


def _silent_worker_hints(status: checks.AppStatus, any_lines: bool) -> list[str]:
    hints = []
    stopped = [m.id for m in status.machines if m.state != "started"]
    if stopped:
        hints.append(
            f"machines not started: {', '.join(stopped)} (flyctl machine start)"
        )
    if any(m.exits for m in status.machines):
        hints.append("machines exited recently: a crash loop (bad SUPABASE_DB_URL?)")
    if not any_lines:
        hints.append(
            "output buffering: the worker needs PYTHONUNBUFFERED=1 (fly.worker.toml [env])"
        )
    hints.append(
        "log level: the worker logs its polls only at INFO once logging is "
        "configured; a smoke-test job (inv smoke) is the stronger evidence"
    )
    return hints


# --- CORS (section 10) ------------------------------------------------------------

CORS_USER_AGENT = "octo-release-runbook (verify.cors)"
CORS_CONNECT_SECONDS = 5.0


@task(
    name="cors",
    help={
        "fix": "Add the origins the API refuses to OCTO_CORS_ORIGINS (.env, then "
        "staged on the API) and redeploy the API, asking first",
        "yes": "With --fix: change production without asking first (for CI)",
        "dry_run": "With --fix: show the new value and the commands; change nothing",
    },
)
def cors_(c, fix=False, yes=False, dry_run=False):
    """
    Check CORS from each frontend origin as a browser does.

    Sends the browser's preflight for each method the frontend uses and a
    real GET from every origin in octo.cors.origins, and judges the answer
    headers as a browser would. With --fix, adds the refused origins to the
    API's OCTO_CORS_ORIGINS, redeploys the API and checks again.
    """
    with task_boundary("verify.cors"):
        session = open_session(c, dry_run=dry_run)
        settings = cors_settings(session)
        if fix and not yes and not dry_run:
            ui.require_terminal("verify.cors --fix asks before changing production")
        verdicts = check_origins(session, settings)
        if fix and any(not v.ok for v in verdicts):
            fixable = [v.origin for v in verdicts if v.fixable]
            if not fixable:
                ui.skip(
                    "nothing for --fix to change",
                    f"no problem above is fixed by {cors.ORIGINS_NAME}",
                )
            elif fix_origins(session, fixable, yes=yes, app_key=settings.app):
                verdicts = check_origins(session, settings)
        raise_for_verdicts(session, settings, verdicts, fixed=fix)
        ui.done("verify.cors", session.started)


def cors_settings(session: Session) -> cors.CorsSettings:
    """`octo.cors`, checked; a `UsageError` names every problem at once."""
    loaded, problems, warnings = cors.load_settings(session.settings.extra.get("cors"))
    for warning in warnings:
        ui.warn(warning)
    if loaded is not None:
        try:
            session.settings.app(loaded.app)
        except UsageError as exc:
            problems.append(f"octo.cors.app: {exc.message}")
    if problems or loaded is None:
        raise UsageError(
            f"{len(problems)} CORS setting(s) missing or wrong:\n  - "
            + "\n  - ".join(problems),
            next_command="set them under octo.cors (~/.invoke.yaml, `inv -f FILE`) "
            "or as INVOKE_OCTO_CORS_... variables",
        )
    return loaded


def check_origins(session: Session, settings: cors.CorsSettings) -> list[cors.Verdict]:
    """Preflights and a real request from every origin; each verdict shown.

    An API that cannot be reached at all is one failure naming the URL.
    """
    import httpx

    app = session.settings.app(settings.app)
    ui.step(f"Checking CORS on {settings.url} from {len(settings.origins)} origin(s)")
    timeout = httpx.Timeout(
        settings.timeout, connect=min(settings.timeout, CORS_CONNECT_SECONDS)
    )
    verdicts = []
    with httpx.Client(
        follow_redirects=False, timeout=timeout, headers={"User-Agent": CORS_USER_AGENT}
    ) as client:
        for origin in settings.origins:
            preflights = {
                method: _exchange(
                    client,
                    settings,
                    app,
                    "OPTIONS",
                    cors.preflight_headers(origin, method, settings.request_headers),
                )
                for method in settings.methods
            }
            actual = _exchange(client, settings, app, "GET", (("Origin", origin),))
            verdict = cors.judge_origin(
                origin,
                preflights=preflights,
                actual=actual,
                headers=settings.request_headers,
                credentials=settings.credentials,
                app=app.name,
            )
            _report_verdict(settings, verdict)
            verdicts.append(verdict)
    return verdicts


def _exchange(
    client: httpx.Client,
    settings: cors.CorsSettings,
    app: AppSettings,
    method: str,
    headers: tuple[tuple[str, str], ...],
) -> cors.Exchange:
    import httpx

    try:
        response = client.request(method, settings.url, headers=dict(headers))
    except httpx.TimeoutException:
        raise OctoError(
            f"{method} {settings.url} got no answer within {settings.timeout:.0f} s",
            next_command=f"inv verify.api; flyctl status --app {app.name}",
        ) from None
    except httpx.HTTPError as exc:
        raise OctoError(
            f"cannot reach {settings.url}: {type(exc).__name__}: {exc}",
            next_command=f"check octo.cors.api_url; inv verify.api; "
            f"flyctl status --app {app.name}",
        ) from None
    answer = cors.Answer(
        status=response.status_code,
        headers=tuple(response.headers.multi_items()),
        body=response.text,
        reason=response.reason_phrase,
    )
    return cors.Exchange(method, settings.path, headers, answer)


def _report_verdict(settings: cors.CorsSettings, verdict: cors.Verdict) -> None:
    if verdict.ok:
        ui.ok(verdict.origin, cors.allowed_line(settings))
    for problem in verdict.problems:
        ui.fail(verdict.origin, problem.line())
        ui.detail(f"fix: {problem.fix}")
    for warning in verdict.warnings:
        ui.warn(verdict.origin, warning.line())
        ui.detail(f"fix: {warning.fix}")


def raise_for_verdicts(
    session: Session,
    settings: cors.CorsSettings,
    verdicts: Sequence[cors.Verdict],
    *,
    fixed: bool,
) -> None:
    failed = [v for v in verdicts if not v.ok]
    if not failed:
        return
    app = session.settings.app(settings.app)
    found: dict[str, Failure] = {}
    for verdict in failed:
        for problem in verdict.problems:
            if problem.evidence is None:
                continue
            text = cors.render_exchange(problem.evidence)
            for failure in diagnose(text, "http", app=app.name):
                found.setdefault(failure.id, failure)
    codes = {p.code for v in failed for p in v.problems}
    if codes & {cors.GATEWAY_ERROR, cors.SERVER_ERROR}:
        next_command = f"inv verify.api; flyctl logs --app {app.name} --no-tail"
    elif any(v.fixable for v in failed) and (not fixed or session.dry_run):
        next_command = "inv verify.cors --fix"
    elif any(v.fixable for v in failed):
        next_command = (
            f"inv deploy.api (applies the staged {cors.ORIGINS_NAME}), "
            "then inv verify.cors"
        )
    else:
        next_command = (
            "change the API's CORS configuration as shown, then inv deploy.api"
        )
    note = " (dry run: nothing was changed)" if session.dry_run and fixed else ""
    raise OctoError(
        f"{len(failed)} of {len(verdicts)} origin(s) would get CORS errors from "
        f"{settings.url}: {', '.join(v.origin for v in failed)}{note}",
        next_command=next_command,
        diagnoses=tuple(found.values()),
    )


def fix_origins(
    session: Session,
    missing_origins: Sequence[str],
    *,
    yes: bool,
    app_key: str = "api",
) -> bool:
    """Add MISSING_ORIGINS to the API's OCTO_CORS_ORIGINS and redeploy it.

    The runbook's fix (section 10), shared by `inv verify.cors --fix` and
    `inv doctor --fix`: the new value (the one in .env, if any, plus the
    missing origins, normalised and comma-separated) is shown and, after a
    question (default No; YES answers it), written to .env and staged on the
    API through flyctl's standard input. A second question redeploys and
    verifies the API, journaled. Returns whether the API was redeployed, so
    that a fresh CORS check is worth running. A dry run shows the value and
    the commands and changes nothing.
    """
    settings = session.settings
    app = settings.app(app_key)
    name = cors.ORIGINS_NAME
    ui.step(f"Fixing CORS: {name} on {app.label}")

    current = settings.value(name)
    on_fly = name in journal.current_digests(session, app)
    if on_fly and current is None:
        ui.warn(
            f"{name} is set on {app.name} but not in {settings.env_file.name}",
            "the new value replaces it: origins set only on Fly are lost "
            f"(copy them into {settings.env_file.name} first to keep them)",
        )
        if yes and not session.dry_run:
            # Fly never shows the value back, so nobody has seen what would be
            # lost: another frontend could break. Only a person may accept it.
            raise OctoError(
                f"refusing to replace {name} on {app.name} unseen under --yes",
                next_command=f"put the API's current {name} in "
                f"{settings.env_file.name}, then run the fix again; or run it "
                "without --yes to accept the loss",
            )
    new_value, notes = cors.merge_origins(
        current.reveal() if current else "", missing_origins
    )
    for note in notes:
        ui.detail(note)
    # Origins are public (every browser sends them), so the value is shown.
    ui.ok(f"new {name}", new_value)
    value = Secret(new_value)

    if session.dry_run:
        ui.plan(f"write {name} to {settings.env_file.name}")
    else:
        question = (
            f"Write {name} to {settings.env_file.name} and stage it on {app.name}?"
        )
        if not ui.confirm(question, yes=yes):
            raise OctoError(f"not confirmed; {name} was not changed")
        try:
            write_env_value(settings.env_file, name, value)
        except ValueError as exc:
            raise OctoError(f"cannot write {settings.env_file.name}: {exc}") from None
        ui.ok(f"{name} written to {settings.env_file.name}")
    changed = secrets.stage_values(session, app, {name: value})
    if not session.dry_run:
        if changed:
            ui.ok(f"{app.label} staged", ", ".join(changed))
        else:
            ui.skip(f"{app.label} already held this {name}")

    if not session.dry_run and not ui.confirm(
        f"Restart {app.name} on its running image now so that it applies {name}?",
        yes=yes,
    ):
        ui.skip(
            f"{app.name} not redeployed",
            f"the staged {name} takes effect at the next deploy (inv deploy.api)",
        )
        return False
    with journal.recording(session, "verify.cors"):
        deploy.apply_staged_secrets(session, app)
        verify_app(session, app, None)
    return not session.dry_run
