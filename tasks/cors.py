"""Judge CORS answers as a browser does (section 10); pure, no I/O.

The OCTO API answers every preflight `200` and only leaves the CORS headers
out for an origin it does not allow (../shared/reference/octo-backend.md),
so the verdicts read the headers, never the status alone. The rules follow
the Fetch standard's CORS check and CORS-preflight fetch:
https://fetch.spec.whatwg.org/#cors-check
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tasks.diagnose import http_evidence

ORIGINS_NAME = "OCTO_CORS_ORIGINS"
DEFAULT_API_URL = "https://octodrop-platform-api.fly.dev"
DEFAULT_PATH = "/modules"
DEFAULT_METHODS = ("GET", "POST", "PUT")
DEFAULT_HEADERS = ("authorization", "content-type")
DEFAULT_TIMEOUT = 10.0
# Methods and request headers a browser never needs the server to list.
SAFELISTED_METHODS = frozenset({"GET", "HEAD", "POST"})
SAFELISTED_HEADERS = frozenset({"accept", "accept-language", "content-language"})
DEFAULT_PORTS = {"http": 80, "https": 443}
# Fly's proxy answers these itself when no machine of the app answers.
GATEWAY_STATUSES = frozenset({502, 503, 504})
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


# --- settings --------------------------------------------------------------


@dataclass(frozen=True)
class CorsSettings:
    """`octo.cors` from invoke.yaml, checked; origins normalised."""

    origins: tuple[str, ...]
    api_url: str
    path: str
    methods: tuple[str, ...]
    request_headers: tuple[str, ...]
    credentials: bool
    timeout: float
    app: str

    @property
    def url(self) -> str:
        return self.api_url + self.path


def split_list(raw: Any) -> list[str]:
    """Items of a YAML list, or of a comma-separated string (an env variable)."""
    if raw is None:
        return []
    items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def normalise_origin(text: str) -> tuple[str | None, str]:
    """The origin a browser would send for TEXT, and what was wrong with TEXT.

    Returns (origin, "") for a clean origin, (origin, note) when TEXT had to
    be changed (a trailing slash, a path, capitals, a default port), and
    (None, problem) when TEXT is no origin at all.
    """
    if text.strip() == "*":
        return None, "'*' is not an origin: list each frontend origin"
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None, f"{text!r} is not an origin (scheme://host[:port])"
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None, f"{text!r} is not an origin: it needs https:// and a host"
    if parts.username or parts.password:
        return None, f"{text!r} is not an origin: it holds a user name"
    origin = f"{scheme}://{parts.hostname}"
    if port is not None and port != DEFAULT_PORTS[scheme]:
        origin += f":{port}"
    if origin == text.strip():
        return origin, ""
    if parts.path == "/" and not (parts.query or parts.fragment):
        why = "has a trailing slash"
    elif parts.path or parts.query or parts.fragment:
        why = "has a path"
    else:
        why = "is not written as browsers send it"
    return origin, f"{text!r} {why}; browsers send {origin!r}"


def _flag(raw: Any, name: str, problems: list[str]) -> bool:
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in TRUE_WORDS | FALSE_WORDS:
        return word in TRUE_WORDS
    problems.append(f"octo.cors.{name} must be true or false (0 or 1)")
    return False


def load_settings(raw: Any) -> tuple[CorsSettings | None, list[str], list[str]]:
    """Settings from `octo.cors`, every problem at once, and warnings.

    An origin written with a trailing slash or a path is checked as the
    origin a browser sends, with a warning naming the fix.
    """
    if not isinstance(raw, Mapping):
        return None, ["octo.cors is missing from invoke.yaml"], []
    problems: list[str] = []
    warnings: list[str] = []

    origins: list[str] = []
    for text in split_list(raw.get("origins")):
        origin, note = normalise_origin(text)
        if origin is None:
            problems.append(f"octo.cors.origins: {note}")
            continue
        if note:
            warnings.append(f"octo.cors.origins: {note}; write it as {origin}")
        if origin not in origins:
            origins.append(origin)
    if not origins and not problems:
        problems.append(
            "octo.cors.origins is empty: set the production frontend origins, "
            "e.g. INVOKE_OCTO_CORS_ORIGINS=https://app.example.com,https://www.example.com"
        )

    api_url = str(raw.get("api_url") or DEFAULT_API_URL).rstrip("/")
    if not api_url.startswith(("https://", "http://")):
        problems.append("octo.cors.api_url must be a URL starting with https://")
    path = str(raw.get("path") or DEFAULT_PATH)
    if not path.startswith("/"):
        problems.append("octo.cors.path must start with / (e.g. /modules)")

    methods = [m.upper() for m in split_list(raw.get("methods"))] or list(
        DEFAULT_METHODS
    )
    bad = [m for m in methods if not re.fullmatch(r"[A-Z]+", m) or m == "OPTIONS"]
    if bad:
        problems.append(
            f"octo.cors.methods: {', '.join(bad)} is not a request method "
            "the frontend sends (e.g. GET, POST, PUT)"
        )
    headers = [h.lower() for h in split_list(raw.get("request_headers"))]
    bad = [h for h in headers if not re.fullmatch(r"[a-z0-9!#$%&'*+.^_`|~-]+", h)]
    if bad:
        problems.append(f"octo.cors.request_headers: {', '.join(bad)} is no header")

    credentials = _flag(raw.get("credentials", True), "credentials", problems)
    try:
        raw_timeout = raw.get("timeout")
        timeout = DEFAULT_TIMEOUT if raw_timeout in (None, "") else float(raw_timeout)
    except (TypeError, ValueError):
        problems.append("octo.cors.timeout must be a number of seconds")
        timeout = DEFAULT_TIMEOUT
    if timeout <= 0:
        problems.append("octo.cors.timeout must be more than 0 seconds")
    app = str(raw.get("app") or "api")

    if problems:
        return None, problems, warnings
    return (
        CorsSettings(
            origins=tuple(origins),
            api_url=api_url,
            path=path,
            methods=tuple(dict.fromkeys(methods)),
            request_headers=tuple(dict.fromkeys(headers)),
            credentials=credentials,
            timeout=timeout,
            app=app,
        ),
        [],
        warnings,
    )


# --- answers -----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, headers as received, body text."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: str = ""
    reason: str = ""

    def header(self, name: str) -> str | None:
        """Every value of header NAME joined with ", ", or None when absent."""
        found = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(v.strip() for v in found) if found else None

    def tokens(self, name: str) -> list[str]:
        """The comma-separated items of header NAME."""
        return split_list(self.header(name) or "")


@dataclass(frozen=True)
class Exchange:
    """A request the browser would send and the answer it got."""

    method: str
    path: str
    request_headers: tuple[tuple[str, str], ...]
    answer: Answer


def preflight_headers(
    origin: str, method: str, headers: Sequence[str]
) -> tuple[tuple[str, str], ...]:
    """The headers of the browser's preflight for METHOD with HEADERS."""
    sent = [("Origin", origin), ("Access-Control-Request-Method", method)]
    if headers:
        # Browsers send the names lower-cased, sorted, without spaces.
        sent.append(("Access-Control-Request-Headers", ",".join(sorted(headers))))
    return tuple(sent)


