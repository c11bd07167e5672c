"""The .env value validators (tasks/values.py), case by case."""

from __future__ import annotations

import time

import jwt
import pytest
from psycopg.conninfo import conninfo_to_dict

from tasks import values
from tasks.settings import Secret

REF = "abcdefghijklmnopqrst"
OTHER_REF = "zyxwvutsrqponmlkjihg"
SUPABASE_URL = f"https://{REF}.supabase.co"
DIRECT = f"db.{REF}.supabase.co"
POOLER = "aws-0-eu-central-1.pooler.supabase.com"
# HS256 keys shorter than 32 bytes make PyJWT warn; warnings are errors here.
SIGNING_KEY = "test-only-jwt-secret-with-at-least-32-characters"
NOW = 1_800_000_000


def run(
    overrides: dict[str, str], *, has_ipv6: bool | None = None
) -> list[values.Finding]:
    merged = {"SUPABASE_URL": SUPABASE_URL, **overrides}
    return values.validate(
        {k: Secret(v) for k, v in merged.items()}, has_ipv6=has_ipv6, now=NOW
    )


def reasons(findings: list[values.Finding], name: str, severity: str) -> str:
    return " | ".join(
        f.reason for f in findings if f.name == name and f.severity == severity
    )


# --- SUPABASE_DB_URL ---------------------------------------------------------------

