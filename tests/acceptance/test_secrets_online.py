"""`inv secrets.test` against local stand-ins for OpenAI and Storage."""

from __future__ import annotations

import pytest
from fake_services import GOOD_OPENAI_KEY, GOOD_SERVICE_KEY, start


@pytest.fixture
def services():
    server = start()
    yield server
    server.shutdown()
    server.server_close()


def write_env(project, services, **overrides: str) -> None:
    entries = {
        "SUPABASE_URL": services.url,
        "SUPABASE_SERVICE_ROLE_KEY": GOOD_SERVICE_KEY,
        "SUPABASE_STORAGE_BUCKET_ATTACHMENTS": "attachments",
        "SUPABASE_STORAGE_BUCKET_BRANDING": "team's branding",
        "OPENAI_API_KEY": GOOD_OPENAI_KEY,
        "OPENAI_MODEL": "gpt-4o-mini",
        **overrides,
    }
    text = "".join(f'{k}="{v}"\n' for k, v in entries.items() if v)
    (project / ".env").write_text(text, encoding="utf-8")


def run_test(inv, services):
    return inv(
        "secrets.test",
        env={
            "INVOKE_OCTO_OPENAI_BASE_URL": services.url + "/v1",
            "INVOKE_OCTO_PROBE_TIMEOUT": "5",
        },
    )


def test_secrets_test_passes_with_good_values(inv, project, services):
    write_env(project, services)

    result = run_test(inv, services)

    assert result.code == 0, result.output
    assert "- database: SUPABASE_DB_URL is not set" in result.stderr
    assert "✓ OpenAI (OPENAI_API_KEY, OPENAI_MODEL): key accepted" in result.stderr
    assert result.stderr.count("the bucket exists") == 2
    assert GOOD_OPENAI_KEY not in result.output
    assert GOOD_SERVICE_KEY not in result.output


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            {"OPENAI_API_KEY": "sk-proj-" + "w" * 60},
            "OpenAI rejects the key",
            id="bad-openai-key",
        ),
        pytest.param(
            {"OPENAI_MODEL": "gpt-foo"}, "model does not exist", id="unknown-model"
        ),
        pytest.param(
            {"SUPABASE_STORAGE_BUCKET_BRANDING": "branding"},
            "the bucket does not exist",
            id="missing-bucket",
        ),
        pytest.param(
            {"SUPABASE_SERVICE_ROLE_KEY": "sb_secret_wrongWRONGwrong_12345678"},
            "wrong project or revoked key",
            id="foreign-service-key",
        ),
    ],
)
def test_secrets_test_reports_each_failure_with_a_fix(
    inv, project, services, overrides, expected
):
    write_env(project, services, **overrides)

    result = run_test(inv, services)

    assert result.code == 1
    assert expected in result.stderr
    assert "fix: " in result.stderr
    for value in overrides.values():
        assert value not in result.output


def test_secrets_test_skips_what_is_not_set(inv, project, services):
    (project / ".env").write_text("USE_DB=true\n", encoding="utf-8")

    result = run_test(inv, services)

    assert result.code == 0, result.output
    assert "- OpenAI: OPENAI_API_KEY and OPENAI_MODEL not set" in result.stderr
    assert "- storage buckets:" in result.stderr
    assert services.requests == []


def test_a_value_that_fails_validation_is_not_tried(inv, project, services):
    admin_key = "sk-admin-" + "a" * 40 + "T3BlbkFJ" + "b" * 40
    write_env(project, services, OPENAI_API_KEY=admin_key)

    result = run_test(inv, services)

    assert result.code == 1
    assert "✗ OpenAI: not tried: OPENAI_API_KEY fails validation" in result.stderr
    assert not [path for path, _ in services.requests if "/models" in path]
    assert admin_key not in result.output