def render_exchange(exchange: Exchange) -> str:
    """EXCHANGE as text for `diagnose(text, "http")` (see `http_evidence`)."""
    answer = exchange.answer
    return http_evidence(
        answer.status,
        answer.headers,
        answer.body,
        reason=answer.reason,
        request=(exchange.method, exchange.path, exchange.request_headers),
    )


# --- verdicts ----------------------------------------------------------------

# Finding codes; the fixable ones are fixed by OCTO_CORS_ORIGINS alone.
ORIGIN_MISSING = "origin-missing"
ORIGIN_MISMATCH = "origin-mismatch"
TRAILING_SLASH = "trailing-slash"
WILDCARD_CREDENTIALS = "wildcard-credentials"
MULTIPLE_ORIGINS = "multiple-origins"
CREDENTIALS_NOT_ALLOWED = "credentials-not-allowed"
METHOD_NOT_ALLOWED = "method-not-allowed"
HEADER_NOT_ALLOWED = "header-not-allowed"
GATEWAY_ERROR = "gateway-error"
SERVER_ERROR = "server-error"
PREFLIGHT_STATUS = "preflight-status"
VARY_MISSING = "vary-missing"
WILDCARD_WITH_CREDENTIALS_HEADER = "wildcard-credentials-header"
FIXABLE = frozenset({ORIGIN_MISSING, ORIGIN_MISMATCH, TRAILING_SLASH})