DB_CASES = [
    # id, url, error expected (substring or None), warning expected (or None)
    (
        "direct",
        f"postgresql://postgres:S3cret@{DIRECT}:5432/postgres?sslmode=require",
        None,
        None,
    ),
    (
        "postgres-scheme",
        f"postgres://postgres:S3cret@{DIRECT}:5432/postgres?sslmode=require",
        None,
        None,
    ),
    (
        "session-pooler",
        f"postgresql://postgres.{REF}:S3cret@{POOLER}:5432/postgres?sslmode=require",
        None,
        None,
    ),
    (
        "transaction-pooler",
        f"postgresql://postgres.{REF}:S3cret@{POOLER}:6543/postgres?sslmode=require",
        None,
        "6543",
    ),
    (
        "dedicated-pooler",
        f"postgresql://postgres:S3cret@{DIRECT}:6543/postgres?sslmode=require",
        None,
        "prepared statements",
    ),
    (
        "encoded-specials",
        f"postgresql://postgres:p%40ss%2Fw%3Ard%23%3F%20%21%25@{DIRECT}:5432/postgres?sslmode=require",
        None,
        None,
    ),
    (
        "verify-full",
        f"postgresql://postgres:S3cret@{DIRECT}:5432/postgres?sslmode=verify-full",
        None,
        None,
    ),
    (
        "raw-at",
        f"postgresql://postgres:p@ss@{DIRECT}:5432/postgres?sslmode=require",
        "disagree",
        None,
    ),
    (
        "raw-slash",
        f"postgresql://postgres:pa/ss@{DIRECT}:5432/postgres?sslmode=require",
        "disagree",
        None,
    ),
    (
        "raw-hash",
        f"postgresql://postgres:pa#ss@{DIRECT}:5432/postgres?sslmode=require",
        "disagree",
        None,
    ),
    (
        "raw-question",
        f"postgresql://postgres:pa?ss@{DIRECT}:5432/postgres?sslmode=require",
        "disagree",
        None,
    ),
    (
        "raw-space",
        f"postgresql://postgres:pa ss@{DIRECT}:5432/postgres?sslmode=require",
        "raw space",
        None,
    ),
    (
        "raw-bracket",
        f"postgresql://postgres:pa]ss@{DIRECT}:5432/postgres?sslmode=require",
        "disagree",
        None,
    ),
    (
        "bad-percent",
        f"postgresql://postgres:pa%zzss@{DIRECT}:5432/postgres?sslmode=require",
        "valid escape",
        None,
    ),
    (
        "lone-percent",
        f"postgresql://postgres:100%@{DIRECT}:5432/postgres?sslmode=require",
        "valid escape",
        None,
    ),
    (
        "placeholder-dashboard",
        f"postgresql://postgres:[YOUR-PASSWORD]@{DIRECT}:5432/postgres?sslmode=require",
        "placeholder",
        None,
    ),
    (
        "placeholder-runbook",
        "postgresql://postgres:<ENCODED_PASSWORD>@db.<project-ref>.supabase.co:5432/postgres?sslmode=require",
        "placeholder",
        None,
    ),
    (
        "no-sslmode",
        f"postgresql://postgres:S3cret@{DIRECT}:5432/postgres",
        "no sslmode",
        None,
    ),
    (
        "sslmode-prefer",
        f"postgresql://postgres:S3cret@{DIRECT}:5432/postgres?sslmode=prefer",
        "weaker",
        None,
    ),
    (
        "sslmode-disable",
        f"postgresql://postgres:S3cret@{DIRECT}:5432/postgres?sslmode=disable",
        "weaker",
        None,
    ),
    (
        "no-database",
        f"postgresql://postgres.{REF}:S3cret@{POOLER}:5432?sslmode=require",
        "no database",
        None,
    ),
    (
        "no-password",
        f"postgresql://postgres@{DIRECT}:5432/postgres?sslmode=require",
        "no password",
        None,
    ),
    (
        "pooler-bare-user",
        f"postgresql://postgres:S3cret@{POOLER}:5432/postgres?sslmode=require",
        "postgres.<ref>",
        None,
    ),
    (
        "pooler-bad-ref",
        f"postgresql://postgres.abc:S3cret@{POOLER}:5432/postgres?sslmode=require",
        "20-letter",
        None,
    ),
    (
        "direct-pooler-user",
        f"postgresql://postgres.{REF}:S3cret@{DIRECT}:5432/postgres?sslmode=require",
        "wants the user postgres",
        None,
    ),
    (
        "direct-other-project",
        f"postgresql://postgres:S3cret@db.{OTHER_REF}.supabase.co:5432/postgres?sslmode=require",
        "another Supabase project",
        None,
    ),
    (
        "pooler-other-project",
        f"postgresql://postgres.{OTHER_REF}:S3cret@{POOLER}:5432/postgres?sslmode=require",
        "another Supabase project",
        None,
    ),
    (
        "pooler-odd-port",
        f"postgresql://postgres.{REF}:S3cret@{POOLER}:5433/postgres?sslmode=require",
        "neither 5432",
        None,
    ),
    (
        "sqlalchemy-scheme",
        f"postgresql+psycopg://postgres:S3cret@{DIRECT}:5432/postgres",
        "must start with postgresql://",
        None,
    ),
    (
        "prisma-parameter",
        f"postgresql://postgres:S3cret@{DIRECT}:5432/postgres?sslmode=require&pgbouncer=true",
        "query parameter",
        None,
    ),
    (
        "custom-host",
        "postgresql://app:S3cret@db.example.com:5432/app?sslmode=require",
        None,
        "not a Supabase database host",
    ),
]


@pytest.mark.parametrize(
    ("url", "error", "warning"),
    [pytest.param(url, err, warn, id=case) for case, url, err, warn in DB_CASES],
)
def test_db_url_verdicts(url, error, warning):
    findings = run({"SUPABASE_DB_URL": url}, has_ipv6=True)

    errors = reasons(findings, "SUPABASE_DB_URL", values.ERROR)
    warnings = reasons(findings, "SUPABASE_DB_URL", values.WARNING)
    if error is None:
        assert errors == ""
    else:
        assert error in errors
    if warning is not None:
        assert warning in warnings


def test_db_url_direct_host_without_ipv6_warns():
    url = f"postgresql://postgres:S3cret@{DIRECT}:5432/postgres?sslmode=require"

    findings = run({"SUPABASE_DB_URL": url}, has_ipv6=False)

    assert "IPv6-only" in reasons(findings, "SUPABASE_DB_URL", values.WARNING)
    assert not values.errors(findings)


def test_db_url_findings_never_quote_the_password():
    password = "Zq9-unique-pw"
    for url in (
        f"postgresql://postgres:{password}@ss@{DIRECT}/postgres",
        f"postgresql://postgres:{password} x@{DIRECT}/postgres",
        f"postgresql://postgres:{password}%zz@{DIRECT}/postgres",
    ):
        findings = run({"SUPABASE_DB_URL": url})

        assert findings
        assert all(password not in f.reason + f.fix for f in findings)


