"""The rollback module's pure parts: the mode and the state report."""

from pathlib import Path

import pytest

from tasks.checks import Release
from tasks.errors import UsageError
from tasks.rollback import Progress, mode_of, rollback_order, where_apps_stand
from tasks.settings import AppSettings
from tasks.targets import Plan


def app(key):
    return AppSettings(key, f"octo-{key}", Path("fly.toml"), "", "", (), ())


def test_mode_of_prefers_the_option_to_the_setting():
    assert mode_of({"auto_rollback": "never"}, "ask") == "ask"
    assert mode_of({"auto_rollback": "Never"}, "") == "never"
    assert mode_of({}, "") == "automatic"


def test_mode_of_rejects_an_unknown_mode_as_a_usage_error():
    with pytest.raises(UsageError, match="--rollback is 'sometimes'"):
        mode_of({}, "sometimes")
    with pytest.raises(UsageError, match="octo.auto_rollback is 'yes'"):
        mode_of({"auto_rollback": "yes"}, "")


def test_rollback_order_puts_the_worker_first():
    assert [a.key for a in rollback_order([app("api"), app("worker")])] == [
        "worker",
        "api",
    ]


def test_where_apps_stand_says_one_line_per_stage():
    plan = Plan(
        "api", Release(4, "failed", "img:4"), Release(3, "complete", "img:3"), ""
    )
    stages = ["waiting", "deploying", "verifying", "done", "failed"]
    progress = [
        Progress(app("api"), plan, stage, Release(5, "complete", "img:3"))
        for stage in stages
    ]
    progress[0].release = progress[1].release = None

    lines = where_apps_stand(progress)

    assert lines == [
        "octo-api: not rolled back; still on v4",
        "octo-api: stopped while deploying the image of v3; its machines may run "
        "a mix of the old and the new image (see flyctl status --app octo-api)",
        "octo-api: runs the image of v3 again (v5), not verified",
        "octo-api: back on the image of v3 (v5), verified",
        "octo-api: rollback to the image of v3 failed",
    ]