@dataclass(frozen=True)
class Finding:
    """What a browser would do, why, and the fix, for one origin."""

    code: str
    browser: str
    why: str
    fix: str
    # The exchange that shows it, for the failure catalogue.
    evidence: Exchange | None = field(default=None, compare=False)

    @property
    def fixable(self) -> bool:
        return self.code in FIXABLE

    def line(self) -> str:
        return f"{self.browser}: {self.why}"


@dataclass(frozen=True)
class Verdict:
    """Everything a browser would object to for one origin."""

    origin: str
    problems: tuple[Finding, ...]
    warnings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def fixable(self) -> bool:
        """Whether adding the origin to OCTO_CORS_ORIGINS fixes every problem."""
        return bool(self.problems) and all(p.fixable for p in self.problems)


def _redeploy_fix(origin: str) -> str:
    return (
        f"add {origin} to {ORIGINS_NAME} on the API and redeploy it: "
        "inv verify.cors --fix"
    )


def _status_findings(exchange: Exchange, *, preflight: bool, app: str) -> list[Finding]:
    """A failed status stops the browser before it reads any CORS header."""
    answer = exchange.answer
    what = "preflight" if preflight else f"{exchange.method} {exchange.path}"
    has_cors = answer.header("access-control-allow-origin") is not None
    logs = f"flyctl logs --app {app} --no-tail" if app else "the API's logs"
    if answer.status in GATEWAY_STATUSES and not has_cors:
        return [
            Finding(
                GATEWAY_ERROR,
                "the browser reports a CORS error",
                f"the {what} got HTTP {answer.status} from the proxy before the "
                "API answered (no CORS headers): the app is not answering, "
                "CORS is not the cause",
                f"run `inv verify.api`, then `{logs}`",
                exchange,
            )
        ]
    if answer.status >= 500 and not has_cors:
        return [
            Finding(
                SERVER_ERROR,
                "the browser reports a CORS error",
                f"the {what} got HTTP {answer.status} without CORS headers: the "
                "API failed, CORS is not the cause",
                f"read `{logs}` for the error",
                exchange,
            )
        ]
    if preflight and not 200 <= answer.status < 300:
        return [
            Finding(
                PREFLIGHT_STATUS,
                "the browser blocks the request",
                f"the preflight got HTTP {answer.status}; browsers need a 2xx",
                f"make the API answer OPTIONS {exchange.path} (its CORS "
                "middleware), then redeploy it",
                exchange,
            )
        ]
    return []


