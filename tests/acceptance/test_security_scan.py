"""`inv security.scan` and the pre-commit hook, in real temporary git repositories.

Every seeded secret is made up and assembled at run time; the test asserts
that none of them, nor any part of one, is printed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from conftest import PROJECT_FILES, REPO, RUNNER_VARIABLES_DROPPED, InvResult

REF = "mnbvcxzlkjhgfdsapoiu"


def body(tag: str) -> str:
    """A distinctive random-looking part of one seeded value."""
    return f"Zq{tag}7Kp4Xw9Lm2Rt6Yb1Nv8Hc3Jd5Fg0Sa"


def seeds(tag: str) -> list[tuple[str, str, str]]:
    """(line, kind, distinctive part) for one of each kind of secret."""
    service = jwt.encode(
        {"iss": "supabase", "ref": REF, "role": "service_role", "sid": body(tag)},
        "k" * 32,
        algorithm="HS256",
    )
    return [
        (f"SUPABASE_SERVICE_ROLE_KEY={service}", "Supabase service-role key", service),
        ("SUPABASE_KEY=sb_" + "secret_" + body(tag), "Supabase secret key", body(tag)),
        (
            "SUPABASE_DB_URL=postgresql://postgres:"
            + f"Pw{body(tag)}@db.{REF}.supabase.co:5432/postgres",
            "Postgres URL with a password",
            f"Pw{body(tag)}",
        ),
        ("FLY_API_TOKEN=FlyV1 " + "fm2_" + body(tag) + "+/", "Fly.io token", body(tag)),
        ("OPENAI_API_KEY=sk-" + "proj-" + body(tag), "OpenAI API key", body(tag)),
        (
            "aws_access_key_id = AKIA" + tag.upper() * 4 + "ZQXWVUTS",
            "AWS Access Key",
            "",
        ),
    ]


PLACEHOLDERS = [
    "SUPABASE_DB_URL=postgresql://postgres:[YOUR-PASSWORD]@db.<project-ref>.supabase.co:5432/postgres",
    "SUPABASE_DB_URL=postgresql://postgres:<ENCODED_PASSWORD>@db.abcdefghijklmnopqrst.supabase.co:5432/postgres",
    "DATABASE_URL=postgresql://postgres:postgres@localhost:54322/postgres",
    "OPENAI_API_KEY=sk-proj-...",
    "OPENAI_API_KEY=your-openai-api-key",
    "FLY_API_TOKEN=FlyV1 fm2_xxxxxxxxxxxxxxxxxxxxxxxx",
    "SUPABASE_SERVICE_ROLE_KEY=changeme",
    "SUPABASE_ANON_KEY=sb_publishable_" + body("pub"),
    "SUPABASE_ANON_KEY="
    + jwt.encode({"iss": "supabase", "ref": REF, "role": "anon"}, "k" * 32),
    "password: example",
]


def git_env(path: str | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(RUNNER_VARIABLES_DROPPED) and k != "VIRTUAL_ENV"
    }
    # The runner's own git configuration (signing, hooks, templates) stays out.
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", NO_COLOR="1")
    env.update(PYTHONUTF8="1")
    if path is not None:
        env["PATH"] = path
    return env


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com"]
    completed = subprocess.run(
        [*command, "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        env=git_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.strip()


def commit(repo: Path, message: str, *paths: str) -> str:
    git(repo, "add", "--", *(paths or (".",)))
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "--short", "HEAD")


def write(repo: Path, path: str, lines: list[str]) -> None:
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")


def scan(repo: Path, *args: str, path: str | None = None) -> InvResult:
    completed = subprocess.run(
        [sys.executable, "-m", "invoke", "security.scan", *args],
        cwd=repo,
        env=git_env(path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    return InvResult(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture
def repo(project: Path) -> Path:
    """A git repository holding the shipped .gitignore and .env.example only.

    The task files are copied in but excluded, so the scan reads only what a
    test commits.
    """
    for name in (".gitignore", ".env.example"):
        shutil.copy2(REPO / name, project / name)
    git(project, "init", "-q", "-b", "main")
    excluded = [*PROJECT_FILES, "tasks/"]
    (project / ".git" / "info" / "exclude").write_text("\n".join(excluded) + "\n")
    write(project, "docs/setup.md", PLACEHOLDERS)
    commit(project, "Start with the example files")
    return project


def test_every_seeded_secret_is_found_in_the_tree_and_in_history(repo):
    gone = seeds("old")
    write(repo, "old/credentials.txt", [line for line, _, _ in gone])
    added = commit(repo, "Add credentials by mistake")
    git(repo, "rm", "-q", "old/credentials.txt")
    commit(repo, "Remove them again")
    current = seeds("now")
    write(repo, "app/settings.txt", [line for line, _, _ in current[:-1]])
    committed = commit(repo, "Add settings")
    # Not committed, not staged: the tree is scanned as it is on disk.
    write(repo, "app/settings.txt", [line for line, _, _ in current])

    result = scan(repo)

    assert result.code == 1, result.output
    for number, (_, kind, _) in enumerate(current, start=1):
        assert f"app/settings.txt:{number}: {kind}" in result.stderr
    assert result.stderr.count(f"committed already, first in {committed}") == 5
    for number, (_, kind, _) in enumerate(gone, start=1):
        where = f"old/credentials.txt:{number} in commit {added} (only in history)"
        assert f"{where}: {kind}" in result.stderr
    assert "docs/setup.md" not in result.output
    assert ".env.example" not in result.output
    assert "12 secret(s) in 4 files and 4 commits" in result.stderr
    assert "inv security.rotate OPENAI_API_KEY" in result.stderr
    assert (
        "deleting it from the file or from history does not undo that" in result.stderr
    )
    for _, _, secret in gone + current:
        if secret:
            assert secret not in result.output
    assert "Zq" not in result.output


def test_json_lists_the_findings_without_values(repo):
    write(repo, "app/settings.txt", [line for line, _, _ in seeds("js")])
    commit(repo, "Add settings")

    result = scan(repo, "--json")

    assert result.code == 1
    report = json.loads(result.stdout)
    assert [(f["path"], f["line"], f["kind"]) for f in report["findings"]] == [
        ("app/settings.txt", n, kind) for n, (_, kind, _) in enumerate(seeds("js"), 1)
    ]
    assert report["findings"][4]["rotate"] == "OPENAI_API_KEY"
    assert all(f["fingerprint"].startswith("sha256:") for f in report["findings"])
    # Still in the tree, and committed: not only in history, with its commit.
    assert {f["only_in_history"] for f in report["findings"]} == {False}
    assert all(f["commit"] for f in report["findings"])
    assert report["ignore_problems"] == []
    assert report["scanned"] == {"files": 4, "commits": 2}
    assert "Zq" not in result.output


def test_no_history_skips_secrets_that_only_history_holds(repo):
    write(repo, "old.txt", [seeds("nh")[4][0]])
    commit(repo, "Add a key")
    git(repo, "rm", "-q", "old.txt")
    commit(repo, "Remove it")

    fast = scan(repo, "--no-history")
    full = scan(repo)

    assert fast.code == 0, fast.output
    assert "no secrets found: 3 files" in fast.stderr
    assert full.code == 1
    assert "old.txt:1 in commit" in full.stderr


def test_a_clean_repository_with_placeholders_passes(repo):
    result = scan(repo)

    assert result.code == 0, result.output
    assert "no secrets found: 3 files and 1 commits" in result.stderr
    assert ".env and the state folder: git-ignored, not tracked" in result.stderr


def test_an_allowlist_pragma_or_fingerprint_silences_a_made_up_value(repo):
    line, _, _ = seeds("al")[4]
    write(repo, "tests/fixture.py", [f"KEY = '{line}'  # pragma: allowlist secret"])
    write(repo, "tests/sample.json", ['{"token": "' + seeds("al")[3][0] + '"}'])
    commit(repo, "Add test fixtures")
    listed = json.loads(scan(repo, "--json").stdout)["findings"]
    assert [f["path"] for f in listed] == ["tests/sample.json"]
    write(repo, ".secrets.allowlist", [f"{listed[0]['fingerprint']}  # made up"])
    commit(repo, "Allowlist the sample's made-up token")

    result = scan(repo)

    assert result.code == 0, result.output


def test_env_files_and_the_state_folder_must_be_ignored_and_untracked(repo):
    write(repo, ".gitignore", [".env"])
    write(repo, ".env", ["WORKER_BATCH=5"])
    git(repo, "add", "-f", ".env")
    commit(repo, "Track .env by mistake", ".gitignore")

    result = scan(repo)

    assert result.code == 1
    assert ".env: tracked by git" in result.stderr
    assert "`git rm --cached .env` and commit, then rotate every value" in result.stderr
    assert ".env.local: not git-ignored" in result.stderr
    assert ".octo/digest.key: not git-ignored" in result.stderr
    assert "add the line `.octo/` to .gitignore" in result.stderr
    assert "file(s) holding values not kept out of git" in result.stderr


def test_outside_a_git_repository_it_cannot_start(project, tmp_path):
    result = scan(project)

    assert result.code == 2
    assert "is not inside a git repository" in result.stderr


def test_without_git_it_cannot_start(repo, tmp_path):
    empty = tmp_path / "no-git"
    empty.mkdir()

    result = scan(repo, path=str(empty))

    assert result.code == 2
    assert "git is not installed" in result.stderr


@pytest.mark.skipif(os.name == "nt", reason="the python shim below is a sh script")
def test_the_pre_commit_hook_refuses_a_commit_holding_a_secret(repo, tmp_path):
    python = Path(getattr(sys, "_base_executable", sys.executable))
    probe = subprocess.run([python, "-c", "import uv"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"{python} has no uv module for the hook's `python -m uv`")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "python").write_text(f'#!/bin/sh\nexec "{python}" "$@"\n')
    (shim / "python").chmod(0o755)
    for name in (".pre-commit-config.yaml", "uv.lock"):
        shutil.copy2(REPO / name, repo / name)
    commit(repo, "Add the hook", ".pre-commit-config.yaml")
    env = git_env(str(shim) + os.pathsep + os.environ["PATH"])
    env["PRE_COMMIT_HOME"] = str(tmp_path / "pre-commit-home")
    subprocess.run(
        [sys.executable, "-m", "pre_commit", "install"], cwd=repo, env=env, check=True
    )
    write(repo, "app.env.sh", [seeds("pc")[4][0]])
    git(repo, "add", "app.env.sh")
    before = git(repo, "rev-parse", "HEAD")

    refused = subprocess.run(
        [
            "git",
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-m",
            "x",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output
    assert "app.env.sh:1: OpenAI API key" in output
    assert git(repo, "rev-parse", "HEAD") == before
    assert "Zq" not in output


def test_this_repository_holds_no_secret_in_its_tree_or_history():
    """Made-up test values carry a pragma or an allowlisted fingerprint."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git clone")

    result = scan(REPO)

    assert result.code == 0, result.output
