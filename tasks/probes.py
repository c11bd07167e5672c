"""Try the secrets against the real services, once each, at no cost.

The database gets one connection attempt and `select 1`: Supabase bans an
address after repeated wrong passwords, so nothing here retries. OpenAI is
asked about the model (a free GET); Storage about each bucket. Answers are
judged by pure functions below; what the services said is classified with
`failures.toml`, never echoed with a secret in it.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tasks.diagnose import Failure, diagnose
from tasks.values import libpq_parts, urllib_parts

if TYPE_CHECKING:
    import httpx

    from tasks.settings import Secret

log = logging.getLogger(__name__)

OK, FAILED, WARNING, SKIPPED = "ok", "failed", "warning", "skipped"
USER_AGENT = "octo-release (runbook sections 2-3: secrets.test)"
# A public resolver's address: connecting a UDP socket to it only asks the
# routing table, no packet is sent.
IPV6_PROBE_ADDRESS = ("2001:4860:4860::8888", 53)


@dataclass(frozen=True)
class Outcome:
    subject: str
    verdict: str
    evidence: str
    diagnoses: tuple[Failure, ...] = field(default=())
    fix: str = ""


def has_ipv6_route() -> bool:
    """Whether this machine could send to a public IPv6 address."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.connect(IPV6_PROBE_ADDRESS)
        return True
    except OSError:
        return False


# --- database -----------------------------------------------------------------


def scrub(text: str, secrets: list[str]) -> str:
    """TEXT with every secret (raw or percent-encoded) replaced by a marker."""
    for secret in secrets:
        if secret:
            for form in {secret, quote(secret, safe="")}:
                text = text.replace(form, "[REDACTED]")
    return text


def unparsable(url: str) -> bool:
    """Whether libpq cannot read URL, or reads it unlike a URL parser."""
    parsed, _, error = libpq_parts(url)
    return bool(error) or parsed is None or urllib_parts(url) != parsed


def probe_database(url: Secret, *, timeout: float, ipv6: bool | None = None) -> Outcome:
    """Connect once with URL and run `select 1`."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    subject = "database (SUPABASE_DB_URL)"
    if unparsable(url.reveal()):
        # A mis-encoded password spills into the host or user, where it would
        # be sent to DNS and quoted in errors; and the attempt would be wasted.
        return Outcome(
            subject,
            SKIPPED,
            "libpq and URL parsers read the URL differently, so it was not tried",
            fix="run `inv secrets.validate` and fix SUPABASE_DB_URL first",
        )
    params = conninfo_to_dict(url.reveal())
    password = str(params.get("password") or "")
    host, port = str(params.get("host") or ""), str(params.get("port") or "5432")

    overrides: dict[str, Any] = {
        "connect_timeout": max(1, round(timeout)),
        "gssencmode": "disable",
    }
    note = ""
    # prefer/allow make libpq try a second time without TLS after a failure:
    # two password attempts where one was meant.
    if str(params.get("sslmode") or "prefer") in ("prefer", "allow"):
        overrides["sslmode"] = "require"
        note = " (tried with sslmode=require)"

    if host and not host.startswith("/") and not params.get("hostaddr"):
        address, outcome = _pick_address(subject, host, port, ipv6)
        if outcome is not None:
            return outcome
        overrides["hostaddr"] = address

    try:
        with psycopg.connect(url.reveal(), autocommit=True, **overrides) as conn:
            conn.execute("select 1").fetchone()
            version = conn.info.server_version
    except psycopg.Error as exc:
        found = diagnose(str(exc), "db")
        message = scrub(str(exc), [password])
        log.debug("database probe failed: %s", message)
        first = " ".join(message.strip().splitlines()[:1])[:240]
        return Outcome(subject, FAILED, first + note, found)
    major, minor = divmod(version, 10000)
    return Outcome(
        subject, OK, f"select 1 answered by PostgreSQL {major}.{minor}{note}"
    )


def _pick_address(
    subject: str, host: str, port: str, ipv6: bool | None
) -> tuple[str, Outcome | None]:
    """One address to connect to, so that a name with several means one try."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        message = f"failed to resolve host {host!r}: {exc}"
        return "", Outcome(subject, FAILED, message, diagnose(message, "db"))
    v4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
    v6 = [i[4][0] for i in infos if i[0] == socket.AF_INET6]
    if not v4 and v6 and ipv6 is False:
        return "", Outcome(
            subject,
            SKIPPED,
            f"{host} has IPv6 addresses only and this machine has no IPv6 route; "
            "Fly machines do, so the app may still connect",
            fix="to test from here, use a session pooler URL (`inv db.url --kind session`)",
        )
    return (v4 or v6)[0], None


# --- HTTP answers (pure) ------------------------------------------------------


def _json(body: str) -> Any:
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        return None


