"""What flyctl is run with: its environment and its stream decoding."""

import queue
import time
from pathlib import Path

from tasks.runner import _decode_objects, child_environment, last_error_lines

SAMPLES = Path(__file__).with_name("samples")


def test_an_empty_token_variable_is_removed_so_it_cannot_hide_the_real_one():
    env = child_environment({"FLY_ACCESS_TOKEN": "", "FLY_API_TOKEN": "tok"}, {})

    assert "FLY_ACCESS_TOKEN" not in env
    assert env["FLY_API_TOKEN"] == "tok"


def test_tokens_from_dotenv_fill_in_only_what_the_environment_lacks():
    env = child_environment({"FLY_API_TOKEN": "from-env"}, {"FLY_API_TOKEN": "file"})
    filled = child_environment({}, {"FLY_API_TOKEN": "file"})

    assert env["FLY_API_TOKEN"] == "from-env"
    assert filled["FLY_API_TOKEN"] == "file"


def test_child_environment_turns_off_json_mode_colour_and_update_checks():
    env = child_environment({"FLY_JSON": "1", "PATH": "/bin"}, {})

    assert "FLY_JSON" not in env
    assert env["NO_COLOR"] == "1"
    assert env["FLY_NO_UPDATE_CHECK"] == "1"
    assert env["FLY_EMIT_RELEASE_JSON"] == "1"
    assert env["PATH"] == "/bin"


def test_last_error_lines_prefers_the_error_line():
    stderr = "==> Building image\nimage found: img_1\nError: boom happened\n\n"

    assert last_error_lines(stderr) == "Error: boom happened"
    assert last_error_lines("one\ntwo\n") == "one / two"


def _feed(text: str) -> "queue.Queue[str | None]":
    lines: queue.Queue[str | None] = queue.Queue()
    for line in text.splitlines(keepends=True):
        lines.put(line)
    lines.put(None)
    return lines


def test_decode_objects_reads_flyctls_back_to_back_indented_objects():
    text = (SAMPLES / "logs.json-stream.txt").read_text(encoding="utf-8")

    entries = list(_decode_objects(_feed(text), time.monotonic() + 5))

    assert len(entries) == 3
    assert entries[0]["message"] == "INFO:     Started server process [642]"


def test_decode_objects_skips_garbage_and_keeps_going():
    text = 'not json\n{\n    "message": "a"\n}\n{broken\n}\n{"message": "b"}\n'

    entries = list(_decode_objects(_feed(text), time.monotonic() + 5))

    assert [e["message"] for e in entries] == ["a", "b"]


def test_decode_objects_stops_at_the_deadline_while_the_stream_is_silent():
    lines: queue.Queue[str | None] = queue.Queue()

    assert list(_decode_objects(lines, time.monotonic() + 0.05)) == []


def test_last_error_lines_drops_the_quoted_graphql_query():
    stderr = (SAMPLES / "error-not-authorized-status.stderr.txt").read_text()

    assert last_error_lines(stderr) == (
        "Error: failed to get app: Not authorized to access this firecrackerapp"
    )


def test_a_stream_that_closes_its_output_before_failing_raises(tmp_path):
    """A failing `flyctl logs` is an error even when it exits after EOF."""
    import sys

    import pytest
    from invoke import Context

    from tasks.errors import FlyctlError
    from tasks.runner import Flyctl
    from tasks.settings import load

    script = tmp_path / "late_failure.py"
    script.write_text(
        "import os, sys, time\n"
        "os.close(1)\n"
        "time.sleep(0.5)\n"
        "sys.stderr.write('Error: 401 Unauthorized\\n')\n"
        "sys.exit(1)\n",
        encoding="utf-8",
    )
    config = {"octo": {"apps": {"api": {"name": "a", "config": "fly.toml"}}}}
    config["octo"]["timeouts"] = dict.fromkeys(
        ("command", "deploy", "health", "machines", "worker_logs"), 10
    )
    fly = Flyctl(Context(), load(config, root=tmp_path))
    fly.program = sys.executable

    with pytest.raises(FlyctlError) as caught:
        list(fly.stream([str(script)], app="a", deadline=time.monotonic() + 10))

    assert "401 Unauthorized" in caught.value.stderr_tail