@pytest.mark.parametrize(
    "password",
    ["p@ss #!/?% w0rd", "plain", "ünïcødé", "a:b;c=d&e+f", "[YOUR]", "%41", "'\"\\"],
)
def test_build_db_url_round_trips_through_libpq(password):
    url = values.build_db_url(
        user="postgres", password=password, host=DIRECT, port=5432
    )

    parsed = conninfo_to_dict(url)

    assert parsed["password"] == password
    assert parsed["user"] == "postgres"
    assert parsed["dbname"] == "postgres"
    assert parsed["sslmode"] == "require"
    assert values.urllib_parts(url) == values.libpq_parts(url)[0]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        pytest.param("direct", ("postgres", DIRECT, 5432), id="direct"),
        pytest.param("session", (f"postgres.{REF}", POOLER, 5432), id="session"),
        pytest.param(
            "transaction", (f"postgres.{REF}", POOLER, 6543), id="transaction"
        ),
    ],
)
def test_supabase_endpoint_per_kind(kind, expected):
    assert values.supabase_endpoint(kind, REF, POOLER) == expected


def test_supabase_endpoint_pooler_needs_its_host():
    with pytest.raises(ValueError, match="pooler host"):
        values.supabase_endpoint("session", REF)


def test_built_urls_pass_validation():
    for kind in values.HOST_KINDS:
        user, host, port = values.supabase_endpoint(kind, REF, POOLER)
        url = values.build_db_url(
            user=user, password="p@ss #!/?% w0rd", host=host, port=port
        )

        findings = run({"SUPABASE_DB_URL": url}, has_ipv6=True)

        assert not values.errors(findings), kind


def test_mask_db_url_hides_the_password():
    url = values.build_db_url(
        user="postgres", password="s3cr3t", host=DIRECT, port=5432
    )

    assert (
        values.mask_db_url(url)
        == f"postgresql://postgres:****@{DIRECT}:5432/postgres?sslmode=require"
    )


# --- SUPABASE_URL -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "error", "warning"),
    [
        pytest.param(SUPABASE_URL, None, None, id="project-url"),
        pytest.param(SUPABASE_URL + "/", None, None, id="trailing-slash"),
        pytest.param(f"http://{REF}.supabase.co", "https://", None, id="http"),
        pytest.param(SUPABASE_URL + "/rest/v1", "path", None, id="with-path"),
        pytest.param("https://abc.supabase.co", "20 lower-case", None, id="short-ref"),
        pytest.param(
            "https://api.example.com", None, "custom domain", id="custom-domain"
        ),
        pytest.param(
            "https://<project-ref>.supabase.co", "placeholder", None, id="placeholder"
        ),
    ],
)
def test_supabase_url_verdicts(url, error, warning):
    findings = run({"SUPABASE_URL": url})

    errors = reasons(findings, "SUPABASE_URL", values.ERROR)
    assert (error in errors) if error else errors == ""
    if warning:
        assert warning in reasons(findings, "SUPABASE_URL", values.WARNING)


# --- API keys ----------------------------------------------------------------------


def make_key(
    role: str, ref: str | None = REF, exp: int = NOW + 3600, iss: str = "supabase"
) -> str:
    claims = {"iss": iss, "role": role, "iat": NOW - 3600, "exp": exp}
    if ref is not None:
        claims["ref"] = ref
    return jwt.encode(claims, SIGNING_KEY, algorithm="HS256")


