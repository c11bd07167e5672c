"""Section 8: smoke-test the backend end to end, as a user would."""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from invoke import task

from tasks import checks, flyctl, ui
from tasks import smoke_checks as judge
from tasks.diagnose import Failure, diagnose, http_evidence
from tasks.errors import OctoError, UsageError, task_boundary
from tasks.session import Session, open_session
from tasks.settings import AppSettings, Secret

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

USER_AGENT = "octo-release-runbook (smoke, section 8)"
# Seconds per request: a read covers a cold start of the API (it scales to
# zero); the job wait has its own deadline and shortens this near its end.
READ_SECONDS = 30.0
CONNECT_SECONDS = 10.0
# Seconds the log stream may keep running after the job wait has ended.
STREAM_MARGIN_SECONDS = READ_SECONDS + 5.0
STATE_FILE = "smoke.json"
LAST_LINES_SHOWN = 10


class Steps(Protocol):
    """What runs the smoke steps: the release pipeline, or `SmokeSteps`."""

    def run(
        self,
        step: str,
        action: Callable[[], Any],
        evidence: Callable[[Any], str] = ...,
    ) -> Any: ...

    def skip(self, step: str, reason: str) -> None: ...


@task(
    default=True,
    help={
        "skip_document": "Skip the document and job steps, for a workspace "
        "without a document template (default from octo.smoke.skip_document)",
        "deadline": "Seconds for the document job to end, witnessed by the API "
        "and the worker's logs (default from octo.smoke.deadline)",
    },
)
def run(c, skip_document=False, deadline=0):
    """
    Smoke-test the backend as a user: sign in, write, generate.

    Signs in to Supabase Auth as the smoke user, lists modules, writes the
    labelled smoke record, generates a document for it and follows the job
    until both the API and the worker's log stream say it succeeded.

    Run it after every release (`inv release` runs it last) or whenever a
    user reports that something does not work. It writes to production: one
    reused smoke record and one generated document per run.
    """
    with task_boundary("smoke"):
        session = open_session(c)
        plan = prepare(
            session,
            skip_document=skip_document,
            deadline=float(deadline) or None,
            next_command="see the README, section Smoke test",
        )
        steps = SmokeSteps()
        try:
            run_steps(session, steps, plan)
        except OctoError as exc:
            steps.summary()
            raise OctoError(
                f"step {steps.results[-1][0]} failed; nothing after it ran\n  "
                + exc.render().replace("\n", "\n  ")
            ) from None
        steps.summary()
        ui.ok("smoke test passed", _passed_evidence(steps))
        ui.done("smoke", session.started)


@dataclass
class SmokeSteps:
    """Runs the smoke steps in order for `inv smoke`, timing each."""

    results: list[tuple[str, str, float, str]] = field(default_factory=list)

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
                (step, "failed", time.monotonic() - started, exc.message)
            )
            raise
        self.results.append((step, "ok", time.monotonic() - started, evidence(value)))
        return value

    def skip(self, step: str, reason: str) -> None:
        ui.skip(step, reason)
        self.results.append((step, "skipped", 0.0, reason))

    def summary(self) -> None:
        ui.table(
            "smoke summary",
            ["step", "result", "duration", "evidence"],
            [(s, r, f"{sec:.1f} s", e) for s, r, sec, e in self.results],
        )


def _passed_evidence(steps: SmokeSteps) -> str:
    skipped = [s for s, r, _, _ in steps.results if r == "skipped"]
    ran = len(steps.results) - len(skipped)
    return f"{ran} step(s) ok" + (f", skipped: {', '.join(skipped)}" if skipped else "")


# --- settings ----------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Everything one smoke run needs, checked before anything runs."""

    settings: judge.SmokeSettings
    worker: AppSettings | None
    supabase_url: Secret
    anon_key: Secret
    email: Secret
    password: Secret
    state_file: Path

    @property
    def state_label(self) -> str:
        """The state file as the operator knows it, e.g. `.octo/smoke.json`."""
        return f"{self.state_file.parent.name}/{self.state_file.name}"

    @property
    def secrets(self) -> tuple[Secret, ...]:
        return (self.supabase_url, self.anon_key, self.email, self.password)


