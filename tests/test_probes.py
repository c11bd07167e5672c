"""The online checks' judges and error classification (tasks/probes.py)."""

from __future__ import annotations

import json

import pytest
from fake_services import (
    BAD_KEY,
    GOOD_OPENAI_KEY,
    GOOD_SERVICE_KEY,
    NO_BUCKET,
    NO_MODEL,
    start,
)

from tasks import probes
from tasks.diagnose import diagnose
from tasks.settings import Secret


@pytest.fixture
def services():
    server = start()
    yield server
    server.shutdown()
    server.server_close()


# The reference's recorded and composed failure texts, with what they mean.
DB_ERRORS = [
    (
        "supavisor-new-not-found",
        'connection failed: connection to server at "3.120.0.10", port 6543 failed: FATAL:  (ENOTFOUND) tenant/user postgres.abcdefghijklmnopqrst not found',
        "db-tenant-not-found",
    ),
    (
        "supavisor-old-not-found",
        'connection failed: connection to server at "3.120.0.10", port 6543 failed: FATAL:  Tenant or user not found',
        "db-tenant-not-found",
    ),
    (
        "no-tenant-identifier",
        'connection failed: connection to server at "3.120.0.10", port 6543 failed: FATAL:  (ENOIDENTIFIER) no tenant identifier provided (external_id or sni_hostname required)',
        "db-no-tenant-identifier",
    ),
    (
        "wrong-password",
        'connection failed: connection to server at "3.120.0.10", port 6543 failed: FATAL:  password authentication failed for user "postgres"',
        "db-password-failed",
    ),
    (
        "invalid-user-format",
        'connection failed: connection to server at "3.120.0.10", port 5432 failed: FATAL:  (EINVALIDUSERINFO) Authentication error, reason: "Invalid format for user or db_name"',
        "db-invalid-user-format",
    ),
    (
        "circuit-breaker",
        'connection failed: connection to server at "3.120.0.10", port 6543 failed: FATAL:  (ECIRCUITBREAKER) too many authentication failures, new connections are temporarily blocked',
        "db-circuit-breaker",
    ),
    (
        "ipv6-unreachable",
        'connection failed: connection to server at "2a05:d014:1c06:5f0c:d7a9:8616:bee2:30df", port 5432 failed: Network is unreachable\n\tIs the server running on that host and accepting TCP/IP connections?',
        "db-ipv6-unreachable",
    ),
    (
        "dns",
        "failed to resolve host 'db.abcdefghijklmnopqrst.supabase.co': [Errno -2] Name or service not known",
        "db-host-unknown",
    ),
    (
        "ssl-required-pooler",
        "FATAL:  (ESSLREQUIRED) SSL connection is required for user: postgres.abcdefghijklmnopqrst",
        "db-ssl-required",
    ),
    (
        "ssl-required-direct",
        'FATAL:  no pg_hba.conf entry for host "1.2.3.4", user "postgres", database "postgres", SSL off',
        "db-ssl-required",
    ),
    (
        "no-password",
        "connection failed: fe_sendauth: no password supplied",
        "db-no-password",
    ),
    (
        "missing-database",
        'FATAL:  database "postgres.abcdefghijklmnopqrst" does not exist',
        "db-database-missing",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in DB_ERRORS]
)
def test_database_errors_are_diagnosed(text, expected):
    assert [f.id for f in diagnose(text, "db")] == [expected]


def test_scrub_hides_raw_and_encoded_password():
    text = "user x password p@ss/1 or p%40ss%2F1 was wrong"

    assert (
        probes.scrub(text, ["p@ss/1"])
        == "user x password [REDACTED] or [REDACTED] was wrong"
    )


@pytest.mark.parametrize(
    ("status", "body", "verdict", "words"),
    [
        pytest.param(
            200,
            {"id": "gpt-4o-mini", "object": "model"},
            probes.OK,
            "available",
            id="ok",
        ),
        pytest.param(401, BAD_KEY, probes.FAILED, "rejects the key", id="bad-key"),
        pytest.param(404, NO_MODEL, probes.FAILED, "does not exist", id="no-model"),
        pytest.param(
            403,
            {
                "error": {
                    "message": "You have insufficient permissions for this operation. Missing scopes: api.model.read.",
                    "code": None,
                }
            },
            probes.WARNING,
            "cannot be verified",
            id="missing-scope",
        ),
        pytest.param(
            429,
            {"error": {"code": "rate_limit_exceeded"}},
            probes.WARNING,
            "rate limited",
            id="rate-limited",
        ),
        pytest.param(
            502,
            "<html>bad gateway</html>",
            probes.WARNING,
            "could not check",
            id="gateway",
        ),
    ],
)
def test_judge_openai(status, body, verdict, words):
    text = body if isinstance(body, str) else json.dumps(body)

    got, evidence, _ = probes.judge_openai(status, text)

    assert got == verdict
    assert words in evidence
    assert "sk-proj" not in evidence


@pytest.mark.parametrize(
    ("status", "body", "verdict", "words"),
    [
        pytest.param(200, {"id": "attachments"}, probes.OK, "exists", id="ok"),
        pytest.param(400, NO_BUCKET, probes.FAILED, "does not exist", id="missing"),
        pytest.param(
            400,
            {
                "statusCode": "403",
                "code": "AccessDenied",
                "error": "Unauthorized",
                "message": "invalid signature",
            },
            probes.FAILED,
            "rejects the service key",
            id="bad-jwt",
        ),
        pytest.param(
            401,
            {"message": "Invalid API key"},
            probes.FAILED,
            "Invalid API key",
            id="gateway-bad-key",
        ),
        pytest.param(500, {}, probes.WARNING, "could not check", id="server-error"),
    ],
)
def test_judge_bucket(status, body, verdict, words):
    got, evidence, _ = probes.judge_bucket(status, json.dumps(body))

    assert got == verdict
    assert words in evidence


def test_probe_openai_sends_the_key_in_a_header_only(services):
    with probes.http_client(5) as client:
        outcome = probes.probe_openai(
            client, services.url + "/v1", Secret(GOOD_OPENAI_KEY), "gpt-4o-mini"
        )

    path, headers = services.requests[-1]
    assert outcome.verdict == probes.OK
    assert path == "/v1/models/gpt-4o-mini"
    assert headers["Authorization"] == f"Bearer {GOOD_OPENAI_KEY}"


def test_probe_bucket_sends_new_keys_as_apikey_only(services):
    with probes.http_client(5) as client:
        outcome = probes.probe_bucket(
            client,
            services.url,
            Secret(GOOD_SERVICE_KEY),
            "SUPABASE_STORAGE_BUCKET_X",
            "team's branding",
        )

    path, headers = services.requests[-1]
    assert outcome.verdict == probes.OK
    assert path == "/storage/v1/bucket/team%27s%20branding"
    assert headers["apikey"] == GOOD_SERVICE_KEY
    assert "Authorization" not in headers


def test_probe_database_skips_a_url_the_parsers_disagree_on():
    outcome = probes.probe_database(
        Secret("postgresql://postgres:p@ss@db.example.com:5432/postgres"), timeout=1
    )

    assert outcome.verdict == probes.SKIPPED
    assert "p@ss" not in outcome.evidence
