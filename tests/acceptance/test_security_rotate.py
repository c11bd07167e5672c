"""`inv security.rotate NAME`, run as an operator rotating an exposed key."""

from __future__ import annotations

import json

from conftest import API, WORKER
from test_secrets import OPENAI_KEY, REF, good_values, write_env

NEW_OPENAI_KEY = "sk-proj-NEWSENTINEL" + "n" * 40 + "T3BlbkFJ" + "m" * 40
NEW_DB_PASSWORD = "N3w#Sentinel pw/?"


def imports(fly) -> list[str]:
    """The apps a `secrets import` went to, in order."""
    return [
        c["argv"][c["argv"].index("--app") + 1]
        for c in fly.calls()
        if c["command"] == "secrets import"
    ]


def restarts(fly, command: str = "secrets deploy") -> list[str]:
    """The apps a COMMAND went to, in order."""
    return [
        c["argv"][c["argv"].index("--app") + 1]
        for c in fly.calls()
        if c["command"] == command
    ]


def images(fly) -> dict[str, set[str]]:
    return {
        name: {m["image"] for m in app["machines"]}
        for name, app in fly.state["apps"].items()
    }


def assert_never_shown(result, fly, *values: str) -> None:
    argv = json.dumps([call["argv"] for call in fly.calls()])
    for value in values:
        assert value not in result.output
        assert value not in argv


def test_rotation_stages_deploys_and_verifies_every_app(inv, fly, project):
    write_env(project, good_values())
    running = images(fly)

    result = inv(
        "security.rotate", "OPENAI_API_KEY", "--yes", stdin=NEW_OPENAI_KEY + "\n"
    )

    assert result.code == 0, result.output
    assert imports(fly) == [API, WORKER]
    # A secret change is no release: the running images restart, nothing builds.
    assert restarts(fly) == [API, WORKER]
    assert restarts(fly, "deploy") == []
    assert images(fly) == running
    for app in (API, WORKER):
        assert fly.secret_value(app, "OPENAI_API_KEY") == NEW_OPENAI_KEY
        assert fly.state["apps"][app]["secrets"]["OPENAI_API_KEY"].get(
            "status", "Deployed"
        ) in ("Deployed", "deployed")
    assert NEW_OPENAI_KEY in (project / ".env").read_text(encoding="utf-8")
    assert "platform.openai.com/api-keys" in result.stderr
    assert "OPENAI_API_KEY rotated" in result.stderr
    assert_never_shown(result, fly, NEW_OPENAI_KEY, OPENAI_KEY)


def test_rotation_is_journaled_with_the_new_digests(inv, fly, project):
    write_env(project, good_values())

    inv("security.rotate", "OPENAI_API_KEY", "--yes", stdin=NEW_OPENAI_KEY + "\n")

    history = inv("release.history", "--json")
    (record,) = json.loads(history.stdout)
    assert record["task"] == "security.rotate"
    assert record["result"] == "ok"
    digests = {a["name"]: a["secret_digests"]["OPENAI_API_KEY"] for a in record["apps"]}
    assert digests[API] == fly.state["apps"][API]["secrets"]["OPENAI_API_KEY"]["digest"]
    assert NEW_OPENAI_KEY not in history.stdout
    digest_record = (project / ".octo" / "secret-digests.json").read_text()
    assert NEW_OPENAI_KEY not in digest_record


def test_an_invalid_new_value_changes_nothing(inv, fly, project):
    write_env(project, good_values())
    before = (project / ".env").read_text(encoding="utf-8")
    admin_key = "sk-admin-SENTINEL" + "a" * 40 + "T3BlbkFJ" + "b" * 40

    result = inv("security.rotate", "OPENAI_API_KEY", "--yes", stdin=admin_key + "\n")

    assert result.code == 1
    assert "refusing the new OPENAI_API_KEY" in result.stderr
    assert imports(fly) == [] and restarts(fly) == []
    assert (project / ".env").read_text(encoding="utf-8") == before
    assert_never_shown(result, fly, admin_key)


def test_database_rotation_asks_only_for_the_new_password(inv, fly, project):
    write_env(project, good_values())

    result = inv(
        "security.rotate", "SUPABASE_DB_URL", "--yes", stdin=NEW_DB_PASSWORD + "\n"
    )

    assert result.code == 0, result.output
    url = fly.secret_value(WORKER, "SUPABASE_DB_URL")
    assert url == (
        "postgresql://postgres:N3w%23Sentinel%20pw%2F%3F"
        f"@db.{REF}.supabase.co:5432/postgres?sslmode=require"
    )
    assert fly.secret_value(API, "SUPABASE_DB_URL") == url
    assert "Reset the database password" in result.stderr
    assert_never_shown(result, fly, NEW_DB_PASSWORD, "N3w%23Sentinel")