def prepare(
    session: Session,
    *,
    skip_document: bool = False,
    deadline: float | None = None,
    next_command: str = "",
) -> Plan:
    """The smoke test's settings; a `UsageError` names every missing one."""
    found = session.settings
    present = [name for name in judge.CREDENTIALS if found.value(name)]
    settings, problems = judge.load_settings(
        found.extra.get("smoke"),
        present=present,
        skip_document=skip_document,
        deadline=deadline,
    )
    worker = None
    if settings is not None and not settings.skip_document:
        try:
            worker = found.app(settings.worker_app)
        except UsageError as exc:
            problems.append(f"octo.smoke.worker_app: {exc.message}")
        if worker is not None and not worker.poll_pattern:
            problems.append(
                f"octo.apps.{worker.key}.poll_pattern is empty: the smoke test "
                "needs it to recognise the worker's claim lines"
            )
    if problems or settings is None:
        raise UsageError(
            f"the smoke test cannot start, {len(problems)} setting(s) missing "
            "or wrong:\n  - " + "\n  - ".join(problems),
            next_command=next_command,
        )
    if worker is not None and not session.dry_run:
        session.fly.require()
    return Plan(
        settings=settings,
        worker=worker,
        supabase_url=found.value("SUPABASE_URL"),
        anon_key=found.value("SUPABASE_ANON_KEY"),
        email=found.value("SMOKE_EMAIL"),
        password=found.value("SMOKE_PASSWORD"),
        state_file=found.state_dir / STATE_FILE,
    )


# --- the steps ---------------------------------------------------------------


def run_in_release(
    session: Session, steps: Steps, plan: Plan | None, *, why_not: str = ""
) -> None:
    """The smoke steps as the last steps of a release; WHY_NOT, without a plan."""
    if plan is None:
        steps.skip("smoke", why_not or "--skip-smoke given")
    elif session.dry_run:
        show_plan(plan)
        steps.skip("smoke", "dry run: the smoke test writes to production")
    else:
        run_steps(session, steps, plan)


def show_plan(plan: Plan) -> None:
    s = plan.settings
    ui.step("Planning the smoke test")
    ui.plan("POST {SUPABASE_URL}/auth/v1/token?grant_type=password (smoke user)")
    ui.plan(f"GET {s.api_url}/modules")
    ui.plan(f"POST {s.api_url}/records/{s.entity_id} (unless a smoke record is reused)")
    ui.plan(f"PUT {s.api_url}/records/{s.entity_id}/<record id>")
    if plan.worker is not None:
        ui.plan(f"POST {s.api_url}/documents/generate (template {s.template_id})")
        ui.plan(
            f"GET {s.api_url}/ops/jobs/<job id> and `flyctl logs --app "
            f"{plan.worker.name} --json` until the job ends (up to {s.deadline:.0f} s)"
        )


def run_steps(session: Session, steps: Steps, plan: Plan) -> None:
    """Every smoke step in order; STEPS stops at the first failure."""
    import httpx

    settings = plan.settings
    with httpx.Client(
        timeout=httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    ) as client:
        http_app = next((a.name for a in session.settings.apps if a.health_url), "")
        api = Api(client, settings.api_url, plan.secrets, app=http_app)
        login = steps.run(
            "smoke.login",
            lambda: sign_in(client, plan),
            evidence=lambda login: f"user {login.user_id or '?'}",
        )
        api.token = login.token

        steps.run(
            "smoke.modules",
            lambda: list_modules(api),
            evidence=lambda count: f"{count} module(s)",
        )

        record_id, source = reused_record(plan)
        if record_id:
            steps.skip("smoke.create", f"reusing smoke record {record_id} ({source})")
        else:
            record_id = steps.run(
                "smoke.create",
                lambda: create_record(api, plan),
                evidence=lambda new: f"record {new} in entity {settings.entity_id}",
            )
        record_id = steps.run(
            "smoke.update",
            lambda: update_record(api, plan, record_id, source),
            evidence=lambda updated: f"record {updated}",
        )

        if settings.skip_document or plan.worker is None:
            reason = "skipped as configured (no document template in this workspace)"
            steps.skip("smoke.document", reason)
            steps.skip("smoke.job", reason)
            return
        budget = settings.deadline + STREAM_MARGIN_SECONDS
        # The stream starts before the job exists so that no line is missed.
        with LogWatcher(session, plan.worker, budget) as watcher:
            job = steps.run(
                "smoke.document",
                lambda: generate(api, plan, record_id),
                evidence=lambda job: (
                    f"job {job.id} from template {settings.template_id}"
                ),
            )
            steps.run(
                "smoke.job",
                lambda: follow_job(api, watcher, plan, job),
                evidence=lambda agreed: agreed,
            )


