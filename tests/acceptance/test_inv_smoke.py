"""`inv smoke`, and `inv release` ending with it, run as an operator runs them.

The smoke user's credentials are in the project's `.env`; Supabase Auth and
the API are the local server of tests/smoke_server.py, whose jobs feed the
worker's log lines to the flyctl double.
"""

import re

import pytest
import smoke_server
from conftest import API, WORKER
from smoke_server import ENTITY, LAST_ERROR, SENTINELS

SMOKE_STEPS = (
    "smoke.login",
    "smoke.modules",
    "smoke.create",
    "smoke.update",
    "smoke.document",
    "smoke.job",
)
WRONG_PASSWORD = "pw-SENTINEL-wrong-8c4d"


@pytest.fixture
def dotenv(project, smoke_api) -> dict:
    """Credentials in `.env` (so `inv` sets none), and no overrides."""
    (project / ".env").write_text(smoke_api.dotenv(), encoding="utf-8")
    return {}


def summary_rows(stdout: str, title: str) -> dict[str, str]:
    """Step name -> result word, from a summary table."""
    section = stdout[stdout.index(title) :]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"\s*│\s*|\s{2,}", line.strip())]
        if len(cells) >= 2 and cells[1] in {"ok", "failed", "skipped", "planned"}:
            rows[cells[0]] = cells[1]
    return rows


def machine_images(fly, app) -> set[str]:
    return {m["image"] for m in fly.state["apps"][app]["machines"]}


def assert_no_secrets(result, smoke_api, fly, *extra: str) -> None:
    sentinels = (*SENTINELS, *extra)
    for sentinel in sentinels:
        assert sentinel not in result.output
    for request in smoke_api.requests:
        assert not any(s in request["path"] for s in sentinels), request["path"]
    for call in fly.calls():
        assert not any(s in arg for s in sentinels for arg in call["argv"])


def test_smoke_passes_end_to_end(inv, fly, smoke_api, dotenv):
    result = inv("smoke", env=dotenv)

    assert result.code == 0, result.output
    assert summary_rows(result.stdout, "smoke summary") == dict.fromkeys(
        SMOKE_STEPS, "ok"
    )
    job_id = next(iter(smoke_api.jobs))
    assert f"job {job_id} succeeded" in result.stderr
    assert f"doc_generate_succeeded job_id={job_id}" in result.stderr
    assert smoke_api.routes()[:5] == [
        "POST /auth/v1/token",
        "GET /modules",
        f"POST /records/{ENTITY}",
        f"PUT /records/{ENTITY}/rec-1",
        "POST /documents/generate",
    ]
    assert f"GET /ops/jobs/{job_id}" in smoke_api.routes()
    assert ["logs", "--app", WORKER, "--json"] in [c["argv"] for c in fly.calls()]
    assert_no_secrets(result, smoke_api, fly)


def test_smoke_sends_the_token_only_in_the_authorization_header(
    inv, fly, smoke_api, dotenv
):
    result = inv("smoke", env=dotenv)

    assert result.code == 0, result.output
    sign_in, *api_calls = smoke_api.requests
    assert sign_in["headers"]["apikey"] == smoke_server.ANON_KEY
    assert "Authorization" not in sign_in["headers"]
    assert api_calls
    for request in api_calls:
        assert request["headers"]["Authorization"] == (
            f"Bearer {smoke_server.ACCESS_TOKEN}"
        )
        assert "apikey" not in request["headers"]
        assert request["headers"]["User-Agent"].startswith("octo-release-runbook")


def test_smoke_rejected_login_names_supabase_error_code(inv, fly, smoke_api, project):
    (project / ".env").write_text(smoke_api.dotenv(password=WRONG_PASSWORD))

    result = inv("smoke")

    assert result.code == 1, result.output
    assert "step smoke.login failed" in result.stderr
    assert "invalid_credentials (Invalid login credentials)" in result.stderr
    assert "check SMOKE_EMAIL and SMOKE_PASSWORD" in result.stderr
    assert summary_rows(result.stdout, "smoke summary") == {"smoke.login": "failed"}
    assert smoke_api.routes() == ["POST /auth/v1/token"]
    assert_no_secrets(result, smoke_api, fly, WRONG_PASSWORD)


