"""Judge what Supabase Auth, the API and the worker's logs answer a smoke test.

Pure: no I/O, no invoke, no HTTP client. Response shapes come from
`../shared/reference/octo-backend.md` (the API) and
`../shared/reference/supabase-openai.md` section 8.2 (password sign-in).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tasks.checks import LogLine
from tasks.settings import Secret

# Values the smoke test needs from .env (or the environment), by name.
CREDENTIALS = ("SUPABASE_URL", "SUPABASE_ANON_KEY", "SMOKE_EMAIL", "SMOKE_PASSWORD")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "dead")
FAILED_STATUSES = ("failed", "dead")
SNIPPET = 160

# What to do about a rejected sign-in, by Supabase's error code.
LOGIN_FIXES = {
    "invalid_credentials": "check SMOKE_EMAIL and SMOKE_PASSWORD in .env against "
    "the smoke user in Supabase Auth",
    "email_not_confirmed": "confirm the smoke user's email in the Supabase "
    "dashboard (Authentication > Users)",
    "user_banned": "lift the ban on the smoke user in the Supabase dashboard",
    "email_provider_disabled": "enable the Email provider in Supabase Auth",
    "over_request_rate_limit": "wait a few minutes: Supabase Auth allows about "
    "30 sign-ins per IP address",
    # A key name beside a message, not a key: the scanner's keyword rule
    # would flag it wherever these tasks are copied.
    "invalid_api_key": "check SUPABASE_ANON_KEY in .env: it must be the anon "  # pragma: allowlist secret
    "(or publishable) key of the project SUPABASE_URL names",
}


# --- settings --------------------------------------------------------------


@dataclass(frozen=True)
class SmokeSettings:
    """`octo.smoke` from invoke.yaml, checked."""

    api_url: str
    worker_app: str
    entity_id: str
    template_id: str
    record_id: str
    record: Mapping[str, Any]
    deadline: float
    poll_seconds: float
    skip_document: bool


def load_settings(
    raw: Any,
    *,
    present: Sequence[str],
    skip_document: bool = False,
    deadline: float | None = None,
) -> tuple[SmokeSettings | None, list[str]]:
    """Settings from `octo.smoke`, or every problem with them at once.

    PRESENT names the credentials that have a value; values never enter
    here. SKIP_DOCUMENT and DEADLINE are command-line overrides.
    """
    if not isinstance(raw, Mapping):
        return None, ["octo.smoke is missing from invoke.yaml"]
    problems = [
        f"{name} is not set (add it to .env)"
        for name in CREDENTIALS
        if name not in present
    ]
    api_url = str(raw.get("api_url") or "").rstrip("/")
    if not api_url.startswith(("https://", "http://")):
        problems.append("octo.smoke.api_url must be a URL starting with https://")
    skip = bool(skip_document or raw.get("skip_document"))
    entity_id = str(raw.get("entity_id") or "")
    template_id = str(raw.get("template_id") or "")
    if not entity_id:
        problems.append(
            "octo.smoke.entity_id is empty: set the entity of the smoke record"
        )
    if not template_id and not skip:
        problems.append(
            "octo.smoke.template_id is empty: set a document template, or set "
            "octo.smoke.skip_document for a workspace without one"
        )
    record = raw.get("record") or {}
    if not isinstance(record, Mapping) or not record:
        problems.append(
            "octo.smoke.record must map the smoke record's fields to values"
        )
        record = {}
    seconds = {}
    for name, override in (("deadline", deadline), ("poll_seconds", None)):
        try:
            seconds[name] = float(override or raw.get(name) or 0)
        except (TypeError, ValueError):
            problems.append(f"octo.smoke.{name} must be a number of seconds")
            continue
        if seconds[name] <= 0:
            problems.append(f"octo.smoke.{name} must be more than 0 seconds")
    if problems:
        return None, problems
    return (
        SmokeSettings(
            api_url=api_url,
            worker_app=str(raw.get("worker_app") or "worker"),
            entity_id=entity_id,
            template_id=template_id,
            record_id=str(raw.get("record_id") or ""),
            record=dict(record),
            deadline=seconds["deadline"],
            poll_seconds=seconds["poll_seconds"],
            skip_document=skip,
        ),
        [],
    )


# --- answers -----------------------------------------------------------------


def _snippet(text: str) -> str:
    return " ".join(text.split())[:SNIPPET]


def _json_object(body: str) -> Mapping[str, Any] | None:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, TypeError):
        return None
    return data if isinstance(data, Mapping) else None


@dataclass(frozen=True)
class Answer:
    """One API response: its JSON object, or why it is not a success.

    `problem` carries the API's own error codes and messages, e.g.
    `HTTP 422 RECORD_INVALID: name is required (at name)`.
    """

    status: int
    data: Mapping[str, Any]
    problem: str | None = None
    codes: tuple[str, ...] = ()


def read_answer(status: int, body: str) -> Answer:
    """Judge an API response by its envelope: 200 with `"ok": true`.

    Failures carry `"ok": false` and `"errors": [{code, message, path,
    detail}]`; a proxy in front of the API may answer HTML or nothing.
    """
    data = _json_object(body)
    if data is None:
        snippet = _snippet(body)
        reason = f"HTTP {status}" + (f": {snippet}" if snippet else "")
        if status == 200:
            reason = f"HTTP 200 but the body is not a JSON object: {snippet!r}"
        return Answer(status, {}, reason)
    errors = [e for e in data.get("errors") or [] if isinstance(e, Mapping)]
    codes = tuple(str(e.get("code") or "") for e in errors if e.get("code"))
    if status == 200 and data.get("ok") is True:
        return Answer(status, data, None, codes)
    described = [_describe_error(e) for e in errors]
    if not described:
        described = [_snippet(json.dumps(data))]
    return Answer(status, data, f"HTTP {status} " + "; ".join(described), codes)


def _describe_error(error: Mapping[str, Any]) -> str:
    code = str(error.get("code") or "?")
    message = str(error.get("message") or "").strip()
    text = f"{code}: {message}" if message else code
    if error.get("path"):
        text += f" (at {error['path']})"
    return text


def count_modules(answer: Answer) -> tuple[int, str | None]:
    """`GET /modules`: the number of modules, or why the answer is wrong."""
    if answer.problem:
        return 0, answer.problem
    modules = answer.data.get("modules")
    if not isinstance(modules, list):
        return 0, "HTTP 200 but the body has no `modules` list"
    return len(modules), None


def record_id_of(answer: Answer) -> tuple[str, str | None]:
    """`POST /records/{entity_id}`: the new record's id.

    The API answers with the record; its id is looked for as `record.id`,
    then `record_id` and `id` at the top level.
    """
    if answer.problem:
        return "", answer.problem
    record = answer.data.get("record")
    candidates = [
        record.get("id") if isinstance(record, Mapping) else None,
        answer.data.get("record_id"),
        answer.data.get("id"),
    ]
    for candidate in candidates:
        if isinstance(candidate, str | int) and str(candidate):
            return str(candidate), None
    return "", "HTTP 200 but the answer names no record id (record.id)"


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    last_error: str = ""
    attempts: int | None = None

    def describe(self) -> str:
        text = self.status
        if self.attempts:
            text += f" ({self.attempts} attempt(s))"
        if self.last_error:
            text += f", last error: {_snippet(self.last_error)}"
        return text


def job_of(answer: Answer) -> tuple[Job | None, str | None]:
    """The `job` of a generate or job-status answer, or why there is none."""
    if answer.problem:
        return None, answer.problem
    job = answer.data.get("job")
    if not isinstance(job, Mapping) or not job.get("id"):
        return None, "HTTP 200 but the answer has no `job` with an id"
    status = str(job.get("status") or "")
    if status not in JOB_STATUSES:
        return None, f"job {job['id']} has an unknown status {status!r}"
    attempts = job.get("attempts")
    return (
        Job(
            id=str(job["id"]),
            status=status,
            last_error=str(job.get("last_error") or ""),
            attempts=attempts if isinstance(attempts, int) else None,
        ),
        None,
    )


def is_transient(status: int) -> bool:
    """A job-status poll worth repeating: the API or its proxy hiccuped."""
    return status == 0 or status == 429 or status >= 500


# --- sign-in -----------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    token: Secret | None
    user_id: str = ""
    expires_in: int = 0
    problem: str | None = None
    code: str = ""

    @property
    def fix(self) -> str:
        return LOGIN_FIXES.get(self.code, "")


def judge_login(status: int, body: str, error_header: str = "") -> Login:
    """Supabase Auth's answer to a password sign-in.

    Success is 200 with an `access_token`, which is wrapped at once so that
    no text form of it can leak. A refusal names Supabase's error code: from
    `error_code` (legacy body), `code` (versioned body), the
    `x-sb-error-code` header, or the API gateway's `Invalid API key`.
    """
    data = _json_object(body) or {}
    token = data.get("access_token")
    if status == 200 and isinstance(token, str) and token:
        user = data.get("user") if isinstance(data.get("user"), Mapping) else {}
        expires = data.get("expires_in")
        return Login(
            token=Secret(token),
            user_id=str(user.get("id") or ""),
            expires_in=expires if isinstance(expires, int) else 0,
        )
    code = str(data.get("error_code") or "")
    if not code and isinstance(data.get("code"), str):
        code = data["code"]
    code = code or error_header
    message = str(data.get("msg") or data.get("message") or "").strip()
    if not code and "api key" in message.lower():
        code = "invalid_api_key"
    if status == 200:
        message = "no access_token in the answer"
    text = f"HTTP {status}"
    if code:
        text += f" {code}"
    if message:
        text += f" ({message})"
    elif not data:
        text += f": {_snippet(body)}" if body.strip() else ""
    return Login(token=None, problem=text, code=code)


# --- the worker's log lines --------------------------------------------------

ROWCOUNT = re.compile(r"'rowcount':\s*(\d+)")


def claimed_rows(line: LogLine, pattern: str) -> int | None:
    """Rows a claim query took, or None when LINE is no claim query.

    The worker logs every poll as `db_query={... 'query':
    'jobs.claim_batch_any', ... 'rowcount': N ...}` (`db_slow_query=` when
    slow); PATTERN is the query name prefix from the worker's settings.
    """
    if pattern not in line.message:
        return None
    match = ROWCOUNT.search(line.message)
    return int(match.group(1)) if match else None


def _job_line(kind: str, job_id: str) -> re.Pattern[str]:
    return re.compile(rf"\b{kind} job_id={re.escape(job_id)}(\s|$)")


@dataclass
class WorkerTrail:
    """What the worker's log stream says about one document job.

    The claim line names no job, so the claim that counts is the last one
    taking rows on the machine that then logs `doc_generate_start` for the job.
    """

    job_id: str
    pattern: str
    claim: LogLine | None = None
    start: LogLine | None = None
    succeeded: LogLine | None = None
    polls: int = 0
    _claims: dict[str, LogLine] = field(default_factory=dict, repr=False)

    def observe(self, line: LogLine) -> str | None:
        """Take one log line; name the event it proves, if any."""
        rows = claimed_rows(line, self.pattern)
        if rows is not None:
            self.polls += 1
            if rows > 0:
                self._claims[line.instance] = line
            return None
        if self.start is None and _job_line("doc_generate_start", self.job_id).search(
            line.message
        ):
            self.start = line
            self.claim = self._claims.get(line.instance)
            return "start"
        if self.succeeded is None and _job_line(
            "doc_generate_succeeded", self.job_id
        ).search(line.message):
            self.succeeded = line
            return "succeeded"
        return None

    @property
    def lines(self) -> list[LogLine]:
        return [x for x in (self.claim, self.start, self.succeeded) if x is not None]


# --- the job's verdict -------------------------------------------------------


@dataclass(frozen=True)
class JobVerdict:
    finished: bool
    problem: str | None = None
    warnings: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()


UNCLAIMED_HINTS = (
    "WORKER_ORG_ID set on the worker to another organisation (it then claims "
    "only that organisation's jobs)",
    "the worker's database role neither is a superuser nor bypasses row-level "
    "security, so its shared claim sees no rows",
    "the worker is stopped or crash-looping: inv verify.worker",
)


def judge_job(
    job: Job | None,
    trail: WorkerTrail,
    *,
    timed_out: bool,
    waited: float,
    api_problem: str | None = None,
    logs_problem: str | None = None,
) -> JobVerdict:
    """Whether the two witnesses agree the job is done, and how it ended.

    The API's job status is one witness, the worker's log lines the other;
    success needs both. A failed or dead job ends the wait at once (the
    worker never logs failures); anything else waits for the deadline.
    """
    jid = trail.job_id
    if job is not None and job.status in FAILED_STATUSES:
        return JobVerdict(True, f"job {jid} ended {job.describe()}")
    api_done = job is not None and job.status == "succeeded"
    if api_done and trail.succeeded is not None:
        warnings = ()
        if trail.claim is None:
            warnings = (
                f"no claim line ({trail.pattern} with rowcount >= 1) seen before "
                f"doc_generate_start: the worker logs its polls only once "
                "logging is configured",
            )
        return JobVerdict(True, None, warnings)
    if logs_problem and trail.succeeded is None:
        # The stream has ended: no worker line can arrive any more.
        said = job.describe() if job else "nothing yet"
        return JobVerdict(
            True,
            f"{logs_problem}, so the worker cannot witness job {jid} "
            f"(the API says {said})",
        )
    if not timed_out:
        return JobVerdict(False)

    within = f"within {waited:.0f} s"
    if job is None:
        why = api_problem or "no answer"
        return JobVerdict(True, f"no status for job {jid} from the API {within}: {why}")
    if api_done:
        return JobVerdict(
            True,
            f"the API says job {jid} succeeded, but the worker logged no "
            f"doc_generate_succeeded job_id={jid} {within}",
        )
    if trail.succeeded is not None:
        return JobVerdict(
            True,
            f"the witnesses disagree: the worker logged doc_generate_succeeded "
            f"for job {jid}, but the API still says {job.describe()} after "
            f"{waited:.0f} s",
        )
    if trail.start is not None:
        return JobVerdict(
            True,
            f"job {jid} is still {job.describe()} after {waited:.0f} s: the "
            "worker started it (doc_generate_start) but logged no success",
        )
    problem = (
        f"job {jid} was never claimed: still {job.describe()} after {waited:.0f} s"
    )
    if trail.polls:
        problem += f", and the worker polled {trail.polls} time(s) without claiming it"
    else:
        problem += ", and the worker logged nothing about it"
    return JobVerdict(True, problem, hints=UNCLAIMED_HINTS)


def redact(text: str, secrets: Sequence[Secret | None]) -> str:
    """TEXT with every secret value replaced by the redaction marker.

    The last line of defence for text that echoes a request back, such as
    an error body quoting the token it refused.
    """
    for secret in secrets:
        if secret and secret.reveal() in text:
            text = text.replace(secret.reveal(), str(secret))
    return text
