"""Choosing the release a rollback returns to."""

import pytest

from tasks.checks import AppStatus, Machine, Release
from tasks.targets import RELEASES_SHOWN, NoTarget, choose, machine_spread


def rel(version, status="complete", image=None):
    return Release(version, status, image if image is not None else f"img:{version}")


def test_choose_takes_the_release_before_the_newest():
    plan = choose("api", [rel(3), rel(2), rel(1)])

    assert plan.target == rel(2)
    assert plan.needed
    assert plan.skipped == ()


def test_choose_passes_over_failed_and_same_image_releases():
    releases = [
        rel(6, image="img:new"),
        rel(5, "failed"),
        rel(4, "interrupted"),
        rel(3, image="img:new"),
        rel(2),
    ]

    plan = choose("api", releases)

    assert plan.target == rel(2)
    assert plan.skipped == (
        "v5 (failed)",
        "v4 (interrupted)",
        "v3 (same image as the newest)",
    )


def test_choose_skips_a_newest_release_that_failed_as_the_current_one():
    """After a failed deploy the newest release is the failed one."""
    plan = choose("api", [rel(4, "failed"), rel(3), rel(2)])

    assert plan.current.version == 4
    assert plan.target == rel(3)


def test_choose_avoids_images_rolled_back_from_before():
    releases = [rel(5, image="img:3"), rel(4), rel(3), rel(2)]

    plan = choose("api", releases, avoid={"img:4"})

    assert plan.target == rel(2)
    assert "v4 (rolled back from before)" in plan.skipped


def test_choose_without_releases_says_never_deployed():
    with pytest.raises(NoTarget, match="never deployed"):
        choose("api", [])


def test_choose_without_an_earlier_good_release_names_the_range():
    with pytest.raises(
        NoTarget, match=r"among the 2 release\(s\) flyctl lists \(v1 to v2\)"
    ):
        choose("api", [rel(2), rel(1, "failed")])


def test_choose_with_a_full_page_mentions_the_25_release_limit():
    releases = [rel(v, image="img:same") for v in range(40, 40 - RELEASES_SHOWN, -1)]

    with pytest.raises(NoTarget, match="only the 25 newest.*--to VERSION"):
        choose("api", releases)


def test_choose_to_a_visible_version():
    plan = choose("api", [rel(3), rel(2), rel(1)], to=1)

    assert plan.target == rel(1)
    assert plan.reason == "v1 as asked"


def test_choose_to_a_failed_version_refuses():
    with pytest.raises(NoTarget, match="v2 is failed, not complete"):
        choose("api", [rel(3), rel(2, "failed")], to=2)


def test_choose_to_a_future_version_refuses():
    with pytest.raises(NoTarget, match="has no v9: its newest release is v3"):
        choose("api", [rel(3)], to=9)


def test_choose_to_an_invisible_version_uses_the_journal():
    recorded = {1: rel(1, image="img:from-journal")}

    plan = choose("api", [rel(30), rel(29)], to=1, recorded=recorded)

    assert plan.target.image == "img:from-journal"


def test_choose_to_an_invisible_unrecorded_version_refuses():
    with pytest.raises(NoTarget, match="older than the 2 newest.*no record"):
        choose("api", [rel(30), rel(29)], to=1)


def test_choose_to_the_running_image_is_not_needed():
    plan = choose("api", [rel(5, image="img:3"), rel(4), rel(3)], to=3)

    assert not plan.needed


def test_choose_before_wins_over_the_release_list():
    plan = choose("api", [rel(4), rel(3, "failed")], before=rel(3, "failed"))

    assert plan.target == rel(3, "failed")
    assert "before the last release (v3)" in plan.reason


def machine(version):
    return Machine(
        id=f"m{version}", state="started", region="syd", version=version, image=""
    )


def test_machine_spread_counts_machines_per_version_newest_first():
    status = AppStatus("api", 4, True, (machine("3"), machine("4"), machine("3")))

    assert machine_spread(status) == "1 on v4, 2 on v3"