ANON, SERVICE = make_key("anon"), make_key("service_role")
KEY_CASES = [
    # id, anon, service, {name: error substring}, {name: warning substring}
    ("legacy-pair", ANON, SERVICE, {}, {}),
    (
        "new-pair",
        "sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH",
        "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz",
        {},
        {},
    ),
    ("mixed-kinds", ANON, "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz", {}, {}),
    (
        "swapped",
        SERVICE,
        ANON,
        {"SUPABASE_ANON_KEY": "swapped", "SUPABASE_SERVICE_ROLE_KEY": "swapped"},
        {},
    ),
    ("anon-in-both", ANON, ANON, {"SUPABASE_SERVICE_ROLE_KEY": "role 'anon'"}, {}),
    (
        "other-project",
        make_key("anon", OTHER_REF),
        make_key("service_role", OTHER_REF),
        {
            "SUPABASE_ANON_KEY": "another project",
            "SUPABASE_SERVICE_ROLE_KEY": "another project",
        },
        {},
    ),
    (
        "expired",
        make_key("anon", exp=NOW - 1),
        SERVICE,
        {"SUPABASE_ANON_KEY": "expired"},
        {},
    ),
    (
        "no-ref",
        make_key("anon", None),
        SERVICE,
        {},
        {"SUPABASE_ANON_KEY": "no project ref"},
    ),
    (
        "self-hosted-issuer",
        make_key("anon", iss="supabase-demo"),
        SERVICE,
        {},
        {"SUPABASE_ANON_KEY": "not issued by Supabase"},
    ),
    (
        "secret-in-public-slot",
        "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz",
        SERVICE,
        {"SUPABASE_ANON_KEY": "secret key"},
        {},
    ),
    (
        "publishable-in-service-slot",
        ANON,
        "sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH",
        {"SUPABASE_SERVICE_ROLE_KEY": "publishable key"},
        {},
    ),
    ("not-a-key", "hello-world", SERVICE, {"SUPABASE_ANON_KEY": "neither a JWT"}, {}),
    (
        "truncated-jwt",
        ANON[: ANON.rindex(".")],
        SERVICE,
        {"SUPABASE_ANON_KEY": "neither a JWT"},
        {},
    ),
    (
        "line-break",
        ANON + "\n",
        SERVICE,
        {"SUPABASE_ANON_KEY": "spaces or line breaks"},
        {},
    ),
]


@pytest.mark.parametrize(
    ("anon", "service", "errors", "warnings"),
    [pytest.param(a, s, e, w, id=case) for case, a, s, e, w in KEY_CASES],
)
def test_key_verdicts(anon, service, errors, warnings):
    findings = run({"SUPABASE_ANON_KEY": anon, "SUPABASE_SERVICE_ROLE_KEY": service})

    for name in ("SUPABASE_ANON_KEY", "SUPABASE_SERVICE_ROLE_KEY"):
        found = reasons(findings, name, values.ERROR)
        if name in errors:
            assert errors[name] in found
        else:
            assert found == ""
        if name in warnings:
            assert warnings[name] in reasons(findings, name, values.WARNING)


# --- the other names ------------------------------------------------------------------

OTHER_CASES = [
    ("OPENAI_API_KEY", "sk-proj-" + "A1b2" * 20 + "T3BlbkFJ" + "x9Y8" * 20, None, None),
    ("OPENAI_API_KEY", "sk-svcacct-" + "A1b2" * 30, None, None),
    ("OPENAI_API_KEY", "sk-admin-" + "A1b2" * 30, "admin key", None),
    ("OPENAI_API_KEY", "YOUR_OPENAI_KEY", "placeholder", None),
    (
        "OPENAI_API_KEY",
        "AIzaSyA-google-key-1234567890",
        "no known OpenAI key prefix",
        None,
    ),
    ("OPENAI_API_KEY", "sk-proj-abc def" + "x" * 20, "spaces", None),
    ("OPENAI_MODEL", "gpt-4o-mini", None, None),
    ("OPENAI_MODEL", "gpt 4o", "not a model id", None),
    ("SUPABASE_JWT_AUD", "authenticated", None, None),
    ("SUPABASE_JWT_AUD", "anon", None, "not authenticated"),
    ("USE_DB", "true", None, None),
    ("USE_DB", "False", None, None),
    ("USE_DB", "maybe", "not a boolean", None),
    ("WORKER_POLL_MS", "1000", None, None),
    ("WORKER_POLL_MS", "1s", "whole number", None),
    ("WORKER_POLL_MS", "0", "outside", None),
    ("WORKER_POLL_MS", "86400000", "outside", None),
    ("WORKER_BATCH", "5", None, None),
    ("WORKER_BATCH", "-1", "outside", None),
    ("WORKER_ORG_ID", "5b8e7f2a-0c1d-4e5f-8a9b-0c1d2e3f4a5b", None, "one organisation"),
    ("WORKER_ORG_ID", "acme", "not a UUID", "one organisation"),
    ("SUPABASE_STORAGE_BUCKET_ATTACHMENTS", "attachments", None, None),
    ("SUPABASE_STORAGE_BUCKET_BRANDING", "brand/assets", "not a valid bucket id", None),
    ("SUPABASE_STORAGE_BUCKET_BRANDING", " branding", "not a valid bucket id", None),
]


