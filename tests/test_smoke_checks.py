"""The smoke test's pure judges: settings, answers, sign-in, log lines, jobs."""

import json

import pytest

from tasks import smoke_checks as judge
from tasks.checks import LogLine
from tasks.settings import Secret

SMOKE = {
    "api_url": "https://octodrop-platform-api.fly.dev/",
    "worker_app": "worker",
    "entity_id": "ent-smoke",
    "template_id": "tpl-1",
    "record_id": "",
    "record": {"name": "smoke"},
    "deadline": 120,
    "poll_seconds": 1.0,
    "skip_document": False,
}
PATTERN = "jobs.claim_batch"


def line(message: str, instance: str = "6e82541c7d9000") -> LogLine:
    return LogLine("2026-12-03T09:14:07Z", instance, "syd", "info", message)


def claim(rows: int, instance: str = "6e82541c7d9000") -> LogLine:
    return line(
        "INFO:octo.db.query:db_query={'query': 'jobs.claim_batch_any', 'ms': 2.3, "
        f"'rowcount': {rows}, 'params': [1200, 5, 'w1']}}",
        instance,
    )


def body(data) -> str:
    return json.dumps(data)


# --- settings ------------------------------------------------------------------


def test_load_settings_reads_every_field_and_trims_the_url():
    settings, problems = judge.load_settings(SMOKE, present=judge.CREDENTIALS)

    assert problems == []
    assert settings.api_url == "https://octodrop-platform-api.fly.dev"
    assert settings.entity_id == "ent-smoke"
    assert settings.deadline == 120.0
    assert settings.skip_document is False


def test_load_settings_names_every_missing_setting_at_once():
    raw = dict(SMOKE, entity_id="", template_id="")

    settings, problems = judge.load_settings(raw, present=["SUPABASE_URL"])

    assert settings is None
    text = "\n".join(problems)
    for name in ("SUPABASE_ANON_KEY", "SMOKE_EMAIL", "SMOKE_PASSWORD"):
        assert name in text
    assert "SUPABASE_URL" not in text
    assert "octo.smoke.entity_id" in text
    assert "octo.smoke.template_id" in text


def test_load_settings_needs_no_template_when_the_document_is_skipped():
    raw = dict(SMOKE, template_id="")

    settings, problems = judge.load_settings(
        raw, present=judge.CREDENTIALS, skip_document=True
    )

    assert problems == []
    assert settings.skip_document is True


def test_load_settings_command_line_deadline_wins():
    settings, _ = judge.load_settings(SMOKE, present=judge.CREDENTIALS, deadline=7)

    assert settings.deadline == 7.0


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"api_url": "octodrop-platform-api.fly.dev"}, "octo.smoke.api_url"),
        ({"deadline": 0}, "octo.smoke.deadline"),
        ({"poll_seconds": "soon"}, "octo.smoke.poll_seconds"),
        ({"record": {}}, "octo.smoke.record"),
    ],
    ids=["url-without-scheme", "zero-deadline", "poll-not-a-number", "no-fields"],
)
def test_load_settings_rejects_bad_values(change, expected):
    _, problems = judge.load_settings(dict(SMOKE, **change), present=judge.CREDENTIALS)

    assert any(expected in p for p in problems), problems


def test_load_settings_without_a_smoke_section_says_so():
    _, problems = judge.load_settings(None, present=judge.CREDENTIALS)

    assert problems == ["octo.smoke is missing from invoke.yaml"]


# --- API answers ---------------------------------------------------------------


def test_read_answer_accepts_the_ok_envelope():
    answer = judge.read_answer(200, body({"ok": True, "errors": [], "modules": []}))

    assert answer.problem is None
    assert answer.data["modules"] == []


def test_read_answer_names_the_api_error_code_message_and_path():
    failure = {
        "ok": False,
        "errors": [
            {"code": "RECORD_INVALID", "message": "name is required", "path": "name"}
        ],
    }

    answer = judge.read_answer(422, body(failure))

    assert answer.problem == "HTTP 422 RECORD_INVALID: name is required (at name)"
    assert answer.codes == ("RECORD_INVALID",)


def test_read_answer_reports_a_proxy_page_as_text():
    answer = judge.read_answer(502, "<html>\n  502 Bad Gateway\n</html>")

    assert answer.problem == "HTTP 502: <html> 502 Bad Gateway </html>"


def test_read_answer_refuses_200_with_ok_false():
    answer = judge.read_answer(200, body({"ok": False, "errors": [{"code": "X"}]}))

    assert answer.problem == "HTTP 200 X"


def test_count_modules_counts_the_list():
    answer = judge.read_answer(200, body({"ok": True, "modules": [{}, {}]}))

    assert judge.count_modules(answer) == (2, None)


