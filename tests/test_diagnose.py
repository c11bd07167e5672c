"""The failure catalogue recognises flyctl's real wordings."""

from pathlib import Path

import pytest

from tasks.diagnose import catalogue, diagnose

SAMPLES = Path(__file__).with_name("samples")


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("error-not-logged-in.stderr.txt", "not-logged-in"),
        ("error-not-authorized-status.stderr.txt", "not-authorized"),
        ("error-app-not-found-status.stderr.txt", "app-not-found"),
        ("error-app-not-found-secrets-set.stderr.txt", "app-not-found"),
        ("error-logs-unauthorized.stderr.txt", "unauthenticated"),
        ("error-headless-login.stderr.txt", "headless-login"),
        ("deploy-failed-health.stderr.txt", "deploy-health-checks"),
        ("deploy-failed-health-classic.stderr.txt", "deploy-health-checks"),
        ("secrets-deploy-no-machines.stderr.txt", "no-machines"),
    ],
)
def test_recorded_flyctl_errors_are_recognised(sample, expected):
    text = (SAMPLES / sample).read_text(encoding="utf-8")

    assert [f.id for f in diagnose(text, "flyctl")] == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "Error No access token available. Please login with 'flyctl auth login'",
        "Error: failed to get app: Could not resolve App",
        "Error: the app name octo could not be found, did you create the app or "
        "misspell it in the fly.toml file or via -a?",
        "Error: smoke checks for 148e272a642389 failed: the app appears to be crashing",
    ],
    ids=["old-no-token", "old-resolve", "deploy-rewrite", "crash"],
)
def test_older_and_rewritten_wordings_are_recognised(text):
    assert diagnose(text, "flyctl")


@pytest.mark.parametrize(
    "sample", ["deploy-success.stdout.txt", "deploy-success.stderr.txt"]
)
def test_a_healthy_deploy_transcript_triggers_nothing(sample):
    assert diagnose((SAMPLES / sample).read_text(encoding="utf-8")) == ()


def test_fixes_name_the_app_they_are_about():
    text = (SAMPLES / "error-app-not-found-status.stderr.txt").read_text()

    (failure,) = diagnose(text, "flyctl", app="octodrop-platform-api")

    assert "octodrop-platform-api" in failure.fix or "invoke.yaml" in failure.fix


def test_every_catalogue_entry_has_meaning_and_fix():
    for failure in catalogue():
        assert failure.patterns and failure.meaning and failure.fix, failure.id
