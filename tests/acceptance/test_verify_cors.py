"""`inv verify.cors` against a real local server, as an operator runs it."""

from __future__ import annotations

import json
import socket

from conftest import API, WORKER

APP = "https://app.example.com"
OTHER = "https://www.example.com"
OLD = "https://old.example.com"
# A secret value in .env beside the origins: it must never be shown or sent.
SENTINEL = "sr-SENTINEL-cors-77a1"


def settings(url: str, *origins: str, **more: str) -> dict[str, str]:
    env = {
        "INVOKE_OCTO_CORS_API_URL": url,
        "INVOKE_OCTO_CORS_ORIGINS": ",".join(origins),
        "INVOKE_OCTO_CORS_TIMEOUT": "3",
    }
    env.update({f"INVOKE_OCTO_CORS_{k.upper()}": v for k, v in more.items()})
    return env


def lines_about(result, origin: str, mark: str) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if f"{mark} {origin}: " in ln]


def test_allowed_origin_passes_with_every_preflight_as_a_browser_sends_it(
    inv, cors_api
):
    cors_api.allowed = {APP}

    result = inv("verify.cors", env=settings(cors_api.url, APP))

    assert result.code == 0, result.output
    assert (
        f"✓ {APP}: the browser allows GET, POST, PUT /modules with "
        "authorization, content-type and credentials"
    ) in result.stderr
    preflights = [r for r in cors_api.requests if r["method"] == "OPTIONS"]
    assert [r["headers"]["Access-Control-Request-Method"] for r in preflights] == [
        "GET",
        "POST",
        "PUT",
    ]
    assert all(r["headers"]["Origin"] == APP for r in cors_api.requests)
    assert {r["headers"]["Access-Control-Request-Headers"] for r in preflights} == {
        "authorization,content-type"
    }
    assert [r["path"] for r in cors_api.requests if r["method"] == "GET"] == [
        "/modules"
    ]


def test_missing_origin_checks_every_origin_then_fails_once_naming_the_fix(
    inv, cors_api, fly
):
    cors_api.allowed = {OTHER}

    result = inv("verify.cors", env=settings(cors_api.url, APP, OTHER))

    assert result.code == 1, result.output
    problem = lines_about(result, APP, "✗")
    assert problem and "no Access-Control-Allow-Origin" in problem[0]
    assert lines_about(result, OTHER, "✓")
    assert f"fix: add {APP} to OCTO_CORS_ORIGINS on the API" in result.stderr
    assert (
        f"1 of 2 origin(s) would get CORS errors from {cors_api.url}/modules: {APP}\n"
        in (result.stderr)
    )
    assert "diagnosis: The API answered the frontend's origin without" in result.stderr
    assert "next: inv verify.cors --fix" in result.stderr
    assert "secrets import" not in fly.commands()


def test_trailing_slash_in_the_answer_is_named(inv, cors_api):
    cors_api.mode = "trailing-slash"

    result = inv("verify.cors", env=settings(cors_api.url, APP))

    assert result.code == 1, result.output
    problem = lines_about(result, APP, "✗")
    assert (
        f"Access-Control-Allow-Origin is '{APP}/' with a trailing slash" in problem[0]
    )
    assert "diagnosis: The API echoes the origin with a trailing slash" in result.stderr


def test_configured_origin_with_trailing_slash_is_checked_as_browsers_send_it(
    inv, cors_api
):
    cors_api.allowed = {APP}

    result = inv("verify.cors", env=settings(cors_api.url, APP + "/"))

    assert result.code == 0, result.output
    assert (
        f"! octo.cors.origins: '{APP}/' has a trailing slash; browsers send "
        f"'{APP}'; write it as {APP}"
    ) in result.stderr
    assert {r["headers"]["Origin"] for r in cors_api.requests} == {APP}


def test_wildcard_with_credentials_is_refused(inv, cors_api):
    cors_api.mode = "wildcard"

    result = inv("verify.cors", env=settings(cors_api.url, APP))

    assert result.code == 1, result.output
    assert f"✗ {APP}: the browser blocks every request with credentials" in (
        result.stderr
    )
    assert "diagnosis: The API answers Access-Control-Allow-Origin: *" in result.stderr


def test_wildcard_without_credentials_passes_with_a_warning(inv, cors_api):
    cors_api.mode = "wildcard"

    result = inv("verify.cors", env=settings(cors_api.url, APP, credentials="0"))

    assert result.code == 0, result.output
    assert f"! {APP}: the browser allows requests without credentials only" in (
        result.stderr
    )


def test_method_not_allowed_is_named(inv, cors_api):
    cors_api.mode = "methods"

    result = inv("verify.cors", env=settings(cors_api.url, APP))

    assert result.code == 1, result.output
    problem = lines_about(result, APP, "✗")
    assert len(problem) == 1
    assert "the browser blocks PUT requests" in problem[0]
    assert "(GET, POST) lacks PUT" in problem[0]