def test_smoke_api_error_names_the_step_code_and_message(inv, fly, smoke_api, dotenv):
    smoke_api.failures["POST /records"] = (
        500,
        smoke_server.error("INTERNAL_ERROR", "database unavailable"),
    )

    result = inv("smoke", env=dotenv)

    assert result.code == 1, result.output
    assert "step smoke.create failed" in result.stderr
    assert "HTTP 500 INTERNAL_ERROR: database unavailable" in result.stderr
    assert summary_rows(result.stdout, "smoke summary") == {
        "smoke.login": "ok",
        "smoke.modules": "ok",
        "smoke.create": "failed",
    }
    assert "PUT" not in " ".join(smoke_api.routes())
    assert_no_secrets(result, smoke_api, fly)


def test_smoke_dead_job_shows_its_last_error_and_worker_lines(
    inv, fly, smoke_api, dotenv
):
    smoke_api.job_mode = "dead"

    result = inv("smoke", env=dotenv)

    assert result.code == 1, result.output
    job_id = next(iter(smoke_api.jobs))
    assert "step smoke.job failed" in result.stderr
    assert f"job {job_id} ended dead (10 attempt(s))" in result.stderr
    assert LAST_ERROR in result.stderr
    assert f"doc_generate_start job_id={job_id}" in result.stderr
    assert "next: flyctl logs --app octodrop-platform-worker" in result.stderr
    assert_no_secrets(result, smoke_api, fly)


def test_smoke_job_never_claimed_fails_at_the_deadline(inv, fly, smoke_api, dotenv):
    smoke_api.job_mode = "unclaimed"

    result = inv("smoke", env={**dotenv, "INVOKE_OCTO_SMOKE_DEADLINE": "2"})

    assert result.code == 1, result.output
    job_id = next(iter(smoke_api.jobs))
    assert "step smoke.job failed" in result.stderr
    assert f"job {job_id} was never claimed: still queued after 2 s" in result.stderr
    assert "without claiming it" in result.stderr
    assert "WORKER_ORG_ID" in result.stderr
    assert "'rowcount': 0" in result.stderr
    assert_no_secrets(result, smoke_api, fly)


def test_smoke_reports_worker_success_while_api_says_running(
    inv, fly, smoke_api, dotenv
):
    smoke_api.job_mode = "disagree"

    result = inv("smoke", env={**dotenv, "INVOKE_OCTO_SMOKE_DEADLINE": "2"})

    assert result.code == 1, result.output
    job_id = next(iter(smoke_api.jobs))
    assert "step smoke.job failed" in result.stderr
    assert "the witnesses disagree" in result.stderr
    assert "the API still says running" in result.stderr
    assert f"doc_generate_succeeded job_id={job_id}" in result.stderr
    assert_no_secrets(result, smoke_api, fly)


def test_smoke_unreadable_worker_logs_fail_the_job_step(inv, fly, smoke_api, dotenv):
    fly.update(lambda s: s["faults"].setdefault("logs_unauthorized", []).append(WORKER))

    result = inv("smoke", env={**dotenv, "INVOKE_OCTO_SMOKE_DEADLINE": "30"})

    assert result.code == 1, result.output
    assert "step smoke.job failed" in result.stderr
    assert f"the logs of {WORKER} are unreadable" in result.stderr
    assert "401 Unauthorized" in result.stderr


def test_smoke_can_skip_the_document_and_says_so(inv, fly, smoke_api, dotenv):
    env = {
        **dotenv,
        "INVOKE_OCTO_SMOKE_TEMPLATE_ID": "",
        "INVOKE_OCTO_SMOKE_SKIP_DOCUMENT": "1",
    }

    result = inv("smoke", env=env)

    assert result.code == 0, result.output
    rows = summary_rows(result.stdout, "smoke summary")
    assert rows["smoke.document"] == rows["smoke.job"] == "skipped"
    assert "no document template" in result.stdout
    assert "POST /documents/generate" not in smoke_api.routes()
    assert not any(c["command"] == "logs" for c in fly.calls())