def _origin_findings(
    origin: str, exchange: Exchange, *, credentials: bool
) -> tuple[list[Finding], list[Finding]]:
    """The CORS check: Allow-Origin and Allow-Credentials (Fetch 4.10)."""
    answer = exchange.answer
    what = "preflight" if exchange.method == "OPTIONS" else "answer"
    allowed = answer.header("access-control-allow-origin")
    allow_credentials = (
        answer.header("access-control-allow-credentials") or ""
    ).strip()
    blocked = "the browser blocks every request"
    if allowed is None:
        return [
            Finding(
                ORIGIN_MISSING,
                blocked,
                f"the {what} has no Access-Control-Allow-Origin: the API does "
                "not allow this origin",
                _redeploy_fix(origin),
                exchange,
            )
        ], []
    allowed = allowed.strip()
    if "," in allowed:
        return [
            Finding(
                MULTIPLE_ORIGINS,
                blocked,
                f"Access-Control-Allow-Origin holds several values ({allowed}); "
                "browsers accept exactly one",
                "make sure one layer only (the API, not also a proxy) adds CORS "
                "headers, then redeploy it",
                exchange,
            )
        ], []
    if allowed == "*":
        if credentials:
            return [
                Finding(
                    WILDCARD_CREDENTIALS,
                    "the browser blocks every request with credentials",
                    "Access-Control-Allow-Origin is '*', which browsers refuse "
                    "for requests with credentials",
                    f"make the API echo the origin: list {origin} in "
                    f"{ORIGINS_NAME} instead of allowing every origin, then "
                    "redeploy it",
                    exchange,
                )
            ], []
        warnings = []
        if allow_credentials.lower() == "true":
            warnings.append(
                Finding(
                    WILDCARD_WITH_CREDENTIALS_HEADER,
                    "the browser allows requests without credentials only",
                    "the API answers '*' with Access-Control-Allow-Credentials: "
                    "true, a pair browsers never accept with credentials",
                    "make the API echo the allowed origin instead of '*'",
                    exchange,
                )
            )
        return [], warnings
    if allowed != origin:
        if allowed.rstrip("/") == origin:
            return [
                Finding(
                    TRAILING_SLASH,
                    blocked,
                    f"Access-Control-Allow-Origin is {allowed!r} with a trailing "
                    f"slash; browsers compare it exactly with {origin!r}",
                    f"write the origin without the slash in {ORIGINS_NAME} and "
                    "redeploy the API: inv verify.cors --fix",
                    exchange,
                )
            ], []
        return [
            Finding(
                ORIGIN_MISMATCH,
                blocked,
                f"Access-Control-Allow-Origin is {allowed!r}, not this origin",
                _redeploy_fix(origin),
                exchange,
            )
        ], []
    if credentials and allow_credentials != "true":
        shown = allow_credentials or "absent"
        return [
            Finding(
                CREDENTIALS_NOT_ALLOWED,
                "the browser blocks every request with credentials",
                f"Access-Control-Allow-Credentials is {shown}, not 'true'",
                "allow credentials in the API's CORS configuration and redeploy "
                "it, or set octo.cors.credentials to false if the frontend "
                "sends none",
                exchange,
            )
        ], []
    return [], []


def _method_findings(
    method: str, exchange: Exchange, *, credentials: bool
) -> list[Finding]:
    if method in SAFELISTED_METHODS:
        return []
    listed = exchange.answer.tokens("access-control-allow-methods")
    if method in {m.upper() for m in listed}:
        return []
    if "*" in listed and not credentials:
        return []
    shown = ", ".join(listed) or "absent"
    why = f"Access-Control-Allow-Methods ({shown}) lacks {method}"
    if "*" in listed:
        why += "; '*' counts only for requests without credentials"
    return [
        Finding(
            METHOD_NOT_ALLOWED,
            f"the browser blocks {method} requests",
            why,
            f"allow {method} in the API's CORS methods, then redeploy it",
            exchange,
        )
    ]


