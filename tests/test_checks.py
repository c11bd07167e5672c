"""The verifiers, fed with recorded flyctl output."""

import json
from pathlib import Path

import pytest

from tasks import checks

SAMPLES = Path(__file__).with_name("samples")


def sample(name: str):
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def test_parse_version_reads_compact_json_and_text():
    assert checks.parse_version((SAMPLES / "version.json").read_text()) == "0.4.87"
    assert checks.parse_version("flyctl v0.3.200 linux/amd64 Commit: x") == "0.3.200"


def test_parse_version_rejects_garbage():
    with pytest.raises(checks.ParseError):
        checks.parse_version("<html>proxy error</html>")


def test_parse_secrets_reads_status_no_status_and_graphql_shapes():
    current = checks.parse_secrets(sample("secrets-list.json"))
    without = checks.parse_secrets(sample("secrets-list-nostatus.json"))
    graphql = checks.parse_secrets(
        [{"Name": "DATABASE_URL", "Digest": "cdbe3268", "CreatedAt": "2025-03-28"}]
    )

    assert [(e.name, e.status) for e in current][-1] == ("STRIPE_API_KEY", "Staged")
    assert all(e.status == "" for e in without)
    assert graphql == [checks.SecretEntry("DATABASE_URL", "cdbe3268", "")]
    assert checks.parse_secrets(sample("secrets-list-empty.json")) == []


def test_compare_secret_names_reports_missing_unexpected_and_staged():
    entries = checks.parse_secrets(sample("secrets-list.json"))

    names = checks.compare_secret_names(
        entries, ["DATABASE_URL", "OPENAI_API_KEY"], optional=["SECRET_KEY"]
    )

    assert names.missing == ("OPENAI_API_KEY",)
    assert names.unexpected == ("STRIPE_API_KEY",)
    assert names.staged == ("STRIPE_API_KEY",)


def test_parse_releases_sorts_newest_first_with_images():
    releases = checks.parse_releases(sample("releases.json"))

    assert [r.version for r in releases][:2] == [14, 13]
    assert releases[0].status == "failed"
    assert releases[1].image.startswith("registry.fly.io/example-api:deployment-")


def test_parse_release_line_finds_the_emitted_json_line():
    line = (SAMPLES / "deploy-release-line.json").read_text()
    stdout = (SAMPLES / "deploy-success.stdout.txt").read_text() + line

    release = checks.parse_release_line(stdout)

    assert release == checks.Release(
        13,
        "complete",
        "registry.fly.io/example-api:deployment-01K3B7Q9X2M4N6P8R0S2T4V6W8",
    )
    assert checks.parse_release_line("no json here") is None


def test_parse_status_reads_machines_versions_and_checks():
    status = checks.parse_status(sample("status.json"))

    assert status.version == 13
    assert [m.id for m in status.machines] == ["3d8d9e4b7e1289", "148e272a642389"]
    assert {m.version for m in status.machines} == {"13"}
    assert status.machines[0].checks[0].status == "passing"


def test_judge_machines_passes_a_healthy_app():
    status = checks.parse_status(sample("status.json"))

    verdict = checks.judge_machines(status, 13, auto_stop=False)

    assert verdict == checks.MachineVerdict((), (), True)


def test_judge_machines_reports_every_problem_at_once():
    data = sample("status.json")
    data["Machines"][0]["checks"][0].update(status="critical", output="timeout")
    data["Machines"][1]["config"]["metadata"]["fly_release_version"] = "12"

    verdict = checks.judge_machines(checks.parse_status(data), 13, auto_stop=False)

    assert len(verdict.problems) == 2
    assert (
        "check servicecheck-00-http-8080 is critical (timeout)" in verdict.problems[0]
    )
    assert "runs release v12, expected v13" in verdict.problems[1]


def test_judge_machines_tolerates_auto_stopped_machines_only_when_scaling_to_zero():
    data = sample("status.json")
    data["Machines"][0]["state"] = "stopped"
    status = checks.parse_status(data)

    assert checks.judge_machines(status, 13, auto_stop=True).problems == ()
    assert checks.judge_machines(status, 13, auto_stop=False).problems