def test_the_same_value_again_is_refused(inv, fly, project):
    write_env(project, good_values())

    result = inv("security.rotate", "OPENAI_API_KEY", "--yes", stdin=OPENAI_KEY + "\n")

    assert result.code == 2
    assert "already in use" in result.stderr
    assert imports(fly) == []


def test_dry_run_shows_the_plan_and_changes_nothing(inv, fly, project):
    write_env(project, good_values())

    result = inv(
        "security.rotate", "OPENAI_API_KEY", "--dry-run", stdin=NEW_OPENAI_KEY + "\n"
    )

    assert result.code == 0, result.output
    assert f"would run: flyctl secrets import --app {WORKER} --stage" in result.stderr
    assert f"would run: flyctl secrets deploy --app {API}" in result.stderr
    assert imports(fly) == [] and restarts(fly) == []
    assert NEW_OPENAI_KEY not in (project / ".env").read_text(encoding="utf-8")


def test_without_a_terminal_or_yes_nothing_changes(inv, fly, project):
    write_env(project, good_values())

    result = inv("security.rotate", "OPENAI_API_KEY", stdin=NEW_OPENAI_KEY + "\n")

    assert result.code == 2
    assert "pass --yes" in result.stderr
    assert imports(fly) == []


def test_a_failed_staging_puts_the_old_value_back(inv, fly, project):
    write_env(project, good_values())
    fly.fault(
        "fail",
        {"secrets import": {"stderr": "Error: 500 internal error", "app": WORKER}},
    )

    result = inv(
        "security.rotate", "OPENAI_API_KEY", "--yes", stdin=NEW_OPENAI_KEY + "\n"
    )

    assert result.code == 1
    assert "step stage.worker failed" in result.stderr
    assert fly.secret_value(API, "OPENAI_API_KEY") == OPENAI_KEY
    # .env held another value than the API ran; the put-back says so.
    assert f"{API} now have .env's old OPENAI_API_KEY staged" in result.stderr
    assert "no app runs or holds the new OPENAI_API_KEY" in result.stderr
    assert "run `inv security.rotate OPENAI_API_KEY` again" in result.stderr
    assert "`inv release`" not in result.stderr
    assert restarts(fly) == []
    assert NEW_OPENAI_KEY not in (project / ".env").read_text(encoding="utf-8")


def test_a_failed_verification_says_not_to_revoke_the_old_value_yet(
    inv, fly, project, health
):
    write_env(project, good_values())
    health.mode = "never"

    result = inv(
        "security.rotate", "OPENAI_API_KEY", "--yes", stdin=NEW_OPENAI_KEY + "\n"
    )

    assert result.code == 1
    assert "do not revoke the old value yet" in result.stderr
    assert "now revoke" not in result.stderr
    assert f"{API}: runs the new OPENAI_API_KEY, but its verification failed" in (
        result.stderr
    )
    assert f"{WORKER}: runs the old OPENAI_API_KEY; the new one is staged" in (
        result.stderr
    )
    # .env keeps the old value, the way back, until every app runs the new one.
    env = (project / ".env").read_text(encoding="utf-8")
    assert OPENAI_KEY in env and NEW_OPENAI_KEY not in env
    assert "inv secrets.set OPENAI_API_KEY" in result.stderr


def test_a_broken_current_database_url_stops_before_the_reset_advice(inv, fly, project):
    write_env(project, good_values() | {"SUPABASE_DB_URL": "postgresql://postgres@db"})

    result = inv(
        "security.rotate", "SUPABASE_DB_URL", "--yes", stdin=NEW_DB_PASSWORD + "\n"
    )

    assert result.code == 2
    assert "the current SUPABASE_DB_URL is wrong" in result.stderr
    assert "do not reset the database password yet" in result.stderr
    assert "before: Reset" not in result.stderr
    assert imports(fly) == []


def test_a_name_no_app_uses_is_refused(inv, project):
    write_env(project, good_values())

    result = inv("security.rotate", "GITHUB_TOKEN", "--yes", stdin="x\n")

    assert result.code == 2
    assert "no app uses GITHUB_TOKEN" in result.stderr
