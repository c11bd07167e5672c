"""`inv secrets.*` and `inv db.url`, run as an operator runs them."""

from __future__ import annotations

import json
import shutil

import jwt
import pytest
from conftest import API, REPO, WORKER

REF = "abcdefghijklmnopqrst"
SIGNING_KEY = "test-only-jwt-secret-with-at-least-32-characters"
# Sentinels: distinctive parts of secret values that must never be printed
# or passed to flyctl as arguments.
DB_PASSWORD = "Sentinel#Pw 1/?@"
OPENAI_KEY = "sk-proj-SENTINELopenai" + "x" * 40 + "T3BlbkFJ" + "y" * 40
TRICKY_REGEXES = "https://(a|b)\\.example\\.com # \"prod\" 'x'\n^https://SENTINEL.*\\.vercel\\.app$  "


def key(role: str, ref: str = REF) -> str:
    claims = {
        "iss": "supabase",
        "ref": ref,
        "role": role,
        "iat": 1700000000,
        "exp": 4102444800,
    }
    return jwt.encode(claims, SIGNING_KEY, algorithm="HS256")


def db_url(password: str = "Sentinel%23Pw%201%2F%3F%40") -> str:
    return f"postgresql://postgres:{password}@db.{REF}.supabase.co:5432/postgres?sslmode=require"


def good_values() -> dict[str, str]:
    return {
        "USE_DB": "true",
        "SUPABASE_URL": f"https://{REF}.supabase.co",
        "SUPABASE_JWT_AUD": "authenticated",
        "SUPABASE_ANON_KEY": key("anon"),
        "SUPABASE_SERVICE_ROLE_KEY": key("service_role"),
        "SUPABASE_DB_URL": db_url(),
        "SUPABASE_STORAGE_BUCKET_ATTACHMENTS": "attachments",
        "SUPABASE_STORAGE_BUCKET_BRANDING": "team's branding",
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_MODEL": "gpt-4o-mini",
        "WORKER_POLL_MS": "1000",
        "WORKER_BATCH": "5",
        "WORKER_ORG_ID": "5b8e7f2a-0c1d-4e5f-8a9b-0c1d2e3f4a5b",
        "OCTO_CORS_ORIGIN_REGEXES": TRICKY_REGEXES,
    }