def test_smoke_reuses_its_record_on_the_next_run(inv, fly, smoke_api, dotenv):
    first = inv("smoke", "--skip-document", env=dotenv)
    second = inv("smoke", "--skip-document", env=dotenv)

    assert first.code == second.code == 0, second.output
    assert summary_rows(second.stdout, "smoke summary")["smoke.create"] == "skipped"
    assert "reusing smoke record rec-1" in second.stderr
    assert list(smoke_api.records) == ["rec-1"]
    assert smoke_api.routes().count(f"PUT /records/{ENTITY}/rec-1") == 2


def test_smoke_without_settings_names_them_all_and_exits_2(inv, smoke_api):
    env = {
        "SMOKE_EMAIL": None,
        "SMOKE_PASSWORD": None,
        "INVOKE_OCTO_SMOKE_ENTITY_ID": "",
    }

    result = inv("smoke", env=env)

    assert result.code == 2, result.output
    for name in ("SMOKE_EMAIL", "SMOKE_PASSWORD", "octo.smoke.entity_id"):
        assert name in result.stderr
    assert "3 setting(s) missing" in result.stderr
    assert smoke_api.requests == []


def test_release_runs_the_smoke_test_last(inv, fly, smoke_api, dotenv):
    result = inv("release", "--yes", env=dotenv)

    assert result.code == 0, result.output
    rows = summary_rows(result.stdout, "release summary")
    assert list(rows)[-len(SMOKE_STEPS) :] == list(SMOKE_STEPS)
    assert list(rows)[-len(SMOKE_STEPS) - 1] == "verify.worker"
    assert set(rows.values()) == {"ok"}
    assert_no_secrets(result, smoke_api, fly)


def test_release_whose_smoke_test_fails_rolls_both_apps_back(
    inv, fly, smoke_api, dotenv
):
    running = {app: machine_images(fly, app) for app in (API, WORKER)}
    smoke_api.job_mode = "dead"

    result = inv("release", "--yes", env=dotenv)

    assert result.code == 1, result.output
    assert "step smoke.job failed; the apps it deployed are back" in result.stderr
    rows = summary_rows(result.stdout, "release summary")
    assert rows["smoke.job"] == "failed"
    assert rows["rollback.verify.api"] == rows["rollback.verify.worker"] == "ok"
    # Back on the images they ran before the release, not the new build.
    for app in (API, WORKER):
        assert machine_images(fly, app) == running[app]
    assert_no_secrets(result, smoke_api, fly)


def test_release_skip_smoke_says_so_in_the_summary(inv, fly, smoke_api):
    result = inv("release", "--yes", "--skip-smoke", env={"SMOKE_EMAIL": None})

    assert result.code == 0, result.output
    assert summary_rows(result.stdout, "release summary")["smoke"] == "skipped"
    assert smoke_api.requests == []


def test_release_without_smoke_settings_changes_nothing(inv, fly, smoke_api):
    result = inv("release", "--yes", env={"SMOKE_PASSWORD": None})

    assert result.code == 2, result.output
    assert "SMOKE_PASSWORD is not set" in result.stderr
    assert "inv release --skip-smoke" in result.stderr
    assert "deploy" not in fly.commands()


def test_release_dry_run_plans_the_smoke_test(inv, fly, smoke_api, dotenv):
    result = inv("release", "--dry-run", env=dotenv)

    assert result.code == 0, result.output
    assert summary_rows(result.stdout, "release summary")["smoke"] == "skipped"
    assert "would run: POST {SUPABASE_URL}/auth/v1/token" in result.stderr
    assert smoke_api.requests == []


def test_a_502_from_flys_proxy_is_diagnosed_as_the_app_not_answering(
    inv, fly, smoke_api, dotenv
):
    smoke_api.extra_headers = [
        ("Server", "Fly/0e1f (2026-08-20)"),
        ("Via", "1.1 fly.io"),
    ]
    smoke_api.failures["GET /modules"] = (502, "")

    result = inv("smoke", env=dotenv)

    assert result.code == 1, result.output
    assert "step smoke.modules failed" in result.stderr
    assert "diagnosis: Fly's proxy answered 502/503/504 itself" in result.stderr
    assert "inv verify.api" in result.stderr