def test_count_modules_needs_a_modules_list():
    answer = judge.read_answer(200, body({"ok": True}))

    count, problem = judge.count_modules(answer)

    assert "modules" in problem


@pytest.mark.parametrize(
    "data",
    [
        {"ok": True, "record": {"id": "r-1", "name": "smoke"}},
        {"ok": True, "record_id": "r-1"},
        {"ok": True, "id": "r-1"},
    ],
    ids=["record-id", "record_id", "id"],
)
def test_record_id_of_finds_the_id(data):
    assert judge.record_id_of(judge.read_answer(200, body(data))) == ("r-1", None)


def test_record_id_of_without_an_id_is_a_problem():
    record_id, problem = judge.record_id_of(
        judge.read_answer(200, body({"ok": True, "record": {}}))
    )

    assert record_id == ""
    assert "record id" in problem


def test_job_of_reads_status_error_and_attempts():
    data = {
        "ok": True,
        "job": {"id": "j-1", "status": "dead", "last_error": "boom", "attempts": 10},
    }

    job, problem = judge.job_of(judge.read_answer(200, body(data)))

    assert problem is None
    assert job == judge.Job("j-1", "dead", "boom", 10)
    assert job.describe() == "dead (10 attempt(s)), last error: boom"


def test_job_of_refuses_an_unknown_status():
    data = {"ok": True, "job": {"id": "j-1", "status": "paused"}}

    job, problem = judge.job_of(judge.read_answer(200, body(data)))

    assert job is None
    assert "'paused'" in problem


@pytest.mark.parametrize(
    "status, transient",
    [(0, True), (429, True), (503, True), (403, False), (404, False)],
)
def test_is_transient(status, transient):
    assert judge.is_transient(status) is transient


# --- sign-in ---------------------------------------------------------------------


def test_judge_login_wraps_the_token():
    data = {
        "access_token": "eyJ-SENTINEL",
        "token_type": "bearer",
        "expires_in": 3600,
        "refresh_token": "rt",
        "user": {"id": "u-1"},
    }

    login = judge.judge_login(200, body(data))

    assert login.problem is None
    assert login.token.reveal() == "eyJ-SENTINEL"
    assert "eyJ-SENTINEL" not in f"{login}"
    assert (login.user_id, login.expires_in) == ("u-1", 3600)


def test_judge_login_names_the_legacy_error_code():
    data = {
        "code": 400,
        "error_code": "invalid_credentials",
        "msg": "Invalid login credentials",
    }

    login = judge.judge_login(400, body(data))

    assert login.token is None
    assert login.problem == "HTTP 400 invalid_credentials (Invalid login credentials)"
    assert "SMOKE_PASSWORD" in login.fix


def test_judge_login_names_the_versioned_error_code():
    data = {"code": "email_not_confirmed", "message": "Email not confirmed"}

    login = judge.judge_login(400, body(data))

    assert login.code == "email_not_confirmed"
    assert "confirm" in login.fix


def test_judge_login_falls_back_to_the_error_code_header():
    login = judge.judge_login(429, "", error_header="over_request_rate_limit")

    assert login.problem == "HTTP 429 over_request_rate_limit"


def test_judge_login_recognises_the_gateways_bad_key():
    data = {"message": "Invalid API key", "hint": "Double check your key."}

    login = judge.judge_login(401, body(data))

    assert login.code == "invalid_api_key"
    assert "SUPABASE_ANON_KEY" in login.fix


def test_judge_login_without_a_token_is_a_problem():
    login = judge.judge_login(200, body({"token_type": "bearer"}))

    assert login.token is None
    assert "no access_token" in login.problem


# --- worker lines ------------------------------------------------------------


def test_claimed_rows_reads_the_rowcount_of_claim_queries_only():
    assert judge.claimed_rows(claim(1), PATTERN) == 1
    assert judge.claimed_rows(claim(0), PATTERN) == 0
    assert judge.claimed_rows(line("INFO:octo.db:db_conn borrowed"), PATTERN) is None


def test_worker_trail_pairs_the_claim_on_the_starting_machine():
    trail = judge.WorkerTrail("j-7", PATTERN)
    events = [
        trail.observe(claim(1, "other")),
        trail.observe(claim(0)),
        trail.observe(claim(1)),
        trail.observe(line("doc_generate_start job_id=j-70 template_id=t")),
        trail.observe(line("doc_generate_start job_id=j-7 template_id=t entity_id=e")),
        trail.observe(line("doc_generate_succeeded job_id=j-7 attachment_id=a")),
    ]

    assert events == [None, None, None, None, "start", "succeeded"]
    assert trail.claim == claim(1)
    assert trail.polls == 3
    assert len(trail.lines) == 3