def write_env(project, entries: dict[str, str]) -> None:
    """A .env as python-dotenv reads it: double quotes with escapes."""
    lines = []
    for name, value in entries.items():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'{name}="{escaped}"')
    (project / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")


def assert_no_secret_leaks(result, fly, entries: dict[str, str]) -> None:
    sentinels = [
        DB_PASSWORD,
        "Sentinel%23Pw",
        OPENAI_KEY,
        "SENTINEL",
        entries["SUPABASE_SERVICE_ROLE_KEY"],
    ]
    argv = json.dumps([call["argv"] for call in fly.calls()])
    for sentinel in sentinels:
        assert sentinel not in result.output
        assert sentinel not in argv


def test_validate_clean_env_exits_0(inv, project):
    write_env(project, good_values())

    result = inv("secrets.validate")

    assert result.code == 0, result.output
    assert "✓ SUPABASE_DB_URL: valid" in result.stderr
    assert "! WORKER_ORG_ID" in result.stderr


def test_validate_names_every_bad_value_with_its_fix_and_exits_1(inv, project):
    entries = good_values()
    entries.update(
        SUPABASE_DB_URL=db_url(DB_PASSWORD).replace("?sslmode=require", ""),
        SUPABASE_ANON_KEY=key("service_role"),
        SUPABASE_SERVICE_ROLE_KEY=key("anon"),
        OPENAI_API_KEY="sk-admin-SENTINEL" + "z" * 40,
        WORKER_POLL_MS="soon",
        WORKER_BATCH="0",
        USE_DB="maybe",
        SUPABASE_STORAGE_BUCKET_BRANDING="brand/assets",
    )
    del entries["OPENAI_MODEL"]
    write_env(project, entries)

    result = inv("secrets.validate")

    assert result.code == 1, result.output
    for name, reason in [
        ("SUPABASE_DB_URL", "raw space"),
        ("SUPABASE_ANON_KEY", "swapped"),
        ("SUPABASE_SERVICE_ROLE_KEY", "swapped"),
        ("OPENAI_API_KEY", "admin key"),
        ("OPENAI_MODEL", "is not set"),
        ("WORKER_POLL_MS", "whole number"),
        ("WORKER_BATCH", "outside"),
        ("USE_DB", "not a boolean"),
        ("SUPABASE_STORAGE_BUCKET_BRANDING", "not a valid bucket id"),
    ]:
        lines = [ln for ln in result.stderr.splitlines() if f"✗ {name}: " in ln]
        assert any(reason in ln for ln in lines), name
    assert result.stderr.count("fix: ") >= 9
    assert "SENTINEL" not in result.output
    assert DB_PASSWORD not in result.output


def test_push_stages_both_apps_through_stdin_with_values_intact(inv, project, fly):
    entries = good_values()
    write_env(project, entries)

    result = inv("secrets.push", "--yes")

    assert result.code == 0, result.output
    imports = [c for c in fly.calls() if c["command"] == "secrets import"]
    assert {c["argv"][c["argv"].index("--app") + 1] for c in imports} == {API, WORKER}
    assert all("--stage" in c["argv"] and c["stdin"] for c in imports)
    for name, value in entries.items():
        if name != "OCTO_CORS_ORIGIN_REGEXES":
            assert fly.secret_value(WORKER, name) == value, name
        if name not in ("WORKER_POLL_MS", "WORKER_BATCH", "WORKER_ORG_ID"):
            assert fly.secret_value(API, name) == value, name
    assert f"{WORKER}) changed" in result.stderr
    assert_no_secret_leaks(result, fly, entries)


def test_pushed_secrets_show_as_staged_and_in_step(inv, project, fly):
    entries = good_values()
    write_env(project, entries)
    inv("secrets.push", "--yes")

    result = inv("secrets.check")

    assert result.code == 0, result.output
    assert f"{API}) staged, not deployed" in result.stderr
    assert "hold the same value on every app" in result.stderr
    assert f"{API}) matches .env" in result.stderr
    assert "differs" not in result.output
    assert_no_secret_leaks(result, fly, entries)


def test_second_push_sends_nothing(inv, project, fly):
    write_env(project, good_values())
    inv("secrets.push", "--yes")
    imports_before = fly.commands().count("secrets import")

    result = inv("secrets.push", "--yes")

    assert result.code == 0, result.output
    assert "nothing to send" in result.stderr
    assert fly.commands().count("secrets import") == imports_before


def test_set_sends_only_the_chosen_name_to_the_apps_that_use_it(inv, project, fly):
    entries = good_values()
    write_env(project, entries)

    result = inv("secrets.set", "OCTO_CORS_ORIGIN_REGEXES,WORKER_BATCH", "--yes")

    assert result.code == 0, result.output
    assert fly.secret_value(API, "OCTO_CORS_ORIGIN_REGEXES") == TRICKY_REGEXES
    assert fly.secret_value(WORKER, "WORKER_BATCH") == "5"
    assert fly.secret_value(API, "USE_DB") == "v-USE_DB"
    assert_no_secret_leaks(result, fly, entries)


def test_set_now_applies_with_secrets_deploy(inv, project, fly):
    write_env(project, good_values())

    result = inv("secrets.set", "WORKER_BATCH", "--now", "--yes")

    assert result.code == 0, result.output
    assert "secrets deploy" in fly.commands()
    check = inv("secrets.check")
    assert "staged, not deployed" not in check.stderr


def test_push_refuses_invalid_values_and_sends_nothing(inv, project, fly):
    entries = good_values()
    entries["SUPABASE_DB_URL"] = db_url(DB_PASSWORD)
    write_env(project, entries)

    result = inv("secrets.push", "--yes")

    assert result.code == 1
    assert "refusing to send invalid values: SUPABASE_DB_URL" in result.stderr
    assert "secrets import" not in fly.commands()
    assert DB_PASSWORD not in result.output


def test_push_without_terminal_or_yes_is_a_usage_error(inv, project, fly):
    write_env(project, good_values())

    result = inv("secrets.push")

    assert result.code == 2
    assert "pass --yes" in result.stderr
    assert "secrets import" not in fly.commands()


def test_push_dry_run_shows_the_plan_and_changes_nothing(inv, project, fly):
    write_env(project, good_values())

    result = inv("secrets.push", "--dry-run")

    assert result.code == 0, result.output
    assert "would run: flyctl secrets import --app" in result.stderr
    assert "(values on stdin)" in result.stderr
    assert "secrets import" not in fly.commands()


def test_check_reports_digest_mismatch_between_apps(inv, project, fly):
    fly.update(
        lambda s: s["apps"][WORKER]["secrets"]["SUPABASE_DB_URL"].update(
            digest="0123456789abcdef"
        )
    )

    result = inv("secrets.check")

    assert result.code == 1
    assert "✗ SUPABASE_DB_URL differs between apps" in result.stderr
    assert "OPENAI_API_KEY differs" not in result.stderr


def test_check_reports_drift_from_env_by_recorded_digests(inv, project, fly):
    entries = good_values()
    write_env(project, entries)
    inv("secrets.push", "--yes")
    entries["WORKER_BATCH"] = "7"
    write_env(project, entries)
    fly.update(
        lambda s: s["apps"][API]["secrets"]["OPENAI_MODEL"].update(
            digest="fedcba9876543210"
        )
    )

    result = inv("secrets.check")

    assert f"{WORKER}) differs from .env: WORKER_BATCH" in result.stderr
    assert (
        f"{API}) set outside this tool, not comparable: OPENAI_MODEL" in result.stderr
    )
    assert "OPENAI_MODEL differs between apps" in result.stderr
    assert result.code == 1


@pytest.mark.parametrize("kind", ["direct", "session"])
def test_db_url_writes_env_keeping_other_lines(inv, project, kind):
    (project / ".env").write_text(
        f"# keep me\nSUPABASE_URL=https://{REF}.supabase.co\nSUPABASE_DB_URL=old\nUSE_DB=true\n",
        encoding="utf-8",
    )
    extra = (
        ["--pooler-host", "aws-0-eu-central-1.pooler.supabase.com"]
        if kind == "session"
        else []
    )

    result = inv("db.url", "--kind", kind, *extra, stdin="p@ss #!/?% w0rd\n")

    assert result.code == 0, result.output
    text = (project / ".env").read_text(encoding="utf-8")
    assert text.startswith(
        f"# keep me\nSUPABASE_URL=https://{REF}.supabase.co\nSUPABASE_DB_URL='postgresql://postgres"
    )
    assert "p%40ss%20%23%21%2F%3F%25%20w0rd@" in text
    assert text.endswith("?sslmode=require'\nUSE_DB=true\n")
    assert "w0rd" not in result.output
    assert ":****@" in result.stderr


def test_db_url_without_ref_is_a_usage_error(inv, project):
    result = inv("db.url", stdin="pw\n")

    assert result.code == 2
    assert "no project ref" in result.stderr


def test_validate_the_example_env_names_each_placeholder(inv, project):
    shutil.copy(REPO / ".env.example", project / ".env")

    result = inv("secrets.validate")

    assert result.code == 1
    for name in (
        "SUPABASE_URL",
        "SUPABASE_DB_URL",
        "SUPABASE_ANON_KEY",
        "SUPABASE_SERVICE_ROLE_KEY",
        "OPENAI_API_KEY",
    ):
        assert f"✗ {name}: still holds a placeholder" in result.stderr
    assert "WORKER_ORG_ID" not in result.stderr


def test_push_failing_on_one_app_says_the_other_already_holds_the_values(
    inv, fly, project
):
    write_env(project, good_values())
    fly.fault(
        "fail",
        {"secrets import": {"stderr": "Error: 500 internal error", "app": WORKER}},
    )

    result = inv("secrets.push", "--yes")

    assert result.code == 1
    assert f"sent to {API} already, not to {WORKER}" in result.stderr
    assert "run the same command again" in result.stderr
