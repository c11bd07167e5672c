"""The CORS judge in tasks/cors.py: settings, verdicts, the fix's value."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks import cors
from tasks.diagnose import catalogue, diagnose

ORIGIN = "https://app.example.com"
SAMPLES = Path(__file__).with_name("samples")
FLY = (("server", "Fly/4b9f0919f (2026-09-15)"), ("via", "1.1 fly.io"))
ALLOWED = (
    ("access-control-allow-origin", ORIGIN),
    ("access-control-allow-credentials", "true"),
    ("vary", "Origin"),
)
PREFLIGHT_ALLOWED = (
    *ALLOWED,
    ("access-control-allow-methods", "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"),
    ("access-control-allow-headers", "authorization,content-type"),
)
HEADERS = ("authorization", "content-type")


def exchange(status: int, headers, method: str = "OPTIONS") -> cors.Exchange:
    sent = (
        cors.preflight_headers(ORIGIN, "PUT", HEADERS)
        if method == "OPTIONS"
        else (("Origin", ORIGIN),)
    )
    return cors.Exchange(
        method, "/modules", sent, cors.Answer(status, (*headers, *FLY), "")
    )


def judge(
    preflight_headers,
    actual_headers=ALLOWED,
    *,
    status: int = 200,
    actual_status: int = 401,
    methods=("GET", "POST", "PUT"),
    credentials: bool = True,
) -> cors.Verdict:
    preflight = exchange(status, preflight_headers)
    return cors.judge_origin(
        ORIGIN,
        preflights={m: preflight for m in methods},
        actual=exchange(actual_status, actual_headers, "GET"),
        headers=HEADERS,
        credentials=credentials,
        app="octodrop-platform-api",
    )


def codes(findings) -> list[str]:
    return [f.code for f in findings]


def test_judge_allowed_origin_has_no_problem_and_no_warning():
    verdict = judge(PREFLIGHT_ALLOWED)

    assert verdict.ok
    assert verdict.warnings == ()


def test_judge_missing_allow_origin_is_one_fixable_problem():
    verdict = judge((), actual_headers=())

    assert codes(verdict.problems) == [cors.ORIGIN_MISSING]
    assert verdict.fixable
    assert "OCTO_CORS_ORIGINS" in verdict.problems[0].fix


def test_judge_trailing_slash_in_allow_origin_is_named():
    headers = (("access-control-allow-origin", ORIGIN + "/"),)

    verdict = judge(headers, headers)

    assert codes(verdict.problems) == [cors.TRAILING_SLASH]
    assert "trailing slash" in verdict.problems[0].why


def test_judge_another_origin_is_a_mismatch():
    headers = (("access-control-allow-origin", "https://other.example.com"),)

    verdict = judge(headers, headers)

    assert codes(verdict.problems) == [cors.ORIGIN_MISMATCH]


def test_judge_wildcard_with_credentials_is_refused_and_not_fixable_by_origins():
    headers = (
        ("access-control-allow-origin", "*"),
        ("access-control-allow-credentials", "true"),
    )

    verdict = judge(headers, headers)

    assert codes(verdict.problems) == [cors.WILDCARD_CREDENTIALS]
    assert not verdict.fixable


def test_judge_wildcard_without_credentials_only_warns():
    headers = (
        ("access-control-allow-origin", "*"),
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-methods", "*"),
        ("access-control-allow-headers", "authorization, content-type"),
    )

    verdict = judge(headers, headers, credentials=False)

    assert verdict.ok
    assert codes(verdict.warnings) == [cors.WILDCARD_WITH_CREDENTIALS_HEADER]


def test_judge_credentials_need_allow_credentials_true():
    headers = (("access-control-allow-origin", ORIGIN), ("vary", "Origin"))

    verdict = judge(
        (*headers, ("access-control-allow-methods", "PUT")),
        headers,
        methods=("PUT",),
    )

    assert codes(verdict.problems) == [cors.CREDENTIALS_NOT_ALLOWED]
    assert "absent" in verdict.problems[0].why


def test_judge_two_allow_origin_values_are_refused():
    headers = (
        ("access-control-allow-origin", ORIGIN),
        ("access-control-allow-origin", ORIGIN),
    )

    verdict = judge(headers, headers)

    assert codes(verdict.problems) == [cors.MULTIPLE_ORIGINS]


def test_judge_method_missing_from_allow_methods():
    headers = (*ALLOWED, ("access-control-allow-methods", "GET, POST"))

    verdict = judge(
        (*headers, ("access-control-allow-headers", "authorization,content-type"))
    )

    assert codes(verdict.problems) == [cors.METHOD_NOT_ALLOWED]
    assert "lacks PUT" in verdict.problems[0].why


def test_judge_safelisted_methods_need_no_listing():
    headers = (*ALLOWED, ("access-control-allow-headers", "authorization,content-type"))

    verdict = judge(headers, methods=("GET", "POST"))

    assert verdict.ok


def test_judge_wildcard_methods_do_not_count_with_credentials():
    headers = (
        *ALLOWED,
        ("access-control-allow-methods", "*"),
        ("access-control-allow-headers", "authorization,content-type"),
    )

    verdict = judge(headers, methods=("PUT",))

    assert codes(verdict.problems) == [cors.METHOD_NOT_ALLOWED]
    assert "only for requests without credentials" in verdict.problems[0].why


def test_judge_header_names_compare_case_insensitively():
    headers = (
        *ALLOWED,
        ("access-control-allow-methods", "PUT"),
        ("access-control-allow-headers", "Authorization, Content-Type"),
    )

    assert judge(headers).ok


def test_judge_wildcard_headers_never_cover_authorization():
    headers = (
        ("access-control-allow-origin", "*"),
        ("access-control-allow-methods", "PUT"),
        ("access-control-allow-headers", "*"),
    )

    verdict = judge(headers, headers, methods=("PUT",), credentials=False)

    assert codes(verdict.problems) == [cors.HEADER_NOT_ALLOWED]
    assert "lacks authorization" in verdict.problems[0].why
    assert "never covers authorization" in verdict.problems[0].why


def test_judge_missing_request_header_is_named():
    headers = (
        *ALLOWED,
        ("access-control-allow-methods", "PUT"),
        ("access-control-allow-headers", "content-type"),
    )

    verdict = judge(headers)

    assert codes(verdict.problems) == [cors.HEADER_NOT_ALLOWED]
    assert verdict.problems[0].browser == (
        "the browser blocks requests sending authorization"
    )


def test_judge_proxy_502_is_not_blamed_on_cors():
    verdict = judge((), (), status=502, actual_status=502)

    assert codes(verdict.problems) == [cors.GATEWAY_ERROR]
    problem = verdict.problems[0]
    assert "CORS is not the cause" in problem.why
    assert "inv verify.api" in problem.fix
    assert "flyctl logs --app octodrop-platform-api --no-tail" in problem.fix
    assert not verdict.fixable


def test_judge_app_500_without_cors_headers_is_a_server_error():
    verdict = judge(PREFLIGHT_ALLOWED, (), actual_status=500)

    assert codes(verdict.problems) == [cors.SERVER_ERROR]


def test_judge_non_2xx_preflight_blocks_the_request():
    verdict = judge(PREFLIGHT_ALLOWED, status=405)

    assert codes(verdict.problems) == [cors.PREFLIGHT_STATUS]


def test_judge_echoed_origin_without_vary_is_a_warning():
    no_vary = ALLOWED[:2]

    verdict = judge(PREFLIGHT_ALLOWED, no_vary)

    assert verdict.ok
    assert codes(verdict.warnings) == [cors.VARY_MISSING]


@pytest.mark.parametrize(
    ("text", "origin", "note"),
    [
        (ORIGIN, ORIGIN, ""),
        (ORIGIN + "/", ORIGIN, "trailing slash"),
        (ORIGIN + "/app/", ORIGIN, "has a path"),
        ("HTTPS://App.Example.com:443", ORIGIN, "not written as browsers send it"),
        ("http://localhost:5173", "http://localhost:5173", ""),
        ("app.example.com", None, "needs https://"),
        ("*", None, "list each frontend origin"),
        ("https://user@app.example.com", None, "user name"),
    ],
)
def test_normalise_origin(text, origin, note):
    found, why = cors.normalise_origin(text)

    assert found == origin
    assert note in why
    assert bool(why) == bool(note)


def test_load_settings_accepts_comma_separated_strings_as_from_env():
    loaded, problems, warnings = cors.load_settings(
        {
            "origins": f"{ORIGIN}/, https://www.example.com,{ORIGIN}",
            "methods": "get, put",
            "request_headers": "Authorization",
            "credentials": "0",
            "timeout": "2.5",
        }
    )

    assert problems == []
    assert loaded.origins == (ORIGIN, "https://www.example.com")
    assert loaded.methods == ("GET", "PUT")
    assert loaded.request_headers == ("authorization",)
    assert loaded.credentials is False
    assert loaded.timeout == 2.5
    assert loaded.url == "https://octodrop-platform-api.fly.dev/modules"
    assert len(warnings) == 1 and "trailing slash" in warnings[0]


def test_load_settings_names_every_problem_at_once():
    loaded, problems, _ = cors.load_settings(
        {
            "origins": [],
            "api_url": "octodrop-platform-api.fly.dev",
            "path": "modules",
            "methods": ["OPTIONS"],
            "credentials": "maybe",
            "timeout": 0,
        }
    )

    assert loaded is None
    assert len(problems) == 6
    assert problems[0].startswith("octo.cors.origins is empty")


def test_merge_origins_keeps_current_normalises_and_adds_once():
    value, notes = cors.merge_origins(
        "https://old.example.com/, https://app.example.com", [ORIGIN, "https://b.io"]
    )

    assert value == "https://old.example.com,https://app.example.com,https://b.io"
    assert len(notes) == 1 and "trailing slash" in notes[0]


def test_render_exchange_is_curl_shaped_and_bounded():
    answer = cors.Answer(502, (("Via", "1.1 fly.io"),), "x" * 5000, "Bad Gateway")
    sent = cors.preflight_headers(ORIGIN, "POST", HEADERS)

    text = cors.render_exchange(cors.Exchange("OPTIONS", "/modules", sent, answer))

    assert text.startswith(
        "> OPTIONS /modules\n> origin: https://app.example.com\n"
        "> access-control-request-method: POST\n"
        "> access-control-request-headers: authorization,content-type\n"
        "< HTTP/1.1 502 Bad Gateway\n< via: 1.1 fly.io\n\n"
    )
    assert len(text) < 2300


def test_every_finding_with_a_catalogue_entry_diagnoses_its_own_evidence():
    cases = {
        "fly-proxy-502": judge((), (), status=502, actual_status=502),
        "cors-origin-not-allowed": judge((), ()),
        "cors-trailing-slash": judge(
            (("access-control-allow-origin", ORIGIN + "/"),), ()
        ),
        "cors-wildcard-credentials": judge(
            (
                ("access-control-allow-origin", "*"),
                ("access-control-allow-credentials", "true"),
            ),
            (),
        ),
    }
    for failure_id, verdict in cases.items():
        text = cors.render_exchange(verdict.problems[0].evidence)

        assert [f.id for f in diagnose(text, "http")] == [failure_id]


def test_every_http_catalogue_entry_has_a_sample_that_triggers_only_it():
    http_ids = [f.id for f in catalogue() if f.source == "http"]

    assert http_ids
    for failure_id in http_ids:
        samples = sorted((SAMPLES / "failures").glob(f"{failure_id}.*txt"))
        assert samples, failure_id
        for sample in samples:
            found = [f.id for f in diagnose(sample.read_text(encoding="utf-8"))]
            assert found == [failure_id], sample.name


def test_healthy_cors_answers_trigger_no_catalogue_entry():
    samples = sorted((SAMPLES / "healthy").glob("cors-*.txt"))

    assert samples
    for sample in samples:
        assert diagnose(sample.read_text(encoding="utf-8")) == (), sample.name
