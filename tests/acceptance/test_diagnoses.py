"""Known failures are named with their fix wherever they happen."""

from conftest import API, WORKER

WORKER_MACHINE = "6e82541c7d9000"


def stop_worker(fly, **fields) -> None:
    def change(state: dict) -> None:
        state["apps"][WORKER]["machines"][0].update(state="stopped", **fields)

    fly.update(change)


def test_verify_worker_names_an_auto_stopped_worker_and_how_to_start_it(inv, fly):
    stop_worker(fly, stopped_by="autostop")
    fly.append_log(
        WORKER,
        f"App {WORKER} has excess capacity, autostopping machine {WORKER_MACHINE}. "
        "0 out of 1 machines left running (region=syd, process group=worker)",
    )

    result = inv("verify.worker")

    assert result.code == 1
    assert f"machine {WORKER_MACHINE} (syd) is stopped" in result.stderr
    assert "diagnosis: A machine was stopped on request" in result.stderr
    assert f"flyctl machine start <machine id> --app {WORKER}" in result.stderr
    assert result.stderr.count("diagnosis: A machine was stopped") == 1
    assert "crash loop" not in result.stderr


def test_verify_worker_names_a_crash_loop_and_its_database_cause(inv, fly):
    stop_worker(fly, exits=10)
    for line in (
        " INFO Preparing to run: `python -m app.worker` as root",
        "psycopg.OperationalError: connection failed: connection to server at "
        '"3.65.151.229", port 6543 failed: FATAL:  password authentication failed '
        'for user "postgres"',
        " INFO Main child exited normally with code: 1",
        "machine has reached its max restart count of 10",
    ):
        fly.append_log(WORKER, line)

    result = inv("verify.worker")

    assert result.code == 1
    assert "exited 10 times recently: a crash loop" in result.stderr
    assert "diagnosis: The app's process exits soon after it starts" in result.stderr
    assert f"fix: Read `flyctl logs --app {WORKER} --no-tail`" in result.stderr
    assert "diagnosis: The server refused the password" in result.stderr
    assert "password authentication failed for user" in result.stderr
    assert "max restart count of 10" in result.stderr
    assert "stopped on request" not in result.stderr


def test_a_deploy_that_crashes_names_the_crash_from_the_apps_logs(inv, fly):
    fly.fault("crash_loop", API)

    result = inv("deploy.api", "--yes")

    assert result.code == 1
    assert "the app appears to be crashing" in result.stderr
    assert "diagnosis: The app's process exits soon after it starts" in result.stderr
    assert "Main child exited normally with code: 1" in result.stderr
    assert result.stderr.count("diagnosis: The app's process exits") == 1


def test_a_healthy_release_prints_no_diagnosis(inv, fly):
    result = inv("release", "--yes")

    assert result.code == 0, result.output
    assert "diagnosis:" not in result.output
    assert "fix:" not in result.output


def test_a_job_never_claimed_names_the_database_error_in_the_worker_logs(
    inv, fly, smoke_api
):
    smoke_api.job_mode = "unclaimed"
    fly.fault("silent", WORKER)
    fly.append_log(
        WORKER,
        "psycopg.OperationalError: connection failed: connection to server at "
        '"3.65.151.229", port 6543 failed: FATAL:  Tenant or user not found',
    )

    result = inv("smoke", env={"INVOKE_OCTO_SMOKE_DEADLINE": "1"})

    assert result.code == 1, result.output
    assert "step smoke.job failed" in result.stderr
    assert "diagnosis: The shared pooler knows no project for this user" in (
        result.stderr
    )
    assert "fix: Copy the pooler host and user" in result.stderr
