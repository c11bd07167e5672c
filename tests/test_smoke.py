"""The smoke task's HTTP calls (through httpx.MockTransport) and its waiting."""

import json
import queue
import threading
import time

import httpx
import pytest

from tasks import runner, smoke, ui
from tasks import smoke_checks as judge
from tasks.checks import LogLine
from tasks.errors import OctoError
from tasks.settings import AppSettings, Secret

PASSWORD = "pw-SENTINEL-unit-51e2"
ANON = "anon-SENTINEL-unit-77ab"
TOKEN = "tok-SENTINEL-unit-c0de"
WORKER = AppSettings(
    key="worker",
    name="octodrop-platform-worker",
    config=None,
    health_url="",
    poll_pattern="jobs.claim_batch",
    required_secrets=(),
    optional_secrets=(),
)


@pytest.fixture
def output(capsys):
    """What the task printed; ui's console is rebuilt on pytest's streams."""
    ui._console.cache_clear()
    yield capsys
    ui._console.cache_clear()


def make_plan(tmp_path, **changes) -> smoke.Plan:
    settings = judge.SmokeSettings(
        api_url="https://api.test",
        worker_app="worker",
        entity_id="ent-1",
        template_id="tpl-1",
        record_id="",
        record={"name": "smoke"},
        deadline=10,
        poll_seconds=1,
        skip_document=False,
    )
    return smoke.Plan(
        settings=settings.__class__(**{**settings.__dict__, **changes}),
        worker=WORKER,
        supabase_url=Secret("https://ref.supabase.test"),
        anon_key=Secret(ANON),
        email=Secret("smoke@example.com"),
        password=Secret(PASSWORD),
        state_file=tmp_path / ".octo" / "smoke.json",
    )


def client(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


# --- sign-in and API calls -----------------------------------------------------


def test_sign_in_sends_the_key_in_a_header_and_the_password_in_the_body(
    tmp_path, output
):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"access_token": TOKEN, "expires_in": 3600, "user": {"id": "u-1"}}
        )

    login = smoke.sign_in(client(handler), make_plan(tmp_path))

    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == (
        "https://ref.supabase.test/auth/v1/token?grant_type=password"
    )
    assert request.headers["apikey"] == ANON
    assert json.loads(request.content) == {
        "email": "smoke@example.com",
        "password": PASSWORD,
    }
    assert login.token.reveal() == TOKEN
    printed = output.readouterr()
    assert "user u-1" in printed.err
    for sentinel in (TOKEN, PASSWORD, ANON):
        assert sentinel not in printed.out + printed.err


def test_sign_in_refused_names_the_code_and_the_fix(tmp_path, output):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400,
            json={
                "code": 400,
                "error_code": "invalid_credentials",
                "msg": "Invalid login credentials",
            },
        )

    with pytest.raises(OctoError) as raised:
        smoke.sign_in(client(handler), make_plan(tmp_path))

    assert "invalid_credentials" in raised.value.message
    assert "SMOKE_PASSWORD" in raised.value.next_command


def test_api_call_sends_the_bearer_token_and_redacts_an_echo_of_it():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        error = {"code": "AUTH_INVALID_TOKEN", "message": f"bad token {TOKEN}"}
        return httpx.Response(401, json={"ok": False, "errors": [error]})

    api = smoke.Api(client(handler), "https://api.test", ())
    api.token = Secret(TOKEN)

    answer = api.call("GET", "/modules")

    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert str(seen[0].url) == "https://api.test/modules"
    assert answer.problem == "HTTP 401 AUTH_INVALID_TOKEN: bad token [REDACTED]"


def test_api_call_turns_a_network_failure_into_an_answer():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    answer = smoke.Api(client(handler), "https://api.test", ()).call("GET", "/modules")

    assert answer.status == 0
    assert answer.problem == "ConnectError: connection refused"


def test_create_record_remembers_the_record_for_the_next_run(tmp_path, output):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": True, "record": {"id": "r-9"}})

    plan = make_plan(tmp_path)
    api = smoke.Api(client(handler), "https://api.test", ())

    record_id = smoke.create_record(api, plan)

    assert record_id == "r-9"
    assert smoke.reused_record(plan) == ("r-9", plan.state_label)


def test_reused_record_prefers_the_configured_id(tmp_path):
    plan = make_plan(tmp_path, record_id="r-conf")

    assert smoke.reused_record(plan) == ("r-conf", "octo.smoke.record_id")


def test_update_record_replaces_a_remembered_record_that_is_gone(tmp_path, output):
    requests = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(f"{request.method} {request.url.path}")
        if request.url.path == "/records/ent-1/r-old":
            return httpx.Response(404, json={"ok": False, "errors": [{"code": "NF"}]})
        return httpx.Response(200, json={"ok": True, "record": {"id": "r-new"}})

    plan = make_plan(tmp_path)
    plan.state_file.parent.mkdir()
    plan.state_file.write_text(
        json.dumps({"records": {"https://api.test ent-1": "r-old"}})
    )
    api = smoke.Api(client(handler), "https://api.test", ())

    record_id = smoke.update_record(api, plan, "r-old", plan.state_label)

    assert record_id == "r-new"
    assert requests == [
        "PUT /records/ent-1/r-old",
        "POST /records/ent-1",
        "PUT /records/ent-1/r-new",
    ]
    assert smoke.reused_record(plan)[0] == "r-new"


