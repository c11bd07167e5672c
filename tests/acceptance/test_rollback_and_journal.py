"""Rollback and the release journal (runbook section 9), run as an operator does."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import API, WORKER

# The images the default double state runs (release v3) and ran before (v2).
V2 = {
    app: f"registry.fly.io/{app}:deployment-01K3OLD0000000000000000002"
    for app in (API, WORKER)
}


# A silent worker fails verification only when this wait runs out.
SHORT_LOG_WAIT = {"INVOKE_OCTO_TIMEOUTS_WORKER_LOGS": "2"}


def images(fly, app):
    return {m["image"] for m in fly.state["apps"][app]["machines"]}


def v3_image(fly, app):
    return next(
        r["image"] for r in fly.state["apps"][app]["releases"] if r["version"] == 3
    )


def journal(project):
    path = project / ".octo" / "journal.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def deploys(fly):
    return [call["argv"] for call in fly.calls() if call["command"] == "deploy"]


def test_release_failing_worker_verification_rolls_back_both_apps(inv, fly, project):
    before = {app: v3_image(fly, app) for app in (API, WORKER)}
    fly.bad_build(WORKER, "silent")

    result = inv("release", "--yes", env=SHORT_LOG_WAIT)

    assert result.code == 1, result.output
    assert images(fly, API) == {before[API]}
    assert images(fly, WORKER) == {before[WORKER]}
    assert "step verify.worker failed; the apps it deployed are back" in result.stderr
    assert f"{WORKER}: back on the image of v3 (v5), verified" in result.stderr
    assert "next: fix the cause shown above, then `inv release` again" in result.stderr
    for step in ("verify.worker", "rollback.worker", "rollback.verify.api"):
        assert step in result.stdout
    record = journal(project)[-1]
    assert record["task"] == "release"
    assert record["result"] == "failed, rolled back"
    entries = {e["key"]: e for e in record["apps"]}
    for key, app in (("api", API), ("worker", WORKER)):
        assert entries[key]["before"]["image"] == before[app]
        assert entries[key]["after"]["image"] == before[app]
        assert entries[key]["after"]["version"] == 5
        assert entries[key]["rollback"]["result"] == "verified"
    steps = {s["step"]: s["result"] for s in record["steps"]}
    assert steps["verify.worker"] == "failed"
    assert steps["rollback.verify.worker"] == "ok"


def test_release_with_rollback_off_leaves_new_images_and_says_so(inv, fly, project):
    fly.bad_build(WORKER, "silent")

    result = inv("release", "--yes", "--rollback", "never", env=SHORT_LOG_WAIT)

    assert result.code == 1, result.output
    assert "stay on the new image(s)" in result.stderr
    assert "inv rollback --yes" in result.stderr
    assert len(deploys(fly)) == 2
    assert fly.state["apps"][WORKER]["machines"][0]["version"] == 4
    assert journal(project)[-1]["result"] == "failed, not rolled back"


def test_release_failed_deploy_rolls_back_partly_updated_machines(inv, fly, project):
    """A health-check failure leaves one machine on the new image: it goes back."""
    old = v3_image(fly, API)
    fly.bad_build(API, "deploy_health_fail")

    result = inv("release", "--yes")

    assert result.code == 1, result.output
    assert images(fly, API) == {old}
    assert "mixed" not in result.stderr or "1 on v4" in result.stderr
    assert not any(WORKER in argv for argv in deploys(fly))
    assert journal(project)[-1]["result"] == "failed, rolled back"


def test_release_whose_rollback_fails_prints_the_commands_left(inv, fly):
    old = v3_image(fly, API)
    fly.bad_build(API, "deploy_health_fail")
    fly.update(lambda s: s.update(missing_images=[old]))

    result = inv("release", "--yes")

    assert result.code == 1, result.output
    assert "the rollback did not finish" in result.stderr
    assert "run by hand what remains:" in result.stderr
    assert f"--image {old}" in result.stderr
    assert "inv verify.api" in result.stderr


def test_rollback_returns_both_apps_to_the_pair_before_the_last_release(
    inv, fly, project
):
    before = {app: v3_image(fly, app) for app in (API, WORKER)}
    assert inv("release", "--yes").code == 0

    result = inv("rollback", "--yes")

    assert result.code == 0, result.output
    assert images(fly, API) == {before[API]}
    assert images(fly, WORKER) == {before[WORKER]}
    worker_first = [argv[argv.index("--app") + 1] for argv in deploys(fly)[2:]]
    assert worker_first == [WORKER, API]
    assert "rolled back and verified" in result.stderr
    record = journal(project)[-1]
    assert (record["task"], record["result"]) == ("rollback", "ok")


def test_rollback_to_version_deploys_that_image_and_verifies(inv, fly):
    result = inv("rollback.api", "--to", "2", "--yes")

    assert result.code == 0, result.output
    assert images(fly, API) == {V2[API]}
    argv = deploys(fly)[0]
    assert argv[argv.index("--image") + 1] == V2[API]
    assert "--remote-only" in argv
    assert "rollback.verify.api" in result.stdout


def test_rollback_skips_a_newer_release_that_failed(inv, fly):
    def add_failed_then_current(state):
        releases = state["apps"][WORKER]["releases"]
        releases[-1]["status"] = "failed"
        releases[-1]["image"] = "registry.fly.io/x:failed"
        releases.append(
            dict(
                releases[-1],
                id="rel4",
                version=4,
                status="complete",
                image="registry.fly.io/x:current",
            )
        )

    fly.update(add_failed_then_current)

    result = inv("rollback.worker", "--yes")

    assert result.code == 0, result.output
    assert images(fly, WORKER) == {V2[WORKER]}
    assert "passed over: v3 (failed)" in result.stderr


def test_rollback_without_an_earlier_release_changes_nothing(inv, fly):
    fly.update(
        lambda s: s["apps"][WORKER].update(releases=s["apps"][WORKER]["releases"][-1:])
    )

    result = inv("rollback.worker", "--yes")

    assert result.code == 2, result.output
    assert "has no earlier complete release" in result.stderr
    assert deploys(fly) == []


def test_rollback_to_the_running_image_is_a_no_op(inv, fly):
    result = inv("rollback.api", "--to", "3", "--yes")

    assert result.code == 0, result.output
    assert "already runs the image of v3" in result.stderr
    assert deploys(fly) == []


def test_rollback_dry_run_shows_the_deploy_and_changes_nothing(inv, fly):
    result = inv("rollback", "--dry-run")

    assert result.code == 0, result.output
    assert f"would run: flyctl deploy --app {WORKER}" in result.stderr
    assert V2[WORKER] in result.stderr
    assert deploys(fly) == []


def test_rollback_lists_secrets_changed_since_the_target(inv, fly):
    assert inv("release", "--yes").code == 0
    fly.update(
        lambda s: s["apps"][API]["secrets"]["OPENAI_MODEL"].update(digest="0" * 16)
    )

    result = inv("rollback", "--dry-run")

    assert "secrets and the Fly config stay as they are now" in result.stderr
    assert f"{API}: secrets changed since v3: OPENAI_MODEL (changed)" in result.stderr
    assert f"{WORKER}: no secret changed since v3" in result.stderr


def test_journal_and_history_hold_no_secret_value(inv, fly, project):
    fly.bad_build(API, "deploy_health_fail")
    inv("release", "--yes")
    inv("rollback.api", "--to", "2", "--yes")
    values = [
        s["value"]
        for app in fly.state["apps"].values()
        for s in app["secrets"].values()
    ]

    table = inv("release.history")
    data = inv("release.history", "--json")

    text = (project / ".octo" / "journal.jsonl").read_text(encoding="utf-8")
    assert table.code == data.code == 0
    assert [r["task"] for r in json.loads(data.stdout)] == ["rollback.api", "release"]
    assert "failed, rolled back" in table.stdout
    assert values and "v-OPENAI_API_KEY" in values
    for value in values:
        assert value not in text
        assert value not in table.output + data.output
    assert "OPENAI_API_KEY" in text  # names and digests are kept


@pytest.mark.skipif(os.name == "nt", reason="sends SIGINT to a process group")
def test_ctrl_c_during_rollback_says_where_each_app_stands(project, fly, health):
    fly.fault("hang", "deploy")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLY_", "INVOKE_", "PYTEST_"))
    }
    env.update(
        PATH=str(fly.bin) + os.pathsep + env.get("PATH", ""),
        FLYCTL_DOUBLE_STATE=str(fly.dir),
        NO_COLOR="1",
        INVOKE_OCTO_APPS_API_HEALTH_URL=health.url,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "rollback", "--yes"],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    for _ in range(200):
        if deploys(fly):
            break
        time.sleep(0.05)
    time.sleep(0.3)  # let the double reach its hang before the signal lands
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert "where each app stands" in stderr
    assert f"{WORKER}: stopped while deploying the image of v2" in stderr
    assert f"{API}: not rolled back; still on v3" in stderr


def test_rollback_without_a_terminal_or_yes_shows_the_plan_and_exits_2(inv, fly):
    result = inv("rollback.api")

    assert result.code == 2, result.output
    assert f"{API} v3 (complete) -> the image of v2" in result.stderr
    assert "pass --yes to confirm" in result.stderr
    assert deploys(fly) == []


def test_a_deploy_task_is_journaled_with_digests(inv, fly, project):
    result = inv("deploy.api", "--yes")

    assert result.code == 0, result.output
    record = journal(project)[-1]
    assert (record["task"], record["result"]) == ("deploy.api", "ok")
    assert record["who"]["fly"] == "operator@example.com"
    [entry] = record["apps"]
    assert (entry["before"]["version"], entry["after"]["version"]) == (3, 4)
    assert len(entry["config_sha256"]) == 64
    digests = fly.state["apps"][API]["secrets"]
    assert entry["secret_digests"] == {n: s["digest"] for n, s in digests.items()}


def test_after_rolling_back_a_failed_deploy_it_does_not_suggest_that_deploy(inv, fly):
    fly.bad_build(WORKER, "crash_loop")

    result = inv("release", "--yes")

    assert result.code == 1, result.output
    assert "step deploy.worker failed; the apps it deployed are back" in result.stderr
    # Deploying the previous image is what the rollback just did.
    assert "next: flyctl deploy" not in result.stderr
    assert "next: fix the cause shown above, then `inv release` again" in result.stderr