def _header_findings(
    headers: Sequence[str], exchange: Exchange, *, credentials: bool
) -> list[Finding]:
    listed = {h.lower() for h in exchange.answer.tokens("access-control-allow-headers")}
    wildcard = "*" in listed and not credentials
    missing = [
        h
        for h in headers
        if h not in SAFELISTED_HEADERS
        and h not in listed
        and not (wildcard and h != "authorization")
    ]
    if not missing:
        return []
    shown = ", ".join(sorted(listed)) or "absent"
    why = f"Access-Control-Allow-Headers ({shown}) lacks {', '.join(missing)}"
    if "*" in listed:
        why += (
            "; '*' never covers authorization"
            if not credentials
            else "; '*' counts only for requests without credentials"
        )
    return [
        Finding(
            HEADER_NOT_ALLOWED,
            f"the browser blocks requests sending {', '.join(missing)}",
            why,
            f"allow {', '.join(missing)} in the API's CORS headers, then redeploy it",
            exchange,
        )
    ]


def _vary_findings(origin: str, exchange: Exchange) -> list[Finding]:
    answer = exchange.answer
    if (answer.header("access-control-allow-origin") or "").strip() != origin:
        return []
    if "origin" in {v.lower() for v in answer.tokens("vary")} or "*" in answer.tokens(
        "vary"
    ):
        return []
    return [
        Finding(
            VARY_MISSING,
            "the browser allows it, but caches may not",
            "the answer echoes the origin without Vary: Origin, so a cache may "
            "hand it to another origin",
            "add Vary: Origin to the API's CORS answers",
            exchange,
        )
    ]


def judge_origin(
    origin: str,
    *,
    preflights: Mapping[str, Exchange],
    actual: Exchange | None,
    headers: Sequence[str],
    credentials: bool,
    app: str = "",
) -> Verdict:
    """Every problem a browser would have with ORIGIN, and the warnings.

    PREFLIGHTS maps each method the frontend uses to its preflight exchange;
    ACTUAL is a real request from the origin. A finding seen in several
    exchanges is reported once.
    """
    problems: list[Finding] = []
    warnings: list[Finding] = []
    for method, exchange in preflights.items():
        stopped = _status_findings(exchange, preflight=True, app=app)
        if stopped:
            problems += stopped
            continue
        found, warned = _origin_findings(origin, exchange, credentials=credentials)
        problems += found
        warnings += warned
        if found:
            continue
        problems += _method_findings(method, exchange, credentials=credentials)
        problems += _header_findings(headers, exchange, credentials=credentials)
    if actual is not None:
        stopped = _status_findings(actual, preflight=False, app=app)
        if stopped:
            problems += stopped
        else:
            found, warned = _origin_findings(origin, actual, credentials=credentials)
            problems += found
            warnings += warned
            if not found:
                warnings += _vary_findings(origin, actual)
    return Verdict(origin, tuple(_once(problems)), tuple(_once(warnings)))


def _once(findings: Iterable[Finding]) -> list[Finding]:
    seen: set[tuple[str, str]] = set()
    kept = []
    for finding in findings:
        key = (finding.code, finding.browser)
        if key not in seen:
            seen.add(key)
            kept.append(finding)
    return kept


def allowed_line(settings: CorsSettings) -> str:
    """What a browser may do from an origin whose verdict is clean."""
    line = f"the browser allows {', '.join(settings.methods)} {settings.path}"
    if settings.request_headers:
        line += f" with {', '.join(settings.request_headers)}"
    if settings.credentials:
        line += " and credentials"
    return line


# --- the fix -----------------------------------------------------------------


def merge_origins(current: str, missing: Iterable[str]) -> tuple[str, list[str]]:
    """The new OCTO_CORS_ORIGINS value: CURRENT's origins plus MISSING.

    Every entry is normalised as browsers send origins (trailing slashes and
    paths dropped) and listed once, in order. Entries that are no origin
    (e.g. '*') are kept as they are and named in the notes.
    """
    kept: list[str] = []
    notes: list[str] = []
    for text in [*split_list(current), *missing]:
        origin, note = normalise_origin(text)
        if origin is None:
            notes.append(f"kept as it is: {note}")
            origin = text.strip()
        elif note:
            notes.append(f"rewritten: {note}")
        if origin not in kept:
            kept.append(origin)
    return ",".join(kept), notes