def test_update_record_of_a_configured_record_that_is_gone_fails(tmp_path, output):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"ok": False, "errors": [{"code": "NF"}]})

    api = smoke.Api(client(handler), "https://api.test", ())

    with pytest.raises(OctoError, match="HTTP 404 NF"):
        smoke.update_record(
            api, make_plan(tmp_path, record_id="r-1"), "r-1", "octo.smoke.record_id"
        )


# --- waiting for the job ------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def job_answer(status: str, **extra) -> judge.Answer:
    return judge.Answer(
        200, {"ok": True, "job": {"id": "j-1", "status": status, **extra}}
    )


def worker_line(message: str) -> LogLine:
    return LogLine("t", "m1", "syd", "info", message)


def run_wait(answers, lines_at, *, budget=10.0, interval=1.0):
    """wait_for_job on a fake clock: ANSWERS in turn, LINES_AT[second] lines."""
    clock = FakeClock()
    start = clock.now
    polls = []

    def poll(timeout: float) -> judge.Answer:
        polls.append(round(clock.now - start, 3))
        return answers[min(len(polls), len(answers)) - 1]

    def take(timeout: float) -> list[LogLine]:
        before = int(clock.now - start)
        clock.now += timeout
        after = int(clock.now - start)
        return [x for second in range(before, after) for x in lines_at.get(second, [])]

    trail = judge.WorkerTrail("j-1", "jobs.claim_batch")
    verdict, job, waited = smoke.wait_for_job(
        poll, take, trail, budget=budget, interval=interval, clock=clock
    )
    return verdict, job, waited, polls


CLAIM = "db_query={'query': 'jobs.claim_batch_any', 'rowcount': 1}"
LINES = {
    0: [worker_line(CLAIM), worker_line("doc_generate_start job_id=j-1")],
    1: [worker_line("doc_generate_succeeded job_id=j-1 attachment_id=a")],
}


def test_wait_for_job_ends_when_api_and_worker_agree():
    answers = [job_answer("queued"), job_answer("running"), job_answer("succeeded")]

    verdict, job, waited, polls = run_wait(answers, LINES)

    assert verdict == judge.JobVerdict(True)
    assert job.status == "succeeded"
    assert polls == [0, 1, 2]


def test_wait_for_job_stops_at_once_on_a_dead_job():
    answers = [job_answer("dead", last_error="template missing", attempts=10)]

    verdict, _, waited, polls = run_wait(answers, {})

    assert "ended dead" in verdict.problem
    assert polls == [0]


def test_wait_for_job_reads_lines_already_there_before_judging():
    pending = [worker_line(CLAIM), worker_line("doc_generate_start job_id=j-1")]
    trail = judge.WorkerTrail("j-1", "jobs.claim_batch")

    def take(timeout: float) -> list[LogLine]:
        taken, pending[:] = list(pending), []
        return taken

    verdict, _, _ = smoke.wait_for_job(
        lambda timeout: job_answer("dead", last_error="boom"),
        take,
        trail,
        budget=10,
        interval=1,
        clock=FakeClock(),
    )

    assert "ended dead" in verdict.problem
    assert trail.start is not None
    assert trail.claim is not None


def test_wait_for_job_is_bounded_by_the_deadline():
    verdict, _, waited, polls = run_wait([job_answer("queued")], {}, budget=5)

    assert "never claimed" in verdict.problem
    assert waited == 5
    assert polls == [0, 1, 2, 3, 4, 5]


def test_wait_for_job_rides_out_a_transient_api_error():
    answers = [
        judge.Answer(503, {}, "HTTP 503"),
        job_answer("running"),
        job_answer("succeeded"),
    ]

    verdict, _, _, polls = run_wait(answers, LINES)

    assert verdict.problem is None
    assert len(polls) == 3


def test_wait_for_job_gives_up_on_a_refused_status_request():
    answers = [judge.Answer(403, {}, "HTTP 403 FORBIDDEN: admin only")]

    verdict, _, _, polls = run_wait(answers, LINES)

    assert verdict.problem == "GET /ops/jobs/j-1: HTTP 403 FORBIDDEN: admin only"
    assert polls == [0]


def test_wait_for_job_reports_the_worker_done_while_the_api_says_running():
    verdict, _, waited, _ = run_wait([job_answer("running")], LINES, budget=4)

    assert "disagree" in verdict.problem
    assert waited == 4


# --- the log stream can be stopped ---------------------------------------------------


def test_decode_objects_stops_when_told():
    lines: queue.Queue = queue.Queue()
    for n in range(3):
        lines.put(json.dumps({"message": f"line {n}"}) + "\n")
    stop = threading.Event()
    objects = runner._decode_objects(lines, time.monotonic() + 30, stop)

    first = next(objects)
    stop.set()

    assert first == {"message": "line 0"}
    assert list(objects) == []
