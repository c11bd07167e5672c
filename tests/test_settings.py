"""Settings: secret redaction, .env parsing, and configuration problems."""

import pytest

from tasks.errors import UsageError
from tasks.settings import Secret, load, read_env_file

SENTINEL = "s3cr3t-SENTINEL"


def test_every_text_form_of_a_secret_is_redacted():
    secret = Secret(SENTINEL)

    texts = (str(secret), repr(secret), f"{secret}", f"{secret!r}", "%s" % (secret,))  # noqa: UP031
    for text in texts:
        assert SENTINEL not in text
    assert secret.reveal() == SENTINEL


def test_read_env_file_keeps_quoted_values_and_reports_bad_lines(tmp_path):
    env = tmp_path / ".env"
    env.write_text(
        "GOOD=\"a#b c\"\nBROKEN LINE WITHOUT EQUALS\nALSO='x y'\n", encoding="utf-8"
    )

    values, problems = read_env_file(env)

    assert values == {"GOOD": "a#b c", "ALSO": "x y"}
    assert problems == [
        ".env line 2: not NAME=VALUE (quote values holding spaces or #, "
        "close every quote)"
    ]


def test_a_missing_env_file_is_no_problem(tmp_path):
    assert read_env_file(tmp_path / ".env") == ({}, [])


def _config(**apps):
    base = {
        "name": "a",
        "config": "fly.toml",
        "health_url": "",
        "poll_pattern": "",
        "required_secrets": [],
    }
    return {
        "octo": {
            "apps": {k: {**base, **v} for k, v in apps.items()},
            "timeouts": dict.fromkeys(
                ("command", "deploy", "health", "machines", "worker_logs"), 5
            ),
        }
    }


def test_load_reports_every_bad_setting_at_once(tmp_path):
    config = _config(api={"name": "", "health_url": "ftp://x"})
    config["octo"]["timeouts"]["health"] = "soon"

    with pytest.raises(UsageError) as raised:
        load(config, root=tmp_path)

    message = str(raised.value)
    assert "octo.apps.api.name is empty" in message
    assert "octo.apps.api.health_url must start with https://" in message
    assert "octo.timeouts.health must be a number of seconds" in message


def test_environment_wins_over_the_env_file(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("OPENAI_MODEL=from-file\n", encoding="utf-8")
    monkeypatch.setenv("OPENAI_MODEL", "from-env")

    settings = load(_config(api={}), root=tmp_path)

    assert settings.value("OPENAI_MODEL").reveal() == "from-env"
    assert settings.apps[0].config == tmp_path / "fly.toml"
