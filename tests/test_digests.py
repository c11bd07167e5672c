"""The local digest record and the parity/drift verdicts (tasks/digests.py)."""

from __future__ import annotations

import json
import os

import pytest

from tasks import digests
from tasks.errors import OctoError
from tasks.settings import Secret


def test_local_hash_is_keyed():
    value = Secret("5")

    one = digests.local_hash(b"k" * 32, value)
    two = digests.local_hash(b"j" * 32, value)

    assert one != two
    assert one == digests.local_hash(b"k" * 32, Secret("5"))
    assert one.startswith("hmac-sha256:")


def test_record_stores_hashes_and_digests_never_values(tmp_path):
    record = digests.Record(tmp_path / ".octo")
    record.add(
        "example-api", "WORKER_BATCH", Secret("SENTINEL-VALUE-5"), "d8c5ac2e11c8e492"
    )
    record.save()

    text = (tmp_path / ".octo" / digests.RECORD_FILE).read_text(encoding="utf-8")
    again = digests.Record(tmp_path / ".octo")

    assert "SENTINEL-VALUE-5" not in text
    assert json.loads(text)["entries"][0]["fly_digest"] == "d8c5ac2e11c8e492"
    assert (
        again.hash(Secret("SENTINEL-VALUE-5"))
        == again.entries[("example-api", "WORKER_BATCH")].local
    )


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_record_key_is_owner_only(tmp_path):
    record = digests.Record(tmp_path)

    record.key(create=True)

    assert (tmp_path / digests.KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_record_without_key_hashes_nothing(tmp_path):
    assert digests.Record(tmp_path).hash(Secret("x")) is None


def test_broken_record_is_an_error_naming_the_file(tmp_path):
    (tmp_path / digests.RECORD_FILE).write_text("{not json", encoding="utf-8")

    with pytest.raises(OctoError, match=digests.RECORD_FILE):
        digests.Record(tmp_path)


@pytest.mark.parametrize(
    ("fly_digest", "local", "expected"),
    [
        pytest.param("aaa", "h1", digests.SAME, id="same"),
        pytest.param("aaa", "h2", digests.DIFFERENT, id="different"),
        pytest.param("bbb", "h1", digests.UNKNOWN, id="set-elsewhere"),
        pytest.param("aaa", None, digests.NOT_LOCAL, id="not-in-env"),
    ],
)
def test_compare_with_local(fly_digest, local, expected):
    assert digests.compare_with_local(fly_digest, local, {"aaa": "h1"}) == expected


def test_known_digests_works_across_names_and_apps():
    """Fly's digest depends on the value only, so any entry can vouch for it."""
    entries = [
        digests.Entry("api", "A", "h1", "aaa", ""),
        digests.Entry("worker", "B", "h2", "bbb", ""),
    ]

    known = digests.known_digests(entries)

    assert digests.compare_with_local("bbb", "h2", known) == digests.SAME


def test_parity_names_only_differing_shared_names():
    result = digests.parity(
        {
            "api": {"SHARED_SAME": "1", "SHARED_DIFF": "2", "API_ONLY": "3"},
            "worker": {"SHARED_SAME": "1", "SHARED_DIFF": "9", "WORKER_ONLY": "4"},
        }
    )

    assert result == {"SHARED_DIFF": ["api", "worker"]}


def test_changed_names_counts_new_and_different():
    before = {"A": "1", "B": "2"}
    after = {"A": "1", "B": "3", "C": "4"}

    assert digests.changed_names(before, after) == ["B", "C"]
