"""`inv release` and its steps, run as an operator runs them."""

import os
import sys

import pytest
from conftest import API, SENTINEL_TOKEN, WORKER

STEPS = [
    "preflight",
    "auth.check",
    "secrets.check",
    "deploy.api",
    "verify.api",
    "deploy.worker",
    "verify.worker",
]


def deployed(fly) -> set[str]:
    """The apps the double received a deploy for."""
    return {
        call["argv"][call["argv"].index("--app") + 1]
        for call in fly.calls()
        if call["command"] == "deploy"
    }


def test_clean_release_deploys_both_apps_and_prints_the_summary(inv, fly):
    result = inv("release", "--yes")

    assert result.code == 0, result.output
    summary = result.stdout[result.stdout.index("release summary") :]
    for step in STEPS:
        assert f"{step} " in summary
    assert "failed" not in summary
    assert "v3 -> v4" in summary
    assert fly.state["apps"][API]["machines"][0]["version"] == 4
    assert fly.state["apps"][WORKER]["machines"][0]["version"] == 4
    assert "polls: after" in result.stderr


def test_release_passes_app_and_config_explicitly_to_every_deploy(inv, fly, project):
    inv("release", "--yes")

    deploys = [c["argv"] for c in fly.calls() if c["command"] == "deploy"]
    assert [d[d.index("--app") + 1] for d in deploys] == [API, WORKER]
    assert [d[d.index("--config") + 1] for d in deploys] == [
        "fly.toml",
        "fly.worker.toml",
    ]
    assert {c["cwd"] for c in fly.calls()} == {str(project)}


def test_missing_secret_stops_before_any_deploy(inv, fly):
    fly.update(lambda s: s["apps"][WORKER]["secrets"].pop("WORKER_BATCH"))

    result = inv("release", "--yes")

    assert result.code == 1
    assert "step secrets.check failed" in result.stderr
    assert "octodrop-platform-worker: WORKER_BATCH" in result.stderr
    assert deployed(fly) == set()


def test_not_logged_in_names_the_login_fix(inv, fly):
    fly.log_out()

    result = inv("release", "--yes")

    assert result.code == 1
    assert "step auth.check failed" in result.stderr
    assert "no access token available" in result.stderr
    assert "flyctl auth login" in result.stderr
    assert deployed(fly) == set()


def test_not_authorized_suggests_logout_then_login(inv, fly):
    fly.restrict_token("tok-operator", [API])

    result = inv("auth.check")

    assert result.code == 1
    assert f"{WORKER}) not reachable" in result.stderr
    assert "Not authorized to access this firecrackerapp" in result.stderr
    assert "flyctl auth logout`, then `flyctl auth login" in result.stderr


def test_app_not_found_points_at_the_settings(inv, fly):
    fly.update(lambda s: s["apps"].pop(WORKER))

    result = inv("auth.check")

    assert result.code == 1
    assert f'Could not find App "{WORKER}"' in result.stderr
    assert "invoke.yaml" in result.stderr


def test_deploy_failing_health_checks_stops_the_release_at_deploy_api(inv, fly):
    fly.fault("deploy_health_fail", API)

    result = inv("release", "--yes", "--rollback", "never")

    assert result.code == 1
    assert "step deploy.api failed; nothing after it ran" in result.stderr
    assert "timeout reached waiting for health checks to pass" in result.stderr
    old_image = fly.state["apps"][API]["releases"][2]["image"]
    assert f"--image {old_image}" in result.stderr
    assert deployed(fly) == {API}


def test_health_that_turns_good_after_a_cold_start_passes(inv, fly, health):
    health.mode, health.good_after = "after", 2.0

    result = inv("verify.api")

    assert result.code == 0, result.output
    assert "not yet healthy" in result.stderr
    assert "HTTP 503" in result.stderr
    assert health.hits > 1


def test_health_that_never_turns_good_fails_at_the_deadline(inv, health):
    health.mode = "never"

    result = inv("release", "--yes")

    assert result.code == 1
    assert "step verify.api failed" in result.stderr
    assert "not healthy within 6 s; last answer: HTTP 503" in result.stderr


def test_a_hung_health_endpoint_is_bounded_by_the_deadline(inv, health):
    health.mode = "hang"

    result = inv("verify.api", env={"INVOKE_OCTO_TIMEOUTS_HEALTH": "3"})

    assert result.code == 1
    assert "no answer within" in result.stderr