class Api:
    """The OCTO API with the smoke user's token in every request's header."""

    def __init__(
        self,
        client: httpx.Client,
        base_url: str,
        secrets: tuple[Secret, ...],
        *,
        app: str = "",
    ) -> None:
        self.client = client
        self.base_url = base_url
        self.secrets = secrets
        self.app = app
        self.token: Secret | None = None
        # Catalogue entries the last failed answer matched (a proxy 502 ...).
        self.diagnoses: tuple[Failure, ...] = ()

    def call(
        self, method: str, path: str, body: Any = None, *, timeout: float = 0
    ) -> judge.Answer:
        """One request; a network failure is an answer with status 0."""
        import httpx

        headers = (
            {"Authorization": f"Bearer {self.token.reveal()}"} if self.token else {}
        )
        extra = {}
        if timeout:
            extra["timeout"] = httpx.Timeout(
                timeout, connect=min(timeout, CONNECT_SECONDS)
            )
        self.diagnoses = ()
        try:
            response = self.client.request(
                method, self.base_url + path, json=body, headers=headers, **extra
            )
            answer = judge.read_answer(response.status_code, response.text)
            if answer.problem:
                evidence = http_evidence(
                    response.status_code,
                    response.headers.multi_items(),
                    response.text,
                    request=(method, path, ()),
                )
                self.diagnoses = diagnose(evidence, "http", app=self.app)
        except httpx.TimeoutException:
            answer = judge.Answer(0, {}, "no answer in time")
        except httpx.HTTPError as exc:
            answer = judge.Answer(0, {}, f"{type(exc).__name__}: {exc}")
        if answer.problem:
            secrets = (*self.secrets, self.token)
            answer = dataclasses.replace(
                answer, problem=judge.redact(answer.problem, secrets)
            )
        return answer


def _finish(
    subject: str,
    started: float,
    problem: str | None,
    evidence: str = "",
    *,
    next_command: str = "",
    diagnoses: tuple[Failure, ...] = (),
) -> None:
    """The outcome line of a step, with its duration; raise on a problem."""
    took = f"{time.monotonic() - started:.1f} s"
    if problem:
        ui.fail(subject, f"{problem} ({took})")
        raise OctoError(
            f"{subject}: {problem}", next_command=next_command, diagnoses=diagnoses
        )
    ui.ok(subject, f"{evidence} ({took})" if evidence else took)


def sign_in(client: httpx.Client, plan: Plan) -> judge.Login:
    """Sign in once per run (Auth rate-limits sign-ins per IP address)."""
    import httpx

    ui.step("Signing in to Supabase Auth as the smoke user (SMOKE_EMAIL)")
    started = time.monotonic()
    url = plan.supabase_url.reveal().rstrip("/") + "/auth/v1/token"
    try:
        response = client.post(
            url,
            params={"grant_type": "password"},
            headers={"apikey": plan.anon_key.reveal()},
            json={"email": plan.email.reveal(), "password": plan.password.reveal()},
        )
        login = judge.judge_login(
            response.status_code,
            response.text,
            response.headers.get("x-sb-error-code", ""),
        )
    except httpx.TimeoutException:
        login = judge.Login(token=None, problem="no answer in time")
    except httpx.HTTPError as exc:
        login = judge.Login(token=None, problem=f"{type(exc).__name__}: {exc}")
    problem = login.problem and judge.redact(login.problem, plan.secrets)
    _finish(
        "Supabase Auth sign-in",
        started,
        problem and f"refused: {problem}",
        f"user {login.user_id or '?'}, token valid {login.expires_in} s",
        next_command=login.fix,
    )
    return login


def list_modules(api: Api) -> int:
    ui.step(f"Listing modules (GET {api.base_url}/modules)")
    started = time.monotonic()
    count, problem = judge.count_modules(api.call("GET", "/modules"))
    _finish(
        "GET /modules",
        started,
        problem,
        f"{count} module(s)",
        diagnoses=api.diagnoses,
    )
    if count == 0:
        ui.warn("the smoke user sees no modules", "check its workspace membership")
    return count


def create_record(api: Api, plan: Plan) -> str:
    entity = plan.settings.entity_id
    ui.step(f"Creating the smoke record in entity {entity}")
    started = time.monotonic()
    path = f"/records/{entity}"
    record_id, problem = judge.record_id_of(
        api.call("POST", path, dict(plan.settings.record))
    )
    _finish(
        f"POST {path}",
        started,
        problem,
        f"record {record_id}",
        diagnoses=api.diagnoses,
    )
    _remember(plan, record_id)
    return record_id


