"""Section 11: keep secrets out of git, and rotate exposed keys."""

from __future__ import annotations

import json as json_module
from dataclasses import dataclass
from pathlib import Path

from invoke import task

from tasks import rotation, ui
from tasks.errors import OctoError, UsageError, task_boundary
from tasks.flyctl import SECRET_NAME
from tasks.session import Session, open_session

DEFAULT_ALLOWLIST = ".secrets.allowlist"


@task(
    help={
        "no_history": "Scan the tracked files only, not every commit (fast; "
        "the pre-commit hook uses it)",
        "json": "Print the findings as JSON on stdout (for CI); values are "
        "never included",
    }
)
def scan(c, no_history=False, json=False):
    """
    Find secrets in tracked files and git history.

    Scans the tracked files as they are on disk and the lines every commit
    on every branch added, with detect-secrets and rules for Supabase,
    Postgres, Fly.io and OpenAI keys; checks that .env and the state folder
    are git-ignored and untracked. Reports where and what kind, never the
    value. Exits 1 on any finding.
    """
    with task_boundary("security.scan"):
        session = open_session(c)
        result = scan_repository(session, no_history=no_history)
        if json:
            ui.data(_as_json(result, no_history))
        report_scan(result)


@dataclass(frozen=True)
class ScanResult:
    findings: list
    problems: list
    files: int
    commits: int
    allowlist_name: str

    @property
    def scope(self) -> str:
        history = f" and {self.commits} commits" if self.commits else ""
        return f"{self.files} files{history}"


def scan_repository(session: Session, *, no_history: bool) -> ScanResult:
    """Secrets in the work tree (and history), and files not kept out of git.

    Shared by `inv security.scan` and `inv doctor`; raises `UsageError`
    outside a git repository.
    """
    # detect-secrets and its plugins cost a few hundred milliseconds to
    # import: only a scan pays for them.
    from tasks import secret_scan

    root = secret_scan.repository_root(Path.cwd())
    allowlist_name = _allowlist_name(session.settings.extra)
    allowlist = _read_allowlist(secret_scan, root / allowlist_name)
    tracked = secret_scan.tracked_files(root)

    ui.step(f"Scanning {len(tracked)} tracked files in {root.name}")
    cache: dict = {}
    with secret_scan.detector():
        tree, files = secret_scan.scan_tree(root, tracked, allowlist, cache)
        history: list = []
        commits = 0
        if not no_history:
            log = secret_scan.history_log(root)
            commits = secret_scan.commit_count(log)
            ui.step(f"Scanning the lines {commits} commits added (all refs)")
            history = secret_scan.scan_history(log, allowlist, cache)
    return ScanResult(
        findings=secret_scan.merge(tree, history),
        problems=_ignore_problems(secret_scan, root, session.settings, tracked),
        files=files,
        commits=commits,
        allowlist_name=allowlist_name,
    )


@task(
    help={
        "name": "The secret to rotate, e.g. OPENAI_API_KEY or SUPABASE_DB_URL",
        "yes": "Stage, deploy and verify without asking first (for CI)",
        "dry_run": "Check the new value and show every step; change nothing",
    }
)
def rotate(c, name, yes=False, dry_run=False):
    """
    Rotate one secret: stage, deploy, verify, then revoke.

    Takes the new value without echo (for SUPABASE_DB_URL only the new
    database password), validates it, stages it on every app that uses the
    name, deploys and verifies each, replaces it in .env, records the new
    digests, and says where to revoke the old value.
    """
    with task_boundary("security.rotate"):
        if not SECRET_NAME.match(name):
            raise UsageError(
                f"{name!r} is not a secret name; give the name only, e.g. "
                "inv security.rotate OPENAI_API_KEY (the value is asked for)"
            )
        session = open_session(c, dry_run=dry_run)
        rotation.rotate_secret(session, name, yes=yes)
        ui.done("security.rotate", session.started)


def _allowlist_name(extra) -> str:
    security = extra.get("security") or {}
    return str(security.get("allowlist") or DEFAULT_ALLOWLIST)


def _read_allowlist(secret_scan, path: Path) -> frozenset[str]:
    if not path.is_file():
        return frozenset()
    return secret_scan.read_allowlist(path.read_text(encoding="utf-8"))


def _ignore_problems(secret_scan, root: Path, settings, tracked: list[str]) -> list:
    journal = settings.extra.get("journal") or ""
    must_ignore, private = secret_scan.private_files(
        root,
        env_file=settings.env_file,
        state_dir=settings.state_dir,
        journal=settings.root / journal if journal else None,
    )
    ignored = secret_scan.ignored_paths(root, must_ignore)
    return secret_scan.ignore_problems(must_ignore, ignored, tracked, private)


def report_scan(result: ScanResult) -> None:
    """Each finding and file problem with its fix; raise when there is any."""
    findings, problems = result.findings, result.problems
    for finding in findings:
        where = finding.where + (" (only in history)" if finding.commit else "")
        ui.fail(where, finding.kind)
        if finding.in_history:
            ui.detail(f"committed already, first in {finding.in_history}")
        ui.detail(f"fix: {finding.fix}")
    for problem in problems:
        ui.fail(problem.path, problem.problem)
        ui.detail(f"fix: {problem.fix}")
    if not findings and not problems:
        ui.ok("no secrets found", result.scope)
        ui.ok(".env and the state folder", "git-ignored, not tracked")
        return

    counts = []
    if findings:
        counts.append(f"{len(findings)} secret(s) in {result.scope}")
        ui.detail(
            "a made-up test value instead: end its line with "
            "`# pragma: allowlist secret`, or add its fingerprint (from --json) "
            f"to {result.allowlist_name}"
        )
    if problems:
        counts.append(f"{len(problems)} file(s) holding values not kept out of git")
    raise OctoError(
        f"{' and '.join(counts)} (listed above)",
        next_command="rotate every exposed key first (a key once committed or "
        "pushed is exposed: deleting it from the file or from history does not "
        "undo that), then remove it from the file",
    )


def _as_json(result: ScanResult, no_history: bool) -> str:
    return json_module.dumps(
        {
            "findings": [f.as_dict() for f in result.findings],
            "ignore_problems": [
                {"path": p.path, "problem": p.problem, "fix": p.fix}
                for p in result.problems
            ],
            "scanned": {
                "files": result.files,
                "commits": None if no_history else result.commits,
            },
        },
        indent=1,
    )