def test_judge_machines_sees_a_crash_loop_in_exit_events():
    data = sample("status-worker.json")
    data["Machines"][0]["events"] += [{"type": "exit", "status": "stopped"}] * 3

    verdict = checks.judge_machines(checks.parse_status(data), None, auto_stop=False)

    assert "crash loop" in verdict.problems[0]


def test_judge_machines_waits_while_a_machine_is_starting():
    data = sample("status-worker.json")
    data["Machines"][0]["state"] = "starting"

    verdict = checks.judge_machines(checks.parse_status(data), None, auto_stop=False)

    assert not verdict.settled


@pytest.mark.parametrize(
    ("status", "body", "healthy"),
    [
        (200, '{"ok": true}', True),
        (200, '{"ok": false}', False),
        (200, '{"status": "ok"}', False),
        (200, "<html>502 Bad Gateway</html>", False),
        (503, '{"ok": true}', False),
        (502, "", False),
    ],
    ids=["ok", "ok-false", "other-json", "html", "503", "502-empty"],
)
def test_judge_health(status, body, healthy):
    assert (checks.judge_health(status, body) is None) is healthy


def test_is_poll_line_matches_scoped_and_shared_queries():
    def line(message):
        return checks.LogLine("t", "m1", "syd", "info", message)

    shared = line("INFO:octo.db.query:db_query={'query': 'jobs.claim_batch_any'}")
    slow = line("WARNING:octo.db.query:db_slow_query={'query': 'jobs.claim_batch'}")
    other = line("INFO:octo:GET /health 200 route=health")

    assert checks.is_poll_line(shared, "jobs.claim_batch")
    assert checks.is_poll_line(slow, "jobs.claim_batch")
    assert not checks.is_poll_line(other, "jobs.claim_batch")


def test_looks_like_error_by_level_or_words():
    def line(level, message):
        return checks.LogLine("t", "m1", "syd", level, message)

    assert checks.looks_like_error(line("error", "boom"))
    assert checks.looks_like_error(line("info", "Traceback (most recent call last):"))
    assert checks.looks_like_error(
        line("info", "RuntimeError: SUPABASE_URL is required")
    )
    assert not checks.looks_like_error(line("info", "INFO:octo:errors_total=0 terror"))


def test_config_problems_for_the_api_and_the_worker():
    api = {
        "app": "octo-api",
        "http_service": {"internal_port": 8080, "checks": [{"path": "/health"}]},
    }

    assert checks.config_problems(api, "octo-api", http=True) == []
    assert (
        checks.config_problems({"app": "octo-worker"}, "octo-worker", http=False) == []
    )
    assert checks.config_problems({"app": "x"}, "octo-api", http=True) == [
        "names app 'x', but settings deploy it as 'octo-api'",
        "has no [http_service], so Fly has no health check",
    ]


def test_log_time_reads_flyctls_nanosecond_timestamps():
    assert checks.log_time("1970-01-01T00:01:00.500000000Z") == 60.5
    assert checks.log_time("1970-01-01T01:00:00+01:00") == 0.0
    assert checks.log_time("yesterday") is None


def test_a_line_older_than_the_bound_is_not_fresh_and_an_unreadable_one_is():
    old = checks.LogLine("1970-01-01T00:00:10Z", "m1", "syd", "info", "x")
    unknown = checks.LogLine("", "m1", "syd", "info", "x")

    assert not checks.is_fresh(old, not_before=11.0)
    assert checks.is_fresh(old, not_before=10.0)
    assert checks.is_fresh(unknown, not_before=11.0)


def test_a_machine_started_at_its_newest_start_event():
    events = (
        {"type": "start", "timestamp": 3000},
        {"type": "exit", "timestamp": 2000},
        {"type": "start", "timestamp": 1000},
    )
    machine = checks.Machine("m1", "started", "syd", "3", "img", events=events)

    assert machine.started_at == 3.0
    assert checks.Machine("m2", "started", "syd", "3", "img").started_at is None