def update_record(api: Api, plan: Plan, record_id: str, source: str) -> str:
    """Update the smoke record; a remembered one that is gone is replaced."""
    entity = plan.settings.entity_id
    ui.step(f"Updating smoke record {record_id} in entity {entity}")
    started = time.monotonic()
    answer = api.call(
        "PUT", f"/records/{entity}/{record_id}", dict(plan.settings.record)
    )
    if answer.status == 404 and source == plan.state_label:
        ui.warn(
            f"remembered smoke record {record_id} is gone (404)", "creating a new one"
        )
        _forget(plan)
        record_id = create_record(api, plan)
        started = time.monotonic()
        answer = api.call(
            "PUT", f"/records/{entity}/{record_id}", dict(plan.settings.record)
        )
    _finish(
        f"PUT /records/{entity}/{record_id}",
        started,
        answer.problem,
        f"record {record_id} updated",
        diagnoses=api.diagnoses,
    )
    return record_id


def generate(api: Api, plan: Plan, record_id: str) -> judge.Job:
    s = plan.settings
    ui.step(f"Generating a document from template {s.template_id}")
    started = time.monotonic()
    body = {
        "template_id": s.template_id,
        "entity_id": s.entity_id,
        "record_id": record_id,
    }
    job, problem = judge.job_of(api.call("POST", "/documents/generate", body))
    _finish(
        "POST /documents/generate",
        started,
        problem,
        f"job {job.id} {job.status}" if job else "",
        diagnoses=api.diagnoses,
    )
    return job


# --- following the job --------------------------------------------------------


class LogWatcher:
    """Reads an app's live log stream in a thread while the API is polled."""

    def __init__(self, session: Session, app: AppSettings, budget: float) -> None:
        self.session = session
        self.app = app
        self.deadline = time.monotonic() + budget
        self.recent: deque[checks.LogLine] = deque(maxlen=LAST_LINES_SHOWN)
        self.problem: str | None = None
        self._lines: queue.Queue[checks.LogLine] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> LogWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Joining lets the stream kill its flyctl process, which would
        # otherwise outlive this task.
        self._stop.set()
        self._thread.join(timeout=5)

    def _read(self) -> None:
        args = flyctl.logs(self.app.name)
        try:
            for entry in self.session.fly.stream(
                args, app=self.app.name, deadline=self.deadline, stop=self._stop
            ):
                self._lines.put(checks.parse_log_entry(entry))
        except OctoError as exc:
            tail = getattr(exc, "stderr_tail", "") or exc.message
            self.problem = f"the logs of {self.app.name} are unreadable ({tail})"

    def take(self, timeout: float) -> list[checks.LogLine]:
        """The lines that arrived, waiting up to TIMEOUT for the first one."""
        lines = []
        try:
            lines.append(
                self._lines.get(timeout=timeout)
                if timeout > 0
                else self._lines.get_nowait()
            )
            while True:
                lines.append(self._lines.get_nowait())
        except queue.Empty:
            pass
        self.recent.extend(lines)
        return lines


def wait_for_job(
    poll: Callable[[float], judge.Answer],
    take_lines: Callable[[float], list[checks.LogLine]],
    trail: judge.WorkerTrail,
    *,
    budget: float,
    interval: float,
    clock: Callable[[], float] = time.monotonic,
    logs_problem: Callable[[], str | None] = lambda: None,
    on_job: Callable[[judge.Job], None] = lambda job: None,
    on_line: Callable[[str, checks.LogLine], None] = lambda event, line: None,
) -> tuple[judge.JobVerdict, judge.Job | None, float]:
    """Poll the job's status and read the worker's lines until a verdict.

    POLL gets the job's status (given the seconds left); TAKE_LINES waits up
    to the given seconds for log lines, which is also this loop's only
    pause, so a line is seen the moment it arrives.
    """
    started = clock()
    deadline = started + budget
    job: judge.Job | None = None
    api_problem: str | None = None
    next_poll = started

    def absorb(timeout: float) -> None:
        for line in take_lines(timeout):
            event = trail.observe(line)
            if event:
                on_line(event, line)

    while True:
        now = clock()
        if now >= next_poll:
            answer = poll(max(1.0, deadline - now))
            polled, problem = judge.job_of(answer)
            if polled is not None:
                if polled != job:
                    on_job(polled)
                job, api_problem = polled, None
            elif judge.is_transient(answer.status):
                api_problem = problem
            else:
                verdict = judge.JobVerdict(
                    True, f"GET /ops/jobs/{trail.job_id}: {problem}"
                )
                return verdict, job, clock() - started
            next_poll = now + interval
            # Lines that arrived with this answer count before judging it.
            absorb(0.0)

        now = clock()
        verdict = judge.judge_job(
            job,
            trail,
            timed_out=now >= deadline,
            waited=now - started,
            api_problem=api_problem,
            logs_problem=logs_problem(),
        )
        if verdict.finished:
            return verdict, job, now - started

        absorb(max(0.0, min(next_poll, deadline) - now))