def test_silent_worker_fails_with_hints_and_last_lines(inv, fly):
    fly.fault("silent", WORKER)

    result = inv("release", "--yes", "--rollback", "never")

    assert result.code == 1
    assert "step verify.worker failed" in result.stderr
    assert "deploy.worker │ ok" in result.stdout
    assert "v3 -> v4" in result.stdout.split("deploy.worker")[1]
    assert "no 'jobs.claim_batch' line" in result.stderr
    assert "worker_start worker_id=" in result.stderr
    assert "check: log level" in result.stderr


def test_a_hung_flyctl_is_stopped_at_the_command_timeout(inv, fly):
    fly.fault("hang", "status")

    result = inv("auth.check", env={"INVOKE_OCTO_TIMEOUTS_COMMAND": "2"})

    assert result.code == 1
    assert "did not finish within 2 s and was stopped" in result.stderr
    assert "Traceback" not in result.output


def test_garbage_from_flyctl_is_reported_not_a_traceback(inv, fly):
    fly.fault("garbage", "secrets list")

    result = inv("secrets.check")

    assert result.code == 1
    assert "is not JSON" in result.stderr
    assert "Traceback" not in result.output


def test_without_flyctl_release_exits_2_with_install_instructions(inv, fly):
    path = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if not (p and _has_flyctl(p))
    )

    result = inv("release", "--yes", env={"PATH": path})

    assert result.code == 2
    assert "flyctl not found" in result.stderr
    assert "install.ps1" in result.stderr


def test_without_flyctl_dry_run_still_prints_the_plan(inv, fly):
    path = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if not (p and _has_flyctl(p))
    )

    result = inv("release", "--dry-run", env={"PATH": path})

    assert result.code == 0, result.output
    assert "would run: flyctl auth whoami --json" in result.stderr
    assert (
        "would run: flyctl secrets list --app octodrop-platform-worker" in result.stderr
    )
    assert "would run: flyctl deploy --app octodrop-platform-api" in result.stderr
    assert "would run: flyctl deploy --app octodrop-platform-worker" in result.stderr
    assert result.stderr.index("octodrop-platform-api --config") < result.stderr.index(
        "octodrop-platform-worker --config"
    )
    assert fly.calls() == []


def test_dry_run_runs_the_reads_and_changes_nothing(inv, fly):
    result = inv("release", "--dry-run")

    assert result.code == 0, result.output
    assert "would run: flyctl deploy" in result.stderr
    assert "deploy" not in fly.commands()
    assert "secrets list" in fly.commands()


def test_release_without_a_terminal_and_without_yes_exits_2(inv, fly):
    result = inv("release")

    assert result.code == 2
    assert "--yes" in result.stderr
    assert fly.calls() == []


def test_a_malformed_env_file_stops_preflight(inv, fly, project):
    (project / ".env").write_text('OPENAI_MODEL="unclosed\nUSE_DB=true\n')

    result = inv("preflight")

    assert result.code == 2
    assert ".env line 1: not NAME=VALUE" in result.stderr


def test_running_outside_the_repository_root_is_refused(inv, project):
    (project / "tasks" / "sub").mkdir()

    result = inv("preflight", cwd=project / "tasks")

    assert result.code == 2
    assert "not the repository root" in result.stderr


def test_deploy_image_option_reaches_flyctl(inv, fly):
    image = (
        "registry.fly.io/octodrop-platform-api:deployment-01K3OLD0000000000000000001"
    )

    result = inv("deploy.api", "--yes", "--image", image)

    assert result.code == 0, result.output
    (call,) = [c for c in fly.calls() if c["command"] == "deploy"]
    assert call["argv"][-2:] == ["--image", image]
    assert "octodrop-platform-api deployed v4" in result.stderr


def test_ci_token_passes_through_an_empty_access_token_and_never_shows(inv, fly):
    fly.log_out()
    env = {"FLY_ACCESS_TOKEN": "", "FLY_API_TOKEN": SENTINEL_TOKEN}

    result = inv("release", "--yes", env=env)

    assert result.code == 0, result.output
    assert "FLY_ACCESS_TOKEN is set but empty" in result.stderr
    assert "ci@example.com" in result.stderr
    assert SENTINEL_TOKEN not in result.output
    assert not any(SENTINEL_TOKEN in " ".join(c["argv"]) for c in fly.calls())


def test_a_third_app_needs_only_configuration(inv, fly, project):
    with (project / "invoke.yaml").open("a", encoding="utf-8") as fh:
        fh.write(
            "    scheduler:\n"
            "      name: octodrop-platform-worker\n"
            "      config: fly.worker.toml\n"
            "      poll_pattern: jobs.claim_batch\n"
            "      required_secrets: [USE_DB]\n"
        )

    result = inv("verify.app", "--app", "scheduler")

    assert result.code == 0, result.output
    assert "scheduler (octodrop-platform-worker)" in result.stderr