@pytest.mark.parametrize(
    ("name", "value", "error", "warning"),
    [
        pytest.param(n, v, e, w, id=f"{n}-{'bad' if e else 'ok'}-{i}")
        for i, (n, v, e, w) in enumerate(OTHER_CASES)
    ],
)
def test_other_value_verdicts(name, value, error, warning):
    findings = run({name: value})

    errors = reasons(findings, name, values.ERROR)
    assert (error in errors) if error else errors == ""
    if warning:
        assert warning in reasons(findings, name, values.WARNING)


def test_validate_limits_report_to_chosen_names_but_uses_context():
    url = f"postgresql://postgres:S3cret@db.{OTHER_REF}.supabase.co:5432/postgres?sslmode=require"
    secrets = {
        "SUPABASE_URL": Secret(SUPABASE_URL),
        "SUPABASE_DB_URL": Secret(url),
        "USE_DB": Secret("maybe"),
    }

    findings = values.validate(secrets, names=("SUPABASE_DB_URL",), now=NOW)

    assert {f.name for f in findings} == {"SUPABASE_DB_URL"}
    assert "another Supabase project" in reasons(findings, "SUPABASE_DB_URL", "error")


def test_validate_uses_the_clock_for_expiry():
    key = make_key("anon", exp=int(time.time()) - 10)

    findings = values.validate({"SUPABASE_ANON_KEY": Secret(key)})

    assert "expired" in reasons(findings, "SUPABASE_ANON_KEY", values.ERROR)


# --- .env lines -----------------------------------------------------------------------


def test_replace_env_line_keeps_the_other_lines():
    text = "# comment\nA=1\nSUPABASE_DB_URL=old\nB='two'\n"

    result = values.replace_env_line(text, "SUPABASE_DB_URL", "postgresql://x%40y@h/db")

    assert (
        result == "# comment\nA=1\nSUPABASE_DB_URL='postgresql://x%40y@h/db'\nB='two'\n"
    )


def test_replace_env_line_appends_when_absent():
    assert values.replace_env_line("A=1", "B", "v\\1") == "A=1\nB='v\\1'\n"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://postgres:old@db.{REF}.supabase.co:5432/postgres?sslmode=require",
        f"postgresql://postgres.{REF}:old%40pw@aws-0-eu-central-1.pooler.supabase.com"
        ":6543/postgres?sslmode=verify-full&connect_timeout=10",
    ],
    ids=["direct", "pooler-with-params"],
)
def test_with_password_changes_only_the_password(url):
    rotated = values.with_password(url, "n3w@#/? pw")

    before, after = conninfo_to_dict(url), conninfo_to_dict(rotated)
    assert after.pop("password") == "n3w@#/? pw"
    before.pop("password")
    assert after == before
    assert values.urllib_parts(rotated).password == "n3w@#/? pw"


def test_with_password_refuses_an_unreadable_url_without_quoting_it():
    with pytest.raises(ValueError) as caught:
        values.with_password("postgresql://post gres:se cret@", "new")

    assert "se cret" not in str(caught.value)


@pytest.mark.parametrize(
    "password",
    ["Pa@ss#Wd9SENTINEL", "a@b@SENTINEL", "SENT?INEL@x", "p/SENTINEL@q#r", "@SENTINEL"],
)
def test_no_finding_quotes_part_of_an_unencoded_password(password):
    url = f"postgresql://postgres:{password}@db.{REF}.supabase.co:5432/postgres?sslmode=require"

    findings = values.check_db_url(url, ref=REF)

    assert findings
    for finding in findings:
        assert "SENTINEL" not in finding.reason + finding.fix
