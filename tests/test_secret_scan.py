"""The secret scanner's rules, judgements and diff parsing (tasks/secret_scan.py).

Every made-up secret here is assembled at run time, so that this file holds
none that `inv security.scan` would report.
"""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from tasks import secret_scan as scan

REPO = Path(__file__).resolve().parents[1]
REF = "qwertyuiopasdfghjklz"
RANDOM = "Q7vK2pX9mZ4rT1wB8nL3yH6cJ0dF5gSa"  # pragma: allowlist secret


def supabase_key(role: str, ref: str = REF, iss: str = "supabase") -> str:
    claims = {"iss": iss, "ref": ref, "role": role, "iat": 1700000000}
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


def openai_key() -> str:
    return "sk-" + "proj-" + RANDOM + "T3Blbk" + "FJ" + RANDOM[::-1]


def fly_token() -> str:
    return "FlyV1 " + "fm2_" + RANDOM + "/+" + RANDOM[::-1]


def db_url(password: str = "n0t-" + RANDOM, host: str = f"db.{REF}.supabase.co") -> str:
    return "postgresql://" + f"postgres:{password}@{host}:5432/postgres"


def findings(*lines: str, path: str = "config.py", allowlist=frozenset()):
    numbered = list(enumerate(lines, start=1))
    with scan.detector():
        return scan.judge(path, scan.scan_lines(path, numbered), allowlist)


def kinds(*lines: str, **kwargs) -> list[str]:
    return [f.kind for f in findings(*lines, **kwargs)]


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (f'SERVICE = "{supabase_key("service_role")}"', scan.SERVICE_ROLE),
        ("KEY = 'sb_" + "secret_" + RANDOM + "'", scan.SUPABASE_SECRET),
        (f"SUPABASE_DB_URL={db_url()}", scan.POSTGRES_URL),
        (f'"token": "{fly_token()}"', scan.FLY_TOKEN),
        ("fo1_" + RANDOM + "xyz", scan.FLY_TOKEN),
        (f"OPENAI_API_KEY={openai_key()}", scan.OPENAI_KEY),
        ("sk-" + "svcacct-" + RANDOM, scan.OPENAI_KEY),
    ],
    ids=[
        "service-role",
        "sb-secret",
        "postgres",
        "fly-macaroon",
        "fly-oauth",
        "openai",
        "svcacct",
    ],
)
def test_each_rule_names_its_kind_once(line, kind):
    assert kinds(line) == [kind]


def test_a_postgres_password_with_an_unencoded_at_is_one_finding():
    assert kinds(db_url(password="p@ss" + RANDOM)) == [scan.POSTGRES_URL]


def test_detect_secrets_own_plugins_still_run():
    aws = "AKIA" + "IOSFODNN7" + "QWERTZU"

    assert kinds(f"aws_access_key_id = {aws}") == ["AWS Access Key"]


@pytest.mark.parametrize(
    "line",
    [
        f"SUPABASE_ANON_KEY={supabase_key('anon')}",
        f"SUPABASE_SERVICE_ROLE_KEY={supabase_key('service_role', iss='supabase-demo')}",
        f"SUPABASE_SERVICE_ROLE_KEY={supabase_key('service_role', ref='abcdefghijklmnopqrst')}",
        "SUPABASE_ANON_KEY=sb_" + "publishable_" + RANDOM,
        "SUPABASE_DB_URL=" + db_url(password="<ENCODED_PASSWORD>"),
        "SUPABASE_DB_URL=" + db_url(password="[YOUR-PASSWORD]"),
        "SUPABASE_DB_URL=" + db_url(password="%5BYOUR-PASSWORD%5D"),
        "SUPABASE_DB_URL=" + db_url(password="password"),
        "DATABASE_URL="
        + db_url(password="postgres", host="localhost"),  # pragma: allowlist secret
        "DATABASE_URL=" + db_url(password="S3cret" + RANDOM, host="127.0.0.1"),
        "DATABASE_URL=" + db_url(password="S3cret" + RANDOM, host="db.example.com"),
        "OPENAI_API_KEY=<openai-api-key>",
        "OPENAI_API_KEY=your-openai-key",
        "OPENAI_API_KEY=sk-" + "proj-" + "x" * 40,
        "OPENAI_API_KEY=sk-" + "proj-...",
        "FLY_API_TOKEN=FlyV1 " + "fm2_" + "x" * 40,
        'password = "changeme"',
        'api_key = "YOUR_API_KEY_HERE"',
        'SERVICE_KEY = "SUPABASE_SERVICE_ROLE_KEY"',
        f'password = "{RANDOM}"  # pragma: allowlist secret',
    ],
)
def test_placeholders_and_public_keys_are_not_findings(line):
    assert kinds(line) == []


def test_the_shipped_env_example_has_no_findings():
    lines = (REPO / ".env.example").read_text(encoding="utf-8").splitlines()

    assert kinds(*lines, path=".env.example") == []


def test_an_allowlisted_fingerprint_is_not_a_finding():
    line = f"OPENAI_API_KEY={openai_key()}"
    allow = scan.read_allowlist(f"{scan.fingerprint(openai_key())}  # test value\n")

    assert kinds(line, allowlist=allow) == []
    assert kinds(line, allowlist=frozenset({scan.fingerprint("other")})) != []


def test_a_finding_never_holds_the_value():
    (finding,) = findings(f"OPENAI_API_KEY={openai_key()}", "", "")

    text = repr(finding) + str(finding.as_dict()) + finding.where + finding.fix
    assert RANDOM not in text
    assert finding.line == 1
    assert finding.rotate == "OPENAI_API_KEY"
    assert finding.fingerprint == scan.fingerprint(openai_key())


