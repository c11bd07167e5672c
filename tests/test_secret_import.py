"""The standard input written for `flyctl secrets import` (tasks/flyctl.py)."""

from __future__ import annotations

import pytest
from double.flyctl import parse_import

from tasks import flyctl

TRICKY = {
    "plain": "abc123",
    "hash": "ab#12",
    "hash-first": "#leading",
    "spaced-hash": "a # b",
    "quote-then-hash": 'a"b#c',
    "two-quotes-then-hash": 'a"b"c#d',
    "quoted-value": '"wrapped"',
    "single-quoted": "'wrapped'",
    "single-quote-hash": "'ab#12'",
    "leading-double-quotes": '""x',
    "only-quotes": '""',
    "one-quote": '"',
    "trailing-quote": 'abc"',
    "triple-quotes-inside": 'a"""b',
    "ends-with-triple": 'ab"""',
    "spaces-around": "  padded  ",
    "equals": "a=b==c",
    "backslashes": "C:\\path\\n\\t",
    "percent-url": "postgresql://postgres:p%40ss%23@db.x.supabase.co:5432/postgres?sslmode=require",
    "multi-line": "line one\nline two",
    "pem": "-----BEGIN KEY-----\nMIIB\n# not a comment\n\n-----END KEY-----\n",
    "trailing-newline": "value\n",
    "only-newline": "\n",
    "multi-line-quotes": 'say "hi" # there\n"quoted" line\nend "',
    "last-line-spaces": "a\nb   ",
    "unicode": "pässwörd ✓",
}


@pytest.mark.parametrize("value", list(TRICKY.values()), ids=list(TRICKY))
def test_render_import_round_trips_through_flyctls_parser(value):
    text = flyctl.render_import({"SECRET": value, "AFTER": "next"})

    assert parse_import(text) == {"SECRET": value, "AFTER": "next"}


def test_render_import_quotes_plain_values_on_one_line():
    text = flyctl.render_import({"A": "x#y", "B": "multi\nline"})

    assert text == 'A="x#y"\nB="""multi\nline"""\n'


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        pytest.param("A", "x\r\ny", "carriage return", id="carriage-return"),
        pytest.param("A", 'x"""\ny', 'ending in """', id="early-close"),
        pytest.param(
            "A", "x  \ny", "first line ends in blanks", id="first-line-blanks"
        ),
        pytest.param("A B", "x", "not a secret name", id="bad-name"),
        pytest.param("#A", "x", "not a secret name", id="comment-name"),
        pytest.param("A", "x" * 70000, "64 KiB", id="long-line"),
    ],
)
def test_render_import_refuses_values_flyctl_would_change(name, value, reason):
    with pytest.raises(flyctl.UnsendableValue, match=reason) as caught:
        flyctl.render_import({name: value})

    assert value not in str(caught.value)


def test_secrets_import_builder_stages_by_default():
    assert flyctl.secrets_import("example-api") == [
        "secrets",
        "import",
        "--app",
        "example-api",
        "--stage",
    ]