def _has_flyctl(folder: str) -> bool:
    names = ("flyctl", "fly", "flyctl.exe", "fly.exe", "flyctl.cmd")
    return any(os.path.exists(os.path.join(folder, n)) for n in names)


if sys.platform == "win32":  # pragma: no cover - the double's wrapper is POSIX-only
    import pytest

    pytestmark = pytest.mark.skip("the flyctl double's wrapper script is POSIX-only")


@pytest.mark.parametrize("args", [["--yes"], []], ids=["yes", "no-terminal"])
def test_invokes_own_dry_switch_is_refused_with_exit_2(inv, fly, args):
    result = inv("--dry", "release", *args)

    assert result.code == 2
    assert "use the task's --dry-run option" in result.stderr
    assert fly.calls() == []


CLAIM = (
    "INFO:octo.db.query:db_query={'query': 'jobs.claim_batch_any', 'ms': 2.1, "
    "'rowcount': 0, 'params': [1200, 5, '5b8e7f2a']}"
)


def test_an_hours_old_poll_line_in_the_buffer_does_not_pass_a_silent_worker(inv, fly):
    fly.fault("silent", WORKER)
    fly.append_log(WORKER, CLAIM, seconds_ago=2 * 3600)

    result = inv("verify.worker")

    assert result.code == 1, result.output
    assert (
        "1 older 'jobs.claim_batch' line(s) came from the log buffer" in result.stderr
    )


def test_poll_lines_from_before_the_deploy_do_not_pass_a_silent_new_build(inv, fly):
    fly.append_log(WORKER, CLAIM, seconds_ago=1)
    fly.bad_build(WORKER, "silent")

    result = inv("release", "--yes", "--skip-smoke", "--rollback", "never")

    assert result.code == 1, result.output
    assert "step verify.worker failed" in result.stderr


def test_echoed_commands_are_plain_text_in_a_log(inv):
    result = inv("deploy.api", "--yes")

    assert result.code == 0, result.output
    echoed = [ln for ln in result.stdout.splitlines() if "flyctl deploy --app" in ln]
    assert echoed and all(ln.startswith("$ ") for ln in echoed)


def test_auth_check_says_it_drops_an_empty_token_variable(inv):
    result = inv("auth.check", env={"FLY_ACCESS_TOKEN": ""})

    assert result.code == 0, result.output
    assert "FLY_ACCESS_TOKEN is set but empty" in result.stderr
    assert "Remove-Item Env:FLY_ACCESS_TOKEN" in result.stderr


def test_dry_run_without_smoke_settings_still_plans_and_warns(inv, fly):
    result = inv("release", "--dry-run", env={"INVOKE_OCTO_SMOKE_ENTITY_ID": ""})

    assert result.code == 0, result.output
    assert "a real release would stop here, before deploying" in result.stderr
    assert "octo.smoke.entity_id" in result.stderr
    assert "would run: flyctl deploy --app" in result.stderr
    assert "deploy" not in fly.commands()


def test_a_real_release_without_smoke_settings_stops_before_anything(inv, fly):
    result = inv("release", "--yes", env={"INVOKE_OCTO_SMOKE_ENTITY_ID": ""})

    assert result.code == 2
    assert "octo.smoke.entity_id" in result.stderr
    assert fly.calls() == []


def test_a_mistyped_number_setting_is_named_not_a_traceback(inv):
    result = inv("verify.api", env={"INVOKE_OCTO_TIMEOUTS_HEALTH": "abc"})

    assert result.code == 2
    assert "octo.timeouts.health must be a number of seconds" in result.stderr
    assert "Traceback" not in result.output


def test_a_rejected_token_variable_is_named_as_the_fix_not_a_login(inv, fly):
    result = inv("auth.check", env={"FLY_API_TOKEN": "FlyV1 fm2_not-a-known-token"})

    assert result.code == 1
    assert "FLY_API_TOKEN is set, so flyctl uses that token, not your login" in (
        result.stderr
    )
    assert "flyctl auth logout" not in result.stderr
    assert "fm2_not-a-known-token" not in result.output


def test_without_flyctl_preflight_still_checks_the_config_files(inv, project):
    (project / "fly.worker.toml").unlink()

    result = inv("preflight", env={"PATH": "/nonexistent"})

    assert result.code == 2
    assert "install flyctl" in result.stderr
    assert (
        "fly.worker.toml (Fly config of octodrop-platform-worker) does not exist"
        in (result.stderr)
    )