def follow_job(api: Api, watcher: LogWatcher, plan: Plan, job: judge.Job) -> str:
    """Follow JOB to its end through the API and the worker's log stream.

    Returns the evidence of its success; raises with the API's last status
    and the worker's lines for the job otherwise.
    """
    worker = plan.worker
    budget = plan.settings.deadline
    ui.step(
        f"Following job {job.id} through the API and the logs of {worker.label} "
        f"(up to {budget:.0f} s)"
    )
    trail = judge.WorkerTrail(job.id, worker.poll_pattern)
    verdict, last, waited = wait_for_job(
        lambda timeout: api.call("GET", f"/ops/jobs/{job.id}", timeout=timeout),
        watcher.take,
        trail,
        budget=budget,
        interval=plan.settings.poll_seconds,
        logs_problem=lambda: watcher.problem,
        on_job=lambda j: ui.detail(f"API: job {j.id} {j.describe()}"),
        on_line=lambda event, line: ui.detail(f"worker: {line.render()}"),
    )

    for warning in verdict.warnings:
        ui.warn(f"job {job.id}", warning)
    if verdict.problem is None:
        seen = ", ".join(
            name
            for name, line in (
                ("claim", trail.claim),
                ("doc_generate_start", trail.start),
                ("doc_generate_succeeded", trail.succeeded),
            )
            if line is not None
        )
        ui.ok(
            f"job {job.id} succeeded",
            f"API status succeeded; worker logged {seen} ({waited:.1f} s)",
        )
        return f"succeeded; worker logged {seen}"
    ui.fail("document job", f"{verdict.problem} ({waited:.1f} s)")
    if trail.lines:
        ui.detail(f"worker lines for job {job.id}:")
        for line in trail.lines:
            ui.detail(f"  {line.render()}")
    elif watcher.recent:
        ui.detail(
            f"no worker line names job {job.id}; last {len(watcher.recent)} seen:"
        )
        for line in watcher.recent:
            ui.detail(f"  {line.render()}")
    else:
        ui.detail(f"no log lines at all arrived from {worker.name}")
    for hint in verdict.hints:
        ui.detail(f"check: {hint}")
    evidence = "\n".join(line.render() for line in [*trail.lines, *watcher.recent])
    raise OctoError(
        verdict.problem,
        next_command=f"flyctl logs --app {worker.name}; inv verify.worker",
        diagnoses=diagnose(evidence, "log", app=worker.name),
    )


# --- the reused smoke record --------------------------------------------------


def _record_key(plan: Plan) -> str:
    return f"{plan.settings.api_url} {plan.settings.entity_id}"


def _read_state(plan: Plan) -> dict[str, Any]:
    try:
        data = json.loads(plan.state_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError):
        log.debug("ignoring unreadable %s", plan.state_file, exc_info=True)
        return {}
    return data if isinstance(data, dict) else {}


def _write_records(plan: Plan, change: Callable[[dict[str, str]], None]) -> None:
    data = _read_state(plan)
    records = data.setdefault("records", {})
    change(records)
    plan.state_file.parent.mkdir(parents=True, exist_ok=True)
    plan.state_file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def reused_record(plan: Plan) -> tuple[str, str]:
    """The smoke record to reuse, and where its id came from.

    The API offers no way to delete a record, so one labelled record is
    written over on every run instead of leaving one behind each time.
    """
    if plan.settings.record_id:
        return plan.settings.record_id, "octo.smoke.record_id"
    records = _read_state(plan).get("records") or {}
    remembered = records.get(_record_key(plan)) if isinstance(records, dict) else None
    if isinstance(remembered, str) and remembered:
        return remembered, plan.state_label
    return "", ""


def _remember(plan: Plan, record_id: str) -> None:
    if not plan.settings.record_id:
        _write_records(plan, lambda r: r.__setitem__(_record_key(plan), record_id))


def _forget(plan: Plan) -> None:
    _write_records(plan, lambda r: r.pop(_record_key(plan), None))
