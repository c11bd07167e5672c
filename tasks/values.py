"""Judge the values in `.env` before they reach Fly.io (pure: no I/O).

Every check returns findings by name and reason, never the value, so a
task can print them all at once. The rules come from
`../shared/reference/supabase-openai.md`: how libpq parses a connection URL,
which user each Supabase host wants, what the API keys carry.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:
    from tasks.settings import Secret

ERROR = "error"
WARNING = "warning"

DB_URL = "SUPABASE_DB_URL"
SUPABASE_URL = "SUPABASE_URL"
ANON_KEY = "SUPABASE_ANON_KEY"
SERVICE_KEY = "SUPABASE_SERVICE_ROLE_KEY"
JWT_AUD = "SUPABASE_JWT_AUD"
OPENAI_KEY = "OPENAI_API_KEY"
OPENAI_MODEL = "OPENAI_MODEL"
BUCKET_PREFIX = "SUPABASE_STORAGE_BUCKET_"

# Supabase CLI's project ref pattern (apps/cli-go/internal/utils/misc.go).
REF = re.compile(r"^[a-z]{20}$")
DIRECT_HOST = re.compile(r"^db\.([a-z]{20})\.supabase\.(co|red)$")
# The `aws-<N>` part is a cluster index that cannot be derived: match loosely.
POOLER_HOST = re.compile(r"^[a-z0-9]+-\d+-[a-z]{2}-[a-z]+-\d+\.pooler\.supabase\.com$")
SESSION_PORT, TRANSACTION_PORT = 5432, 6543
STRONG_SSLMODES = ("require", "verify-ca", "verify-full")
PLACEHOLDER = re.compile(
    r"\[YOUR[-_ ]PASSWORD\]|<[A-Z_-]*PASSWORD>|<project-ref>|\[PROJECT[-_]REF\]"
    r"|YOUR[-_]OPENAI[-_]KEY|<[A-Z_-]*KEY>|changeme",
    re.IGNORECASE,
)
# RFC 3986 userinfo: unreserved, sub-delims, ":" and percent escapes.
USERINFO_CHARS = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:%]*$")
DB_URL_FIX = (
    "build it with `inv db.url`, or percent-encode the password "
    "(urllib.parse.quote(password, safe='')): @ is %40, # is %23, / is %2F, "
    "? is %3F, space is %20"
)
# Storage's bucket id rule (supabase/storage src/storage/limits.ts).
BUCKET_ID = re.compile(r"^[A-Za-z0-9_!.*'() &$=@;:+,?-]{1,100}$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")
UUID = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I
)
# Names whose empty value means something (no organisation: a shared
# worker), so validation does not ask for them.
MAY_BE_EMPTY = frozenset({"WORKER_ORG_ID"})
BOOLEANS = {"true", "false", "1", "0", "yes", "no", "on", "off"}
POLL_MS_BOUNDS = (100, 600_000)
BATCH_BOUNDS = (1, 1000)


@dataclass(frozen=True)
class Finding:
    """One thing wrong (or worth knowing) about one value, never the value."""

    name: str
    reason: str
    fix: str
    severity: str = ERROR

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.is_error]


def validate(
    values: Mapping[str, Secret],
    *,
    names: tuple[str, ...] | None = None,
    has_ipv6: bool | None = None,
    now: float | None = None,
) -> list[Finding]:
    """Every finding about the known names in VALUES.

    `names` limits the report to those names (the rest still serve as
    context, e.g. SUPABASE_URL's project ref); `has_ipv6` says whether this
    machine can route IPv6 (None: unknown); `now` is the clock for JWT
    expiry.
    """
    # NOTE: validators must read values; reveal() here keeps them in this
    # process, and no finding below ever quotes one.
    plain = {n: v.reveal() for n, v in values.items() if v}
    now = time.time() if now is None else now
    ref = supabase_ref(plain.get(SUPABASE_URL, ""))

    findings: list[Finding] = []
    if SUPABASE_URL in plain:
        findings += check_supabase_url(plain[SUPABASE_URL])
    if DB_URL in plain:
        findings += check_db_url(plain[DB_URL], ref=ref, has_ipv6=has_ipv6)
    findings += check_keys(plain.get(ANON_KEY), plain.get(SERVICE_KEY), ref, now)
    if JWT_AUD in plain:
        findings += check_jwt_aud(plain[JWT_AUD])
    if OPENAI_KEY in plain:
        findings += check_openai_key(plain[OPENAI_KEY])
    if OPENAI_MODEL in plain:
        findings += check_openai_model(plain[OPENAI_MODEL])
    if "USE_DB" in plain:
        findings += check_boolean("USE_DB", plain["USE_DB"])
    if "WORKER_POLL_MS" in plain:
        findings += check_integer(
            "WORKER_POLL_MS", plain["WORKER_POLL_MS"], POLL_MS_BOUNDS, "ms"
        )
    if "WORKER_BATCH" in plain:
        findings += check_integer(
            "WORKER_BATCH", plain["WORKER_BATCH"], BATCH_BOUNDS, "jobs"
        )
    if "WORKER_ORG_ID" in plain:
        findings += check_worker_org(plain["WORKER_ORG_ID"])
    for name in sorted(plain):
        if name.startswith(BUCKET_PREFIX):
            findings += check_bucket(name, plain[name])

    if names is not None:
        findings = [f for f in findings if f.name in names]
    return findings


# --- Supabase project URL ----------------------------------------------------


def supabase_ref(url: str) -> str | None:
    """The project ref of `https://<ref>.supabase.co`, or None."""
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return None
    first, _, rest = host.partition(".")
    return (
        first if rest in ("supabase.co", "supabase.red") and REF.match(first) else None
    )


def check_supabase_url(url: str) -> list[Finding]:
    name = SUPABASE_URL
    fix = "copy the Project URL from the dashboard (Project Settings > API): https://<ref>.supabase.co"
    if PLACEHOLDER.search(url):
        return [Finding(name, "still holds a placeholder such as <project-ref>", fix)]
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return [Finding(name, "is not a URL", fix)]
    if parts.scheme != "https":
        return [
            Finding(
                name,
                f"must start with https:// (scheme is {parts.scheme or 'missing'})",
                fix,
            )
        ]
    if not host:
        return [Finding(name, "has no host", fix)]
    findings = []
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        findings.append(
            Finding(
                name,
                "has a path or query; the clients add /rest/v1, /auth/v1 themselves",
                fix,
            )
        )
    first, _, rest = host.partition(".")
    if rest in ("supabase.co", "supabase.red"):
        if not REF.match(first):
            findings.append(
                Finding(
                    name,
                    "the project ref before .supabase.co is not 20 lower-case letters",
                    fix,
                )
            )
    else:
        findings.append(
            Finding(
                name,
                f"{host} is a custom domain, so the keys' and database's project ref cannot be cross-checked",
                "nothing, if the custom domain is intended",
                WARNING,
            )
        )
    return findings


# --- database URL -------------------------------------------------------------


@dataclass(frozen=True)
class DbParts:
    user: str | None
    password: str | None
    host: str | None
    port: str | None
    dbname: str | None


def libpq_parts(url: str) -> tuple[DbParts | None, dict[str, str], str]:
    """The URL as libpq reads it, its other parameters, and an error kind.

    psycopg's parser is libpq's own; its messages quote the offending text
    (often the password), so only a kind of error is returned.
    """
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = {k: str(v) for k, v in conninfo_to_dict(url).items()}
    except ProgrammingError as exc:
        message = str(exc)
        for pattern, kind in (
            ("unexpected spaces", "space"),
            ("percent-encoded", "percent"),
            ("invalid URI query parameter", "query"),
            ('missing "="', "scheme"),
        ):
            if pattern in message:
                return None, {}, kind
        return None, {}, "other"
    parts = DbParts(
        user=params.pop("user", None),
        password=params.pop("password", None),
        host=params.pop("host", None),
        port=params.pop("port", None),
        dbname=params.pop("dbname", None),
    )
    return parts, params, ""


def urllib_parts(url: str) -> DbParts | None:
    """The URL as Python (and most non-libpq clients) read it."""
    try:
        parts = urlsplit(url)
        port = parts.port
        return DbParts(
            user=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
            host=parts.hostname,
            port=str(port) if port is not None else None,
            dbname=unquote(parts.path[1:]) if len(parts.path) > 1 else None,
        )
    except ValueError:
        return None


def check_db_url(
    url: str, *, ref: str | None, has_ipv6: bool | None = None
) -> list[Finding]:
    name = DB_URL
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return [
            Finding(
                name,
                "must start with postgresql:// (libpq knows no other scheme, "
                "not even SQLAlchemy's postgresql+psycopg://)",
                DB_URL_FIX,
            )
        ]

    findings = []
    placeholder = bool(PLACEHOLDER.search(url))
    if placeholder:
        findings.append(
            Finding(
                name,
                "still holds a placeholder such as [YOUR-PASSWORD] or <ENCODED_PASSWORD>",
                "put the real database password in (Project Settings > Database), "
                "or run `inv db.url`",
            )
        )

    parsed, params, error = libpq_parts(url)
    if parsed is None:
        reason = {
            "percent": "the password has a % that does not start a valid escape (%XX)",
            "space": "holds a raw space (libpq refuses it)",
            "query": "has a query parameter libpq does not know (e.g. pgbouncer= or "
            "prepare_threshold=, which belong in the client's options, not the URL)",
        }.get(error, "libpq cannot parse it")
        return [*findings, Finding(name, reason, DB_URL_FIX)]

    python = urllib_parts(url)
    if not placeholder and (python is None or python != parsed):
        # Each parser then cut the password somewhere else, so any host,
        # port or parameter read from it may hold part of the password:
        # nothing more is judged, and so nothing of it is quoted.
        findings.append(
            Finding(
                name,
                "libpq and URL parsers disagree on its user, password, host, port or "
                "database: the password holds an unencoded reserved character "
                "(@ / # ? [ ] or a space)",
                DB_URL_FIX,
            )
        )
        return findings
    if not placeholder and not USERINFO_CHARS.match(_raw_userinfo(rest)):
        findings.append(
            Finding(
                name,
                "the user or password holds characters that must be percent-encoded",
                DB_URL_FIX,
            )
        )

    findings += _check_db_params(parsed, params)
    if not placeholder:
        findings += _check_db_host(parsed, ref, has_ipv6)
    return findings


def _raw_userinfo(after_scheme: str) -> str:
    authority = re.split(r"[/?#]", after_scheme, maxsplit=1)[0]
    userinfo, at, _ = authority.rpartition("@")
    return userinfo if at else ""


def _check_db_params(parsed: DbParts, params: Mapping[str, str]) -> list[Finding]:
    name = DB_URL
    findings = []
    if not parsed.dbname:
        findings.append(
            Finding(
                name,
                "names no database: libpq then uses the user name (postgres.<ref>) as "
                "the database, which does not exist",
                "end the host part with /postgres",
            )
        )
    if not parsed.password:
        findings.append(Finding(name, "has no password", DB_URL_FIX))
    sslmode = params.get("sslmode")
    if not sslmode:
        findings.append(
            Finding(
                name,
                "has no sslmode: libpq's default (prefer) may fall back to plain text",
                "add ?sslmode=require",
            )
        )
    elif sslmode not in STRONG_SSLMODES:
        findings.append(
            Finding(
                name,
                f"sslmode={sslmode} is weaker than require (or unknown)",
                "use ?sslmode=require (or verify-full with Supabase's CA)",
            )
        )
    for label, part in (("user", parsed.user), ("database", parsed.dbname)):
        if part and (len(part.encode()) > 63 or not part.isprintable()):
            findings.append(
                Finding(
                    name,
                    f"the {label} name is longer than 63 bytes or has control "
                    "characters (the pooler answers Invalid format for user or db_name)",
                    DB_URL_FIX,
                )
            )
    return findings


def _check_db_host(
    parsed: DbParts, ref: str | None, has_ipv6: bool | None
) -> list[Finding]:
    name = DB_URL
    host, user = parsed.host or "", parsed.user or ""
    port_text = parsed.port or str(SESSION_PORT)
    port = int(port_text) if port_text.isdigit() else 0
    findings = []
    direct = DIRECT_HOST.match(host)
    pooler = POOLER_HOST.match(host) or host.endswith(".pooler.supabase.com")

    if direct:
        db_ref = direct.group(1)
        if "." in user:
            findings.append(
                Finding(
                    name,
                    "the direct host db.<ref>.supabase.co wants the user postgres, not "
                    "the pooler's postgres.<ref> (it answers password authentication failed)",
                    "use the user postgres, or switch to the pooler host",
                )
            )
        elif user != "postgres":
            findings.append(
                Finding(
                    name,
                    f"connects as the custom role {user or '(none)'}",
                    "nothing, if that role exists",
                    WARNING,
                )
            )
        if port not in (SESSION_PORT, TRANSACTION_PORT):
            findings.append(
                Finding(
                    name, f"port {parsed.port} is neither 5432 nor 6543", "use 5432"
                )
            )
        if has_ipv6 is False:
            findings.append(
                Finding(
                    name,
                    "the direct host is IPv6-only (unless the IPv4 add-on is bought) and "
                    "this machine has no IPv6 route: it works from Fly, not from here",
                    "use the session pooler URL to test from here (`inv db.url --kind session`)",
                    WARNING,
                )
            )
    elif pooler:
        role, dot, db_ref = user.rpartition(".")
        if not dot or not role:
            findings.append(
                Finding(
                    name,
                    "the shared pooler wants the user postgres.<ref>; a bare user "
                    "answers Tenant or user not found (or no tenant identifier)",
                    "use the user postgres.<project ref>",
                )
            )
            db_ref = ""
        elif not REF.match(db_ref):
            findings.append(
                Finding(
                    name,
                    "the user's part after the last dot is not a 20-letter project ref",
                    "use the user postgres.<project ref>",
                )
            )
            db_ref = ""
        if port not in (SESSION_PORT, TRANSACTION_PORT):
            findings.append(
                Finding(
                    name,
                    f"port {parsed.port} is neither 5432 (session) nor 6543 (transaction)",
                    "use 5432",
                )
            )
    else:
        findings.append(
            Finding(
                name,
                f"{host or 'the host'} is not a Supabase database host, so its user and "
                "project ref cannot be checked",
                "nothing, if this is intended",
                WARNING,
            )
        )
        db_ref = ""

    if db_ref and ref and db_ref != ref:
        findings.append(
            Finding(
                name,
                "points at another Supabase project than SUPABASE_URL",
                "copy both from the same project's dashboard",
            )
        )
    if port == TRANSACTION_PORT and (direct or pooler):
        findings.append(
            Finding(
                name,
                "port 6543 is transaction pooling, which has no prepared statements",
                "turn them off in the app (psycopg: prepare_threshold=None), or use 5432",
                WARNING,
            )
        )
    return findings


def build_db_url(
    *,
    user: str,
    password: str,
    host: str,
    port: int,
    dbname: str = "postgres",
    sslmode: str = "require",
) -> str:
    """A connection URL that libpq and URL parsers read the same way."""
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"postgresql://{userinfo}@{host}:{port}/{quote(dbname, safe='')}?sslmode={sslmode}"


def with_password(url: str, password: str) -> str:
    """URL with its password replaced and every other part kept, as libpq reads it.

    Rotating the database password changes nothing else, so the new URL is
    the old one rebuilt around the new, percent-encoded password.
    """
    parts, params, error = libpq_parts(url)
    if parts is None or not parts.user or not parts.host:
        raise ValueError(
            "the current SUPABASE_DB_URL cannot be read (run `inv secrets.validate`); "
            "build a new one with `inv db.url`"
        )
    sslmode = params.pop("sslmode", "require")
    rebuilt = build_db_url(
        user=parts.user,
        password=password,
        host=parts.host,
        port=int(parts.port or SESSION_PORT),
        dbname=parts.dbname or "postgres",
        sslmode=sslmode,
    )
    others = "".join(f"&{k}={quote(v, safe='')}" for k, v in params.items())
    return rebuilt + others


HOST_KINDS = ("direct", "session", "transaction")


def supabase_endpoint(
    kind: str, ref: str, pooler_host: str = "", role: str = "postgres"
) -> tuple[str, str, int]:
    """User, host and port of a Supabase database endpoint of KIND.

    The pooler host cannot be derived from the region (its `aws-<N>` part
    is a cluster index), so it must come from the dashboard.
    """
    if kind == "direct":
        return role, f"db.{ref}.supabase.co", SESSION_PORT
    if kind not in ("session", "transaction"):
        raise ValueError(f"unknown host kind {kind!r} (one of {', '.join(HOST_KINDS)})")
    if not pooler_host:
        raise ValueError(
            "the pooler host (aws-<N>-<region>.pooler.supabase.com) is needed: copy it "
            "from the dashboard's Connect dialog"
        )
    port = SESSION_PORT if kind == "session" else TRANSACTION_PORT
    return f"{role}.{ref}", pooler_host, port


def mask_db_url(url: str) -> str:
    """The URL with its password replaced, for display."""
    scheme, sep, rest = url.partition("://")
    userinfo = _raw_userinfo(rest)
    if not sep or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:****{rest[len(userinfo) :]}"


# --- API keys ---------------------------------------------------------------


def key_claims(value: str) -> dict[str, Any] | None:
    """The payload of a JWT, unverified, or None when it is not one."""
    import jwt

    try:
        claims = jwt.decode(value, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return claims if isinstance(claims, dict) else None


def check_keys(
    anon: str | None, service: str | None, ref: str | None, now: float
) -> list[Finding]:
    slots = (
        (ANON_KEY, anon, "anon", "sb_publishable_"),
        (SERVICE_KEY, service, "service_role", "sb_secret_"),
    )
    roles = {}
    findings = []
    for name, value, role, new_prefix in slots:
        if value is None:
            continue
        findings += _check_key(name, value, role, new_prefix, ref, now)
        claims = key_claims(value)
        roles[name] = claims.get("role") if claims else _new_key_role(value)
    if roles.get(ANON_KEY) == "service_role" and roles.get(SERVICE_KEY) == "anon":
        # Each name still gets its finding (so neither is sent), but with the
        # one fix that applies, instead of "copy it again" twice plus this.
        findings = [
            f for f in findings if not f.reason.startswith("is a key with role")
        ]
        findings += [
            Finding(
                name,
                "SUPABASE_ANON_KEY and SUPABASE_SERVICE_ROLE_KEY are swapped",
                "exchange the two values in .env",
            )
            for name in (ANON_KEY, SERVICE_KEY)
        ]
    return findings


def _new_key_role(value: str) -> str | None:
    if value.startswith("sb_publishable_"):
        return "anon"
    if value.startswith("sb_secret_"):
        return "service_role"
    return None


def _check_key(
    name: str, value: str, role: str, new_prefix: str, ref: str | None, now: float
) -> list[Finding]:
    fix = "copy it from the dashboard (Project Settings > API Keys)"
    if PLACEHOLDER.search(value):
        return [Finding(name, "still holds a placeholder", fix)]
    if value != value.strip() or any(ch.isspace() for ch in value):
        return [Finding(name, "holds spaces or line breaks", fix)]
    other_prefix = (
        "sb_secret_" if new_prefix == "sb_publishable_" else "sb_publishable_"
    )
    if value.startswith(new_prefix):
        if not re.fullmatch(rf"{new_prefix}[A-Za-z0-9_-]+", value):
            return [
                Finding(
                    name,
                    f"is a {new_prefix} key with characters such keys never hold",
                    fix,
                )
            ]
        return []
    if value.startswith(other_prefix):
        wrong = (
            "secret key (full access)"
            if other_prefix == "sb_secret_"
            else "publishable key"
        )
        return [Finding(name, f"holds a {wrong}, the wrong kind for this name", fix)]

    claims = key_claims(value)
    if claims is None:
        return [
            Finding(name, "is neither a JWT nor an sb_publishable_/sb_secret_ key", fix)
        ]
    findings = []
    got = claims.get("role")
    if got != role:
        findings.append(Finding(name, f"is a key with role {got!r}, not {role!r}", fix))
    if ref and claims.get("ref") and claims["ref"] != ref:
        findings.append(
            Finding(name, "belongs to another project than SUPABASE_URL", fix)
        )
    elif ref and not claims.get("ref"):
        findings.append(
            Finding(
                name, "names no project ref (a local or self-hosted key?)", fix, WARNING
            )
        )
    if claims.get("iss") not in (None, "supabase"):
        findings.append(
            Finding(
                name, "was not issued by Supabase (iss is not supabase)", fix, WARNING
            )
        )
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp <= now:
        findings.append(Finding(name, "has expired", fix))
    return findings


# --- other names --------------------------------------------------------------


def check_jwt_aud(value: str) -> list[Finding]:
    if value.strip() != value or not value:
        return [
            Finding(
                JWT_AUD, "is empty or has surrounding spaces", "set it to authenticated"
            )
        ]
    if value != "authenticated":
        return [
            Finding(
                JWT_AUD,
                "is not authenticated, the audience Supabase Auth puts in user tokens",
                "set it to authenticated unless Auth was configured otherwise",
                WARNING,
            )
        ]
    return []


def check_openai_key(value: str) -> list[Finding]:
    name, fix = (
        OPENAI_KEY,
        "create a project key at https://platform.openai.com/api-keys",
    )
    if PLACEHOLDER.search(value):
        return [Finding(name, "still holds a placeholder", fix)]
    if any(ch.isspace() for ch in value):
        return [Finding(name, "holds spaces or line breaks", fix)]
    if value.startswith("sk-admin-"):
        return [
            Finding(
                name, "is an admin key, which only works on the management API", fix
            )
        ]
    if value.startswith(("http://", "https://")):
        return [Finding(name, "is a URL, not a key", fix)]
    if not value.startswith("sk-") or len(value) < 20:
        return [
            Finding(
                name, "has no known OpenAI key prefix (sk-proj-, sk-svcacct-, sk-)", fix
            )
        ]
    return []


def check_openai_model(value: str) -> list[Finding]:
    if not MODEL_NAME.match(value):
        return [
            Finding(
                OPENAI_MODEL,
                "is not a model id (letters, digits, . _ : / - and no spaces)",
                "use an id from GET /v1/models, e.g. gpt-4o-mini",
            )
        ]
    return []


def check_boolean(name: str, value: str) -> list[Finding]:
    if value.strip().lower() not in BOOLEANS:
        return [Finding(name, "is not a boolean", "use true or false")]
    return []


def check_integer(
    name: str, value: str, bounds: tuple[int, int], unit: str
) -> list[Finding]:
    low, high = bounds
    try:
        number = int(value.strip())
    except ValueError:
        return [
            Finding(
                name,
                "is not a whole number",
                f"use a number of {unit} from {low} to {high}",
            )
        ]
    if not low <= number <= high:
        return [
            Finding(
                name,
                f"is outside {low}-{high} {unit}",
                f"use a number of {unit} from {low} to {high}",
            )
        ]
    return []


def check_worker_org(value: str) -> list[Finding]:
    findings = [
        Finding(
            "WORKER_ORG_ID",
            "limits the worker to one organisation's jobs; the others wait forever",
            "leave it empty for a shared worker, unless one organisation is intended",
            WARNING,
        )
    ]
    if not UUID.match(value.strip()):
        findings.append(
            Finding("WORKER_ORG_ID", "is not a UUID", "copy the organisation's id")
        )
    return findings


def check_bucket(name: str, value: str) -> list[Finding]:
    if not BUCKET_ID.match(value) or value != value.strip():
        return [
            Finding(
                name,
                "is not a valid bucket id (1-100 characters, no slash, no surrounding spaces)",
                "use the bucket's id as shown in the dashboard (Storage)",
            )
        ]
    return []


def replace_env_line(text: str, name: str, value: str) -> str:
    """TEXT of a dotenv file with NAME set to VALUE, other lines untouched.

    The value is single-quoted, which python-dotenv reads literally; a value
    holding a single quote cannot be written that way.
    """
    if "'" in value or "\n" in value:
        raise ValueError(f"{name} holds a quote or line break; write it by hand")
    line = f"{name}='{value}'"
    pattern = re.compile(rf"^(export\s+)?{re.escape(name)}\s*=.*$", re.MULTILINE)
    if pattern.search(text):
        # A function replacement: the value's backslashes stay literal.
        return pattern.sub(lambda _: line, text)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + line + "\n"