@pytest.mark.parametrize(
    ("value", "placeholder"),
    [
        ("<service-role-key>", True),
        ("[YOUR-PASSWORD]", True),
        ("your-project-key", True),
        ("changeme", True),
        ("xxxxxxxx", True),
        ("sk-proj-...", True),
        ("${OPENAI_API_KEY}", True),
        ("{{ secrets.FLY_API_TOKEN }}", True),
        ("an-example-value", True),
        ("", True),
        (RANDOM, False),
        ("sb_secret_" + RANDOM, False),
        ("S3cret-Pw", False),
    ],
)
def test_is_placeholder(value, placeholder):
    assert scan.is_placeholder(value) is placeholder


LOG = "\n".join(
    [
        "\x00commit aaaa111",
        "",
        "diff --git a/app.env b/app.env",
        "new file mode 100644",
        "--- /dev/null",
        "+++ b/app.env",
        "@@ -0,0 +1,2 @@",
        "+FIRST=1",
        "++++ not a header, an added line",
        "\x00commit bbbb222",
        "",
        "diff --git a/app.env b/app.env",
        "--- a/app.env",
        "+++ b/app.env",
        "@@ -2 +2 @@",
        "-++++ not a header, an added line",
        "+SECOND=2",
        "diff --git a/gone.txt b/gone.txt",
        "deleted file mode 100644",
        "--- a/gone.txt",
        "+++ /dev/null",
        "@@ -1 +0,0 @@",
        "-old",
        "\x00commit cccc333",
        "",
        "diff --cc app.env",
        "--- a/app.env",
        "+++ b/app.env",
        "@@@ -1,2 -1,2 +1,3 @@@",
        "  FIRST=1",
        "+ SECOND=2",
        "++MERGED=3",
        "- gone",
    ]
)


def test_parse_log_gives_added_lines_per_commit_and_file():
    added = [(a.commit, a.path, a.lines) for a in scan.parse_log(LOG)]

    assert added == [
        (
            "aaaa111",
            "app.env",
            [(1, "FIRST=1"), (2, "+++ not a header, an added line")],
        ),
        ("bbbb222", "app.env", [(2, "SECOND=2")]),
        ("cccc333", "app.env", [(3, "MERGED=3")]),
    ]
    assert scan.commit_count(LOG) == 3


def test_merge_keeps_tree_findings_and_adds_history_only_ones():
    tree = [scan.Finding(scan.OPENAI_KEY, "a.py", 3, fingerprint="sha256:1")]
    history = [
        scan.Finding(scan.OPENAI_KEY, "old.py", 9, "aaaa111", "sha256:1"),
        scan.Finding(scan.FLY_TOKEN, "b.py", 1, "bbbb222", "sha256:2"),
        scan.Finding(scan.FLY_TOKEN, "c.py", 4, "cccc333", "sha256:2"),
    ]

    merged = scan.merge(tree, history)

    assert [(f.where, f.in_history) for f in merged] == [
        ("a.py:3", "aaaa111"),
        ("b.py:1 in commit bbbb222", ""),
    ]


def test_ignore_problems_name_unignored_and_tracked_files():
    must = {
        ".env": scan.MustIgnore("secret values", ".env"),
        ".octo/digest.key": scan.MustIgnore("a key", ".octo/"),
    }

    problems = scan.ignore_problems(
        must,
        ignored=frozenset({".env"}),
        tracked=[".env.example", ".env.production", ".octo/journal.jsonl", "app.py"],
        private_paths=[".env", ".octo"],
    )

    assert [(p.path, p.fix) for p in problems] == [
        (".octo/digest.key", "add the line `.octo/` to .gitignore"),
        (
            ".env.production",
            "`git rm --cached .env.production` and commit, then rotate every value "
            "it held (`inv security.rotate NAME`)",
        ),
        (
            ".octo/journal.jsonl",
            "`git rm --cached .octo/journal.jsonl` and commit, then rotate every "
            "value it held (`inv security.rotate NAME`)",
        ),
    ]


def test_private_files_leave_out_paths_outside_the_repository(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()

    must, private = scan.private_files(
        root,
        env_file=tmp_path / "elsewhere.env",
        state_dir=root / ".octo",
        journal=root / ".octo" / "journal.jsonl",
    )

    assert {path: rule.line for path, rule in must.items()} == {
        ".env": ".env",
        ".env.local": ".env.*",
        ".octo/digest.key": ".octo/",
        ".octo/journal.jsonl": ".octo/",
    }
    assert private == [".octo"]


def test_an_env_file_in_a_folder_is_ignored_by_its_own_path(tmp_path):
    must, private = scan.private_files(
        tmp_path,
        env_file=tmp_path / "config" / "prod.env",
        state_dir=tmp_path / ".octo",
        journal=None,
    )

    assert must["config/prod.env"].line == "config/prod.env"
    assert private == ["config/prod.env", ".octo"]


def test_the_nextline_pragma_covers_the_line_after_it():
    line = f'password = "{RANDOM}"'

    assert kinds("# pragma: allowlist nextline secret", line) == []
    assert len(kinds("# an ordinary comment", line)) == 1


def test_a_fly_token_is_revoked_at_fly_not_rotated_as_an_app_secret():
    finding = scan.Finding(kind=scan.FLY_TOKEN, path=".env.prod", line=2)

    assert finding.rotate == ""
    assert "flyctl tokens revoke" in finding.fix
    assert "security.rotate" not in finding.fix
