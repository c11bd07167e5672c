"""Sections 6 and 7: verify that the API answers and the worker polls."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from invoke import task

from tasks import checks, flyctl, ui
from tasks.diagnose import Failure, diagnose, http_evidence, machine_evidence, merge
from tasks.errors import FlyctlError, OctoError, task_boundary
from tasks.session import Session, open_session
from tasks.settings import AppSettings

VERSION_HELP = "Release version every machine must run (default: the app's current)"
USER_AGENT = "octo-release-runbook (verify.api)"
# Seconds spent reading recent log lines as evidence; the buffer read can hang.
EVIDENCE_SECONDS = 5.0
LAST_LINES_SHOWN = 10


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
    last_seen: deque[checks.LogLine] = deque(maxlen=LAST_LINES_SHOWN)
    args = flyctl.logs(app.name)
    for entry in session.fly.stream(args, app=app.name, deadline=started + budget):
        line = checks.parse_log_entry(entry)
        last_seen.append(line)
        # Lines of machines still on an older release prove nothing new.
        if current and line.instance and line.instance not in current:
            continue
        if checks.is_poll_line(line, pattern):
            ui.ok(
                f"{app.name} polls",
                f"after {time.monotonic() - started:.1f} s on machine {line.instance}",
            )
            ui.detail(line.render())
            return

    ui.fail(f"no {pattern!r} line from {app.name} within {budget:.0f} s")
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
