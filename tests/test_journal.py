"""The release journal's records and lookups."""

import json
from datetime import UTC, datetime

from tasks import journal
from tasks.checks import Release


def entry(name, before, after, *, digests=None, rollback=None, sha="abc"):
    return journal.app_entry(
        key=name,
        name=name,
        config="fly.toml",
        config_sha256=sha,
        before=Release(before, "complete", f"img:{before}") if before else None,
        after=Release(after, "complete", f"img:{after}") if after else None,
        secret_digests=digests,
        rollback=rollback,
    )


def record(task, *apps, result="ok"):
    return journal.new_record(
        task=task,
        started_at=datetime(2026, 8, 21, 10, 15, 2, tzinfo=UTC),
        seconds=12.345,
        result=result,
        who={"fly": "op@example.com", "os": "nic"},
        apps=list(apps),
        steps=[{"step": "deploy.api", "result": "ok", "seconds": 1.0}],
    )


def test_new_record_rounds_and_stamps_utc():
    r = record("release", entry("api", 3, 4))

    assert r["started_at"] == "2026-08-21T10:15:02Z"
    assert r["seconds"] == 12.3
    assert r["apps"][0]["before"] == {
        "version": 3,
        "image": "img:3",
        "status": "complete",
    }


def test_parse_lines_skips_a_line_cut_short():
    good = json.dumps(record("release"))

    records, bad = journal.parse_lines([good, '{"task": "rel', "", good])

    assert len(records) == 2
    assert bad == 1


def test_last_release_skips_releases_that_deployed_nothing_and_rollbacks():
    deployed = record("release", entry("api", 3, 4))
    records = [deployed, record("release"), record("rollback.api", entry("api", 4, 5))]

    assert journal.last_release(records) is deployed


def test_befores_maps_app_names_to_the_release_they_ran_before():
    r = record("release", entry("api", 3, 4), entry("worker", 7, None))

    assert journal.befores(r) == {
        "api": Release(3, "complete", "img:3"),
        "worker": Release(7, "complete", "img:7"),
    }


def test_known_releases_collects_both_sides():
    records = [
        record("release", entry("api", 3, 4)),
        record("deploy.api", entry("api", 4, 5)),
    ]

    assert sorted(journal.known_releases(records, "api")) == [3, 4, 5]


def test_snapshot_of_takes_the_newest_entry_that_saw_the_version():
    old = entry("api", 2, 3, digests={"A": "1"})
    new = entry("api", 3, 4, digests={"A": "2"})

    found = journal.snapshot_of(
        [record("release", old), record("release", new)], "api", 3
    )

    assert found["secret_digests"] == {"A": "2"}
    assert journal.snapshot_of([record("release", old)], "api", 9) is None


def test_rolled_back_from_lists_the_images_left_behind():
    left = entry(
        "api", 3, 5, rollback={"from": "img:4", "to": "img:3", "result": "verified"}
    )

    assert journal.rolled_back_from([record("release", left)], "api") == {"img:4"}
    assert journal.rolled_back_from([record("release", left)], "worker") == set()


def test_changed_secrets_names_changed_added_and_removed():
    then = {"A": "1", "B": "2", "C": "3"}
    now = {"A": "1", "B": "9", "D": "4"}

    assert journal.changed_secrets(then, now) == [
        "B (changed)",
        "C (removed)",
        "D (added)",
    ]


def test_history_rows_are_newest_first_and_limited():
    records = [
        record("release", entry("api", 3, 4)),
        record("rollback.api", entry("api", 4, 5)),
    ]

    rows = journal.history_rows(records, limit=1)

    assert rows == [
        (
            "2026-08-21T10:15:02Z",
            "rollback.api",
            "ok",
            "op@example.com (nic)",
            "api v4 -> v5",
            "12.3 s",
        )
    ]


def test_history_rows_show_a_rollback_and_unknown_versions():
    rollback = {"from": "img:4", "to": "img:3", "result": "verified"}
    r = record("release", entry("api", 3, None, rollback=rollback))

    assert journal.history_rows([r])[0][4] == "api v3 -> v? (rollback verified)"


def test_a_record_holds_digests_but_no_value():
    r = record(
        "release", entry("api", 3, 4, digests={"OPENAI_API_KEY": "d8c5ac2e11c8e492"})
    )

    text = json.dumps(r)

    assert "d8c5ac2e11c8e492" in text
    assert "value" not in text


def test_is_interruption_knows_flyctl_cancelled():
    from tasks.errors import FlyctlError

    cancelled = FlyctlError("x", command="flyctl deploy", exit_code=127, stderr_tail="")
    failed = FlyctlError("x", command="flyctl deploy", exit_code=1, stderr_tail="")

    assert journal.is_interruption(KeyboardInterrupt())
    assert journal.is_interruption(cancelled)
    assert not journal.is_interruption(failed)


def test_path_of_prefers_octo_journal(tmp_path):
    from tasks import settings

    def load(extra):
        config = {
            "octo": {
                "apps": {"api": {"name": "a", "config": "fly.toml"}},
                "timeouts": dict.fromkeys(
                    ("command", "deploy", "health", "machines", "worker_logs"), 1
                ),
                "state_dir": "state",
                **extra,
            }
        }
        return settings.load(config, root=tmp_path)

    assert journal.path_of(load({"journal": "x/j.jsonl"})) == tmp_path / "x" / "j.jsonl"
    assert journal.path_of(load({})) == tmp_path / "state" / "journal.jsonl"