def test_worker_trail_ignores_other_jobs():
    trail = judge.WorkerTrail("j-7", PATTERN)

    trail.observe(line("doc_generate_succeeded job_id=j-77 attachment_id=a"))

    assert trail.succeeded is None


# --- the job's verdict -------------------------------------------------------------


def finished_trail(*, with_claim: bool = True) -> judge.WorkerTrail:
    trail = judge.WorkerTrail("j-1", PATTERN)
    if with_claim:
        trail.observe(claim(1))
    trail.observe(line("doc_generate_start job_id=j-1"))
    trail.observe(line("doc_generate_succeeded job_id=j-1 attachment_id=a"))
    return trail


def test_judge_job_succeeds_when_both_witnesses_agree():
    verdict = judge.judge_job(
        judge.Job("j-1", "succeeded"), finished_trail(), timed_out=False, waited=2
    )

    assert verdict == judge.JobVerdict(True)


def test_judge_job_warns_when_the_claim_line_is_missing():
    verdict = judge.judge_job(
        judge.Job("j-1", "succeeded"),
        finished_trail(with_claim=False),
        timed_out=False,
        waited=2,
    )

    assert verdict.problem is None
    assert "no claim line" in verdict.warnings[0]


def test_judge_job_ends_at_once_on_a_dead_job():
    job = judge.Job("j-1", "dead", "openai: 401 invalid_api_key", 10)

    verdict = judge.judge_job(
        job, judge.WorkerTrail("j-1", PATTERN), timed_out=False, waited=1
    )

    assert verdict.finished
    assert verdict.problem == (
        "job j-1 ended dead (10 attempt(s)), last error: openai: 401 invalid_api_key"
    )


def test_judge_job_keeps_waiting_before_the_deadline():
    verdict = judge.judge_job(
        judge.Job("j-1", "running"), finished_trail(), timed_out=False, waited=1
    )

    assert verdict == judge.JobVerdict(False)


def test_judge_job_reports_the_witnesses_disagreeing():
    verdict = judge.judge_job(
        judge.Job("j-1", "running"), finished_trail(), timed_out=True, waited=5
    )

    assert "disagree" in verdict.problem
    assert "still says running" in verdict.problem


def test_judge_job_reports_an_api_success_the_logs_do_not_show():
    verdict = judge.judge_job(
        judge.Job("j-1", "succeeded"),
        judge.WorkerTrail("j-1", PATTERN),
        timed_out=True,
        waited=5,
    )

    assert verdict.problem == (
        "the API says job j-1 succeeded, but the worker logged no "
        "doc_generate_succeeded job_id=j-1 within 5 s"
    )


def test_judge_job_ends_at_once_when_the_logs_are_unreadable():
    verdict = judge.judge_job(
        judge.Job("j-1", "running"),
        judge.WorkerTrail("j-1", PATTERN),
        timed_out=False,
        waited=1,
        logs_problem="the logs of w are unreadable (401 Unauthorized)",
    )

    assert verdict.finished
    assert verdict.problem == (
        "the logs of w are unreadable (401 Unauthorized), so the worker cannot "
        "witness job j-1 (the API says running)"
    )


def test_judge_job_reports_a_job_never_claimed_with_hints():
    trail = judge.WorkerTrail("j-1", PATTERN)
    trail.observe(claim(0))
    trail.observe(claim(0))

    verdict = judge.judge_job(
        judge.Job("j-1", "queued"), trail, timed_out=True, waited=5
    )

    assert verdict.problem == (
        "job j-1 was never claimed: still queued after 5 s, and the worker "
        "polled 2 time(s) without claiming it"
    )
    assert any("WORKER_ORG_ID" in hint for hint in verdict.hints)


def test_judge_job_reports_a_started_job_that_never_finished():
    trail = judge.WorkerTrail("j-1", PATTERN)
    trail.observe(line("doc_generate_start job_id=j-1"))

    verdict = judge.judge_job(
        judge.Job("j-1", "running"), trail, timed_out=True, waited=5
    )

    assert "started it (doc_generate_start) but logged no success" in verdict.problem


def test_judge_job_without_any_api_answer_says_why():
    verdict = judge.judge_job(
        None,
        judge.WorkerTrail("j-1", PATTERN),
        timed_out=True,
        waited=5,
        api_problem="HTTP 503",
    )

    assert verdict.problem == "no status for job j-1 from the API within 5 s: HTTP 503"


def test_redact_replaces_every_secret_value():
    text = judge.redact(
        "refused token tok-1 for pw-2", [Secret("tok-1"), None, Secret("pw-2")]
    )

    assert text == "refused token [REDACTED] for [REDACTED]"
