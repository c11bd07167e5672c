"""The failure catalogue recognises the real wordings, and only those."""

import json
from pathlib import Path

import pytest

from tasks.checks import parse_status
from tasks.diagnose import (
    catalogue,
    diagnose,
    http_evidence,
    machine_evidence,
    merge,
    sources,
)

SAMPLES = Path(__file__).with_name("samples")
FAILURES = SAMPLES / "failures"
HEALTHY = SAMPLES / "healthy"
ENTRIES = {f.id: f for f in catalogue()}


def sample_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in {".txt", ".json"})


def entry_and_source(sample: Path) -> tuple[str, str]:
    """The catalogue id a sample belongs to, and the source it is read as."""
    ident, _, variant = sample.name.removesuffix(sample.suffix).partition(".")
    entry = ENTRIES.get(ident)
    if entry is None:
        return ident, ""
    first = variant.partition(".")[0]
    return ident, first if first in entry.sources else entry.source


def evidence(text: str, source: str) -> str:
    """The text a task gives the catalogue for this source."""
    if source != "machine":
        return text
    data = json.loads(text)
    if isinstance(data, list):  # `machine list --json`
        data = {"Machines": data}
    return machine_evidence(parse_status(data).machines)


def test_every_catalogue_entry_has_a_sample_for_each_source():
    covered = {entry_and_source(p) for p in sample_files(FAILURES)}

    missing = [
        f"{f.id} ({source}): add tests/samples/failures/{f.id}"
        + ("" if source == f.source else f".{source}")
        + ".txt"
        for f in catalogue()
        for source in f.sources
        if (f.id, source) not in covered
    ]

    assert not missing, "catalogue entries without a recorded sample: " + "; ".join(
        missing
    )


def test_every_sample_is_named_after_a_catalogue_entry():
    unknown = [p.name for p in sample_files(FAILURES) if entry_and_source(p)[1] == ""]

    assert not unknown, f"samples named after no catalogue id: {unknown}"


@pytest.mark.parametrize("sample", sample_files(FAILURES), ids=lambda p: p.name)
def test_each_sample_is_recognised_as_its_entry(sample):
    ident, source = entry_and_source(sample)
    if not source:
        pytest.skip("named after no catalogue id (reported above)")
    text = evidence(sample.read_text(encoding="utf-8"), source)

    found = [f.id for f in diagnose(text, source)]

    assert ident in found, f"{sample.name} read as {source!r} gave {found}"


@pytest.mark.parametrize("sample", sample_files(HEALTHY), ids=lambda p: p.name)
def test_healthy_output_triggers_nothing_under_any_source(sample):
    text = sample.read_text(encoding="utf-8")
    found = {}
    for source in sources():
        if source == "machine":
            try:
                rendered = evidence(text, source)
            except (json.JSONDecodeError, ValueError):
                continue  # machine evidence only ever comes from status JSON
        else:
            rendered = text
        found[source] = [f.id for f in diagnose(rendered, source)]

    assert all(not ids for ids in found.values()), found
    assert diagnose(text) == ()


def test_healthy_samples_cover_logs_status_and_deploys():
    names = {p.name for p in sample_files(HEALTHY)}

    assert {"api-logs.txt", "worker-logs.txt", "status-api-woken.json"} <= names
    assert {"deploy-success.stderr.txt", "deploy-success-worker.stdout.txt"} <= names


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("not-logged-in.txt", "not-logged-in"),
        ("not-authorized.status.txt", "not-authorized"),
        ("app-not-found.status.txt", "app-not-found"),
        ("unauthenticated.logs.txt", "unauthenticated"),
        ("deploy-health-checks.txt", "deploy-health-checks"),
        ("no-machines.txt", "no-machines"),
    ],
)
def test_recorded_flyctl_errors_name_exactly_one_entry(sample, expected):
    text = (FAILURES / sample).read_text(encoding="utf-8")

    assert [f.id for f in diagnose(text, "flyctl")] == [expected]


def test_a_source_limits_the_search_to_its_entries():
    text = (FAILURES / "db-password-failed.txt").read_text(encoding="utf-8")

    assert [f.id for f in diagnose(text, "db")] == ["db-password-failed"]
    assert [f.id for f in diagnose(text, "log")] == ["db-password-failed"]
    assert diagnose(text, "flyctl") == ()


def test_generic_database_words_do_not_count_in_app_logs():
    text = "connect to 10.0.0.3:6379 failed: connection refused; timeout expired"

    assert {f.id for f in diagnose(text, "db")} >= {"db-refused", "db-timeout"}
    assert diagnose(text, "log") == ()


def test_a_machine_stopped_on_request_is_auto_stopped_only_while_stopped():
    stopped = (FAILURES / "auto-stopped.machine.json").read_text(encoding="utf-8")
    woken = (HEALTHY / "status-api-woken.json").read_text(encoding="utf-8")

    assert [f.id for f in diagnose(evidence(stopped, "machine"), "machine")] == [
        "auto-stopped"
    ]
    assert diagnose(evidence(woken, "machine"), "machine") == ()


def test_machine_evidence_quotes_the_exit_event_fields():
    text = (FAILURES / "crash-loop.machine.json").read_text(encoding="utf-8")

    rendered = evidence(text, "machine")

    assert "state=stopped" in rendered
    assert "type=exit status=stopped source=flyd exit_code=1 requested_stop=false" in (
        rendered
    )
    assert "restart_count=10" in rendered


def test_http_evidence_is_curl_shaped_answer_after_the_request():
    text = http_evidence(
        502,
        {"Server": "Fly/0e1f (2026-08-20)"},
        "<html></html>",
        request=("GET", "/health", [("Origin", "https://app.example.com")]),
    )

    assert text == (
        "> GET /health\n> origin: https://app.example.com\n"
        "< HTTP/1.1 502 Bad Gateway\n< server: Fly/0e1f (2026-08-20)\n\n<html></html>"
    )
    assert http_evidence(599, [], "").startswith("< HTTP/1.1 599\n")


def test_merge_keeps_the_first_of_each_entry_in_order():
    crash = diagnose("the app appears to be crashing", "flyctl")
    both = diagnose(
        "machine has reached its max restart count of 10\n"
        "RuntimeError: SUPABASE_URL is required for auth",
        "log",
    )

    assert [f.id for f in merge(crash, both)] == [
        "crash-loop",
        "api-supabase-url-missing",
    ]


def test_fixes_name_the_app_they_are_about():
    text = (FAILURES / "crash-loop.log.txt").read_text(encoding="utf-8")

    (failure, *_) = diagnose(text, "log", app="octodrop-platform-worker")

    assert "--app octodrop-platform-worker" in failure.fix
    assert "<app>" not in failure.fix


def test_every_catalogue_entry_has_meaning_and_fix():
    for failure in catalogue():
        assert failure.patterns and failure.meaning and failure.fix, failure.id
        assert failure.sources, failure.id