def test_a_502_before_cors_is_reached_points_at_the_app_not_cors(inv, cors_api):
    cors_api.mode = "proxy-502"

    result = inv("verify.cors", "--fix", "--yes", env=settings(cors_api.url, APP))

    assert result.code == 1, result.output
    problem = lines_about(result, APP, "✗")
    assert "the browser reports a CORS error" in problem[0]
    assert "HTTP 502 from the proxy" in problem[0]
    assert "CORS is not the cause" in problem[0]
    assert "diagnosis: Fly's proxy answered" in result.stderr
    assert f"flyctl logs --app {API} --no-tail" in result.stderr
    assert "next: inv verify.api" in result.stderr
    assert "nothing for --fix to change" in result.stderr


def test_without_origins_exits_2_naming_the_setting(inv, cors_api):
    result = inv("verify.cors", env=settings(cors_api.url))

    assert result.code == 2, result.output
    assert "octo.cors.origins is empty" in result.stderr
    assert cors_api.requests == []


def test_an_unreachable_api_is_one_failure_naming_the_url(inv):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    result = inv("verify.cors", env=settings(url, APP))

    assert result.code == 1, result.output
    assert f"cannot reach {url}/modules" in result.stderr
    assert "Traceback" not in result.output


def test_fix_stages_the_origin_on_the_api_redeploys_and_checks_again(
    inv, cors_api, fly, project
):
    cors_api.fly = fly
    (project / ".env").write_text(
        f"OCTO_CORS_ORIGINS='{OLD}/'\nSUPABASE_SERVICE_ROLE_KEY='{SENTINEL}'\n",
        encoding="utf-8",
    )

    result = inv("verify.cors", "--fix", "--yes", env=settings(cors_api.url, APP))

    assert result.code == 0, result.output
    expected = f"{OLD},{APP}"
    assert f"✓ new OCTO_CORS_ORIGINS: {expected}" in result.stderr
    assert f"OCTO_CORS_ORIGINS='{expected}'" in (project / ".env").read_text()
    assert f"SUPABASE_SERVICE_ROLE_KEY='{SENTINEL}'" in (project / ".env").read_text()
    assert SENTINEL not in result.output
    assert SENTINEL not in json.dumps(fly.calls())
    imports = [c for c in fly.calls() if c["command"] == "secrets import"]
    assert [c["argv"][c["argv"].index("--app") + 1] for c in imports] == [API]
    assert all("--stage" in c["argv"] and c["stdin"] for c in imports)
    assert not any(expected in arg for c in fly.calls() for arg in c["argv"])
    assert fly.secret_value(API, "OCTO_CORS_ORIGINS") == expected
    assert fly.secret_value(WORKER, "OCTO_CORS_ORIGINS") is None
    restarts = [c for c in fly.calls() if c["command"] == "secrets deploy"]
    assert [c["argv"][c["argv"].index("--app") + 1] for c in restarts] == [API]
    assert "deploy" not in fly.commands()  # a secret change builds nothing
    assert lines_about(result, APP, "✗") and lines_about(result, APP, "✓")
    journal = (project / ".octo" / "journal.jsonl").read_text().splitlines()
    assert json.loads(journal[-1])["task"] == "verify.cors"


def set_origins_only_on_fly(fly) -> None:
    """The API holds OCTO_CORS_ORIGINS on Fly, and .env does not."""
    fly.update(
        lambda s: s["apps"][API]["secrets"].update(
            OCTO_CORS_ORIGINS={"digest": "0af1", "value": OLD, "updated": 1}
        )
    )


def test_fix_dry_run_warns_about_fly_only_origins_and_changes_nothing(
    inv, cors_api, fly, project
):
    set_origins_only_on_fly(fly)

    result = inv("verify.cors", "--fix", "--dry-run", env=settings(cors_api.url, APP))

    assert result.code == 1, result.output
    assert f"OCTO_CORS_ORIGINS is set on {API} but not in .env" in result.stderr
    assert "origins set only on Fly are lost" in result.stderr
    assert f"✓ new OCTO_CORS_ORIGINS: {APP}" in result.stderr
    assert "would run: flyctl secrets import" in result.stderr
    assert "would run: flyctl secrets deploy --app" in result.stderr
    assert "dry run: nothing was changed" in result.stderr
    assert "next: inv verify.cors --fix" in result.stderr
    assert not (project / ".env").exists()
    assert {"secrets import", "secrets deploy", "deploy"}.isdisjoint(fly.commands())


def test_fix_under_yes_refuses_to_replace_origins_only_fly_holds(
    inv, cors_api, fly, project
):
    set_origins_only_on_fly(fly)

    result = inv("verify.cors", "--fix", "--yes", env=settings(cors_api.url, APP))

    assert result.code == 1, result.output
    assert "refusing to replace OCTO_CORS_ORIGINS" in result.stderr
    assert fly.secret_value(API, "OCTO_CORS_ORIGINS") == OLD
    assert not (project / ".env").exists()
    assert {"secrets import", "secrets deploy", "deploy"}.isdisjoint(fly.commands())


def test_fix_without_a_terminal_or_yes_exits_2_before_any_request(inv, cors_api):
    result = inv("verify.cors", "--fix", env=settings(cors_api.url, APP))

    assert result.code == 2, result.output
    assert "pass --yes" in result.stderr
    assert cors_api.requests == []
