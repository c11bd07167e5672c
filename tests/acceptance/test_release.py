"""`inv release` and its steps, run as an operator runs them."""

from conftest import API, WORKER


def test_release_clean_run_deploys_both_apps_and_prints_summary(inv, fly):
    result = inv("release", "--yes")

    assert result.code == 0, result.output
    assert "release summary" in result.stdout
    for step in (
        "preflight",
        "auth.check",
        "secrets.check",
        "deploy.api",
        "verify.api",
        "deploy.worker",
        "verify.worker",
    ):
        assert step in result.stdout
    state = fly.state
    assert state["apps"][API]["machines"][0]["version"] == 4
    assert state["apps"][WORKER]["machines"][0]["version"] == 4
