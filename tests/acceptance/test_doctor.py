"""`inv doctor`: every read-only check, one table, diagnoses and fixes."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import API, SENTINEL_TOKEN, WORKER
from test_secrets import assert_no_secret_leaks, good_values, write_env
from test_verify_cors import APP, settings


def healthy_values() -> dict[str, str]:
    # A shared worker: WORKER_ORG_ID set is valid but worth a warning.
    return good_values() | {"WORKER_ORG_ID": ""}


@pytest.fixture(autouse=True)
def good_env(project):
    """A healthy setup: every value in .env valid."""
    write_env(project, healthy_values())
    return healthy_values()


def doctor(inv, *args: str, **kwargs):
    result = inv("doctor", "--json", *args, **kwargs)
    rows = {row["check"]: row for row in json.loads(result.stdout)}
    return result, rows


def test_healthy_setup_prints_an_all_clear_table_and_exits_0(inv):
    result = inv("doctor")

    assert result.code == 0, result.output
    table = result.stdout
    for check in ("preflight", "auth.check", "secrets.check", "verify.worker"):
        assert check in table
    assert "failed" not in table
    assert "doctor: all clear" not in result.stderr
    assert "all clear" in result.stderr


def test_healthy_setup_has_every_section_ok(inv):
    result, rows = doctor(inv)

    assert result.code == 0, result.output
    assert {name: row["result"] for name, row in rows.items()} == {
        "preflight": "ok",
        "fly token variables": "ok",
        "auth.check": "ok",
        "secrets.check": "ok",
        "secrets.validate": "ok",
        "verify.api": "ok",
        "verify.worker": "ok",
        "verify.cors": "skipped",
        # The project copy the tests run in is no git clone.
        "security.scan": "skipped",
    }


def test_without_env_values_the_value_check_is_skipped_not_failed(inv, project):
    (project / ".env").unlink()

    result, rows = doctor(inv, env={"SUPABASE_URL": None, "SUPABASE_ANON_KEY": None})

    assert result.code == 0, result.output
    assert rows["secrets.validate"]["result"] == "skipped"


def test_not_logged_in_names_the_failure_and_skips_the_fly_checks(inv, fly):
    fly.log_out()

    result, rows = doctor(inv)

    assert result.code == 1
    assert rows["auth.check"]["failures"] == ["not-logged-in"]
    assert "nobody is logged in" in rows["auth.check"]["diagnosis"]
    assert "flyctl auth login" in rows["auth.check"]["fix"]
    assert rows["secrets.check"]["result"] == "skipped"
    assert rows["verify.worker"]["result"] == "skipped"
    assert rows["secrets.validate"]["result"] == "ok"
    assert "doctor: 1 check(s) failed: auth.check" in result.stderr


def test_not_authorized_suggests_logout_then_login(inv, fly):
    fly.restrict_token("tok-operator", [API])

    result, rows = doctor(inv)

    assert result.code == 1
    assert rows["auth.check"]["failures"] == ["not-authorized"]
    assert "stale login session" in rows["auth.check"]["diagnosis"]
    assert "flyctl auth logout`, then `flyctl auth login" in rows["auth.check"]["fix"]


def test_app_not_found_is_named_and_local_checks_still_run(inv, fly, project):
    write_env(project, healthy_values() | {"WORKER_BATCH": "zero"})
    fly.update(lambda s: s["apps"].pop(WORKER))

    result, rows = doctor(inv)

    assert result.code == 1
    assert rows["auth.check"]["failures"] == ["app-not-found"]
    assert (
        WORKER in rows["auth.check"]["fix"]
        or "invoke.yaml" in rows["auth.check"]["fix"]
    )
    assert rows["secrets.validate"]["result"] == "failed"
    assert "WORKER_BATCH" in rows["secrets.validate"]["diagnosis"]


def test_empty_token_variable_is_a_warning_with_its_fix(inv):
    result, rows = doctor(inv, env={"FLY_ACCESS_TOKEN": ""})

    assert result.code == 0, result.output
    row = rows["fly token variables"]
    assert row["result"] == "warning"
    assert row["failures"] == ["empty-token-variable"]
    assert "Remove-Item Env:FLY_ACCESS_TOKEN" in row["fix"]


def test_bad_database_url_in_env_is_named_with_its_fix(inv, project):
    bad_url = "postgresql://postgres:p@ss@db.abcdefghijklmnopqrst.supabase.co/postgres"
    write_env(project, healthy_values() | {"SUPABASE_DB_URL": bad_url})

    result, rows = doctor(inv)

    assert result.code == 1
    row = rows["secrets.validate"]
    assert row["result"] == "failed"
    assert "SUPABASE_DB_URL" in row["diagnosis"]
    assert "inv db.url" in row["fix"]
    assert "p@ss" not in result.output


def test_missing_secret_is_staged_from_env_with_fix(inv, fly, good_env):
    fly.update(lambda s: s["apps"][WORKER]["secrets"].pop("WORKER_BATCH"))

    result = inv("doctor", "--fix", "--yes")

    assert result.code == 0, result.output
    # Staged: present, but applied at the next deploy, which the row says.
    assert "✓ secrets.check: warning after the fix" in result.stderr
    assert "staged, not deployed: WORKER_BATCH" in result.stdout
    assert fly.secret_value(WORKER, "WORKER_BATCH") == "5"
    imports = [c for c in fly.calls() if c["command"] == "secrets import"]
    assert [c["argv"][c["argv"].index("--app") + 1] for c in imports] == [WORKER]
    assert_no_secret_leaks(result, fly, good_env)


def test_json_does_not_go_with_fix(inv, fly):
    result = inv("doctor", "--fix", "--json", "--yes")

    assert result.code == 2
    assert "--json cannot go with --fix" in result.stderr
    assert fly.calls() == []


def test_without_fix_nothing_is_changed(inv, fly):
    fly.update(lambda s: s["apps"][WORKER]["secrets"].pop("WORKER_BATCH"))

    result, rows = doctor(inv)

    assert result.code == 1
    assert "WORKER_BATCH missing" in rows["secrets.check"]["diagnosis"]
    assert rows["secrets.check"]["fix"] == "inv secrets.set WORKER_BATCH (from .env)"
    assert not [c for c in fly.calls() if c["command"] == "secrets import"]
    assert "next: inv doctor --fix (it can fix secrets.check)" in result.stderr


def test_fix_without_a_terminal_or_yes_changes_nothing(inv, fly):
    fly.update(lambda s: s["apps"][WORKER]["secrets"].pop("WORKER_BATCH"))

    result = inv("doctor", "--fix")

    assert result.code == 2
    assert "pass --yes" in result.stderr
    assert fly.calls() == []
    assert not [c for c in fly.calls() if c["command"] == "secrets import"]


def test_unhealthy_api_and_silent_worker_are_both_reported(inv, fly, health):
    health.mode = "never"
    fly.fault("silent", WORKER)

    result, rows = doctor(inv)

    assert result.code == 1
    assert rows["verify.api"]["result"] == "failed"
    assert rows["verify.worker"]["result"] == "failed"
    assert "doctor: 2 check(s) failed: verify.api, verify.worker" in result.stderr
    assert "inv doctor --fix" not in result.stderr


def test_without_flyctl_the_fly_checks_are_skipped(inv):
    result, rows = doctor(inv, env={"PATH": "/nonexistent"})

    assert result.code == 1
    assert "install flyctl" in rows["preflight"]["fix"]
    assert rows["auth.check"]["result"] == "skipped"
    assert rows["verify.api"]["result"] == "skipped"


def test_cors_is_checked_when_frontend_origins_are_set(inv, cors_api):
    cors_api.allowed = {APP}

    result, rows = doctor(inv, env=settings(cors_api.url, APP))

    assert result.code == 0, result.output
    assert rows["verify.cors"]["result"] == "ok"


def test_without_frontend_origins_cors_is_skipped(inv):
    result, rows = doctor(inv)

    assert rows["verify.cors"]["result"] == "skipped"
    assert "octo.cors.origins" in rows["verify.cors"]["evidence"]


def test_a_502_before_cors_is_named_as_the_proxy_not_cors(inv, cors_api):
    cors_api.mode = "proxy-502"

    result, rows = doctor(inv, env=settings(cors_api.url, APP))

    assert result.code == 1
    assert "fly-proxy-502" in rows["verify.cors"]["failures"]


def test_missing_origin_is_added_and_the_api_redeployed_with_fix(
    inv, cors_api, fly, project
):
    cors_api.fly = fly

    result = inv("doctor", "--fix", "--yes", env=settings(cors_api.url, APP))

    assert result.code == 0, result.output
    assert "✓ verify.cors: ok after the fix" in result.stderr
    assert fly.secret_value(API, "OCTO_CORS_ORIGINS") == APP
    assert f"OCTO_CORS_ORIGINS='{APP}'" in (project / ".env").read_text()
    restarts = [c for c in fly.calls() if c["command"] == "secrets deploy"]
    assert [c["argv"][c["argv"].index("--app") + 1] for c in restarts] == [API]
    assert "deploy" not in fly.commands()


def test_a_committed_secret_is_found_and_rotation_is_the_fix(inv, project):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    leaked = "OPENAI_API_KEY = 'sk-proj-" + "Q" * 40 + "T3BlbkFJ" + "R" * 40 + "'\n"
    (project / ".gitignore").write_text(".env\n.env.*\n.octo/\n", encoding="utf-8")
    (project / "settings.py").write_text(leaked, encoding="utf-8")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "leak"]):
        subprocess.run([*git, *args], cwd=project, check=True)

    result, rows = doctor(inv)

    assert result.code == 1
    assert rows["security.scan"]["result"] == "failed"
    assert "1 secret(s)" in rows["security.scan"]["diagnosis"]
    assert "rotate" in rows["security.scan"]["fix"]
    assert "inv security.rotate OPENAI_API_KEY" in result.stderr
    assert "Q" * 40 not in result.output


def test_relogin_is_offered_but_needs_a_terminal(inv, fly):
    fly.log_out()

    result = inv("doctor", "--fix", "--yes")

    assert result.code == 1
    assert "Fix for auth.check: log out of Fly.io and log in again" in result.stderr
    assert "flyctl auth login needs a terminal and a browser" in result.stderr
    assert "auth logout" not in fly.commands()


def test_relogin_is_not_offered_when_a_token_variable_wins(inv, fly):
    fly.update(lambda s: s["tokens"].pop(SENTINEL_TOKEN))

    result = inv("doctor", "--fix", "--yes", env={"FLY_API_TOKEN": SENTINEL_TOKEN})

    assert result.code == 1
    assert "log in again" not in result.stderr
    assert "no fix to automate" in result.stderr
    assert SENTINEL_TOKEN not in result.output


def test_a_broken_env_line_is_named_in_the_preflight_row(inv, project):
    with (project / ".env").open("a", encoding="utf-8") as env:
        env.write('BROKEN="never closed\n')

    result, rows = doctor(inv)

    assert result.code == 1
    assert rows["preflight"]["result"] == "failed"
    assert ".env line" in rows["preflight"]["diagnosis"]