def judge_openai(status: int, body: str) -> tuple[str, str, str]:
    """Verdict, evidence and fix for GET /models/{model}.

    Matched on status and error code, never on message text: the message
    quotes part of the key.
    """
    data = _json(body)
    error = data.get("error") if isinstance(data, Mapping) else None
    code = error.get("code") if isinstance(error, Mapping) else None
    message = str(error.get("message", "")) if isinstance(error, Mapping) else ""
    new_key = "create a key at https://platform.openai.com/api-keys, put it in .env, then `inv secrets.set OPENAI_API_KEY`"
    if status == 200:
        return OK, "key accepted; the OPENAI_MODEL model is available", ""
    if status in (401, 403) and (
        "missing scopes" in message.lower()
        or "insufficient permissions" in message.lower()
    ):
        return (
            WARNING,
            f"HTTP {status}: the key lacks the Models: Read scope, so it cannot be verified",
            "give the key Models: Read, or check by hand",
        )
    if status == 401:
        return (
            FAILED,
            f"HTTP 401 {code or 'unauthorized'}: OpenAI rejects the key",
            new_key,
        )
    if status == 404:
        return (
            FAILED,
            f"HTTP 404 {code or 'not found'}: the OPENAI_MODEL model does not exist or this key cannot use it",
            "pick a model from GET /v1/models and set OPENAI_MODEL",
        )
    if status == 429:
        return (
            WARNING,
            "HTTP 429: rate limited, so nothing was verified",
            "retry in a minute",
        )
    return (
        WARNING,
        f"HTTP {status}: could not check",
        "retry; check https://status.openai.com",
    )


def judge_bucket(status: int, body: str) -> tuple[str, str, str]:
    """Verdict, evidence and fix for GET /storage/v1/bucket/{id}.

    Storage answers HTTP 400 for every client error and puts the real status,
    as a string, in the body's `statusCode`.
    """
    data = _json(body)
    data = data if isinstance(data, Mapping) else {}
    inner, code = str(data.get("statusCode", "")), str(data.get("code", ""))
    if status == 200:
        return OK, "the bucket exists", ""
    if status == 400 and (inner == "404" or code == "NoSuchBucket"):
        return (
            FAILED,
            "the bucket does not exist (NoSuchBucket)",
            "create it in the dashboard (Storage), or fix the bucket name in .env",
        )
    if status == 400 and (inner == "403" or code in ("AccessDenied", "InvalidJWT")):
        return (
            FAILED,
            "Storage rejects the service key (AccessDenied)",
            "copy the service_role (or sb_secret_) key of this project into SUPABASE_SERVICE_ROLE_KEY",
        )
    if status == 401:
        hint = str(data.get("message", ""))[:80]
        return (
            FAILED,
            f"HTTP 401 from the API gateway ({hint or 'unauthorized'}): wrong project or revoked key",
            "copy the service key of the project in SUPABASE_URL",
        )
    return (
        WARNING,
        f"HTTP {status}: could not check the bucket",
        "retry; check https://status.supabase.com",
    )


# --- HTTP probes -----------------------------------------------------------------


def http_client(timeout: float) -> httpx.Client:
    import httpx

    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


def probe_openai(
    client: httpx.Client, base_url: str, key: Secret, model: str
) -> Outcome:
    import httpx

    subject = "OpenAI (OPENAI_API_KEY, OPENAI_MODEL)"
    url = f"{base_url.rstrip('/')}/models/{quote(model, safe='')}"
    try:
        response = client.get(url, headers={"Authorization": f"Bearer {key.reveal()}"})
    except httpx.HTTPError as exc:
        return Outcome(
            subject,
            FAILED,
            f"no answer from octo.openai_base_url: {exc.__class__.__name__}",
            fix="check the network and octo.openai_base_url",
        )
    verdict, evidence, fix = judge_openai(response.status_code, response.text)
    return Outcome(subject, verdict, evidence, fix=fix)


def probe_bucket(
    client: httpx.Client, supabase_url: str, key: Secret, name: str, bucket: str
) -> Outcome:
    import httpx

    subject = f"storage bucket ({name})"
    url = f"{supabase_url.rstrip('/')}/storage/v1/bucket/{quote(bucket, safe='')}"
    headers = {"apikey": key.reveal()}
    if not key.reveal().startswith("sb_"):
        # Legacy JWT keys go in both headers; new sb_ keys must not be sent as
        # a bearer token unless identical to apikey, so they go in one.
        headers["Authorization"] = f"Bearer {key.reveal()}"
    try:
        response = client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return Outcome(
            subject,
            FAILED,
            f"no answer from SUPABASE_URL: {exc.__class__.__name__}",
            fix="check SUPABASE_URL and the network",
        )
    verdict, evidence, fix = judge_bucket(response.status_code, response.text)
    return Outcome(subject, verdict, evidence, fix=fix)
