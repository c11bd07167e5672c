"""Find secrets in tracked files and in git history, never keeping their values.

The scanner is detect-secrets with its own plugins and filters (so its
`pragma: allowlist secret` comment and heuristics apply), plus rules for the
secrets this backend holds. A finding keeps where it is and its kind, and a
SHA-256 fingerprint of the value for the allowlist; never the value itself.

The rules, judgements and the diff parser are pure; `git`, `tracked_files`,
`ignored_paths`, `history_log` and `scan_tree` read the repository (the
first four through `git` subprocesses).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from detect_secrets.plugins.base import RegexBasedDetector

from tasks.errors import UsageError

SERVICE_ROLE = "Supabase service-role key"
SUPABASE_SECRET = "Supabase secret key"  # pragma: allowlist secret
POSTGRES_URL = "Postgres URL with a password"
FLY_TOKEN = "Fly.io token"
OPENAI_KEY = "OpenAI API key"

# What to rotate for each kind; `inv security.rotate NAME` takes the name.
ROTATE = {
    SERVICE_ROLE: "SUPABASE_SERVICE_ROLE_KEY",
    SUPABASE_SECRET: "SUPABASE_SERVICE_ROLE_KEY",
    POSTGRES_URL: "SUPABASE_DB_URL",
    OPENAI_KEY: "OPENAI_API_KEY",
}
# A Fly.io token is no app secret: it is revoked at Fly and replaced where
# CI keeps it.
FLY_TOKEN_FIX = (
    "revoke it (`flyctl tokens list`, then `flyctl tokens revoke <id>`), create a "
    "new one with `flyctl tokens create deploy --app <app>`, put it in CI's "
    "FLY_API_TOKEN, then remove it from the file"
)
# detect-secrets' generic kinds that one of our rules names more precisely
# when both see the same value on a line.
GENERIC = frozenset(
    {
        "JSON Web Token",
        "OpenAI Token",
        "Basic Auth Credentials",
        "Secret Keyword",
        "Base64 High Entropy String",
        "Hex High Entropy String",
    }
)

JWT = re.compile(
    r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
)
# The docs' example project ref and the Supabase CLI's published local keys:
# public, nothing to rotate.
EXAMPLE_REF = "abcdefghijklmnopqrst"
DEMO_ISSUER = "supabase-demo"
LOCAL_SECRET_KEYS = frozenset({"sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"})

PLACEHOLDER_WORDS = re.compile(
    r"your[-_ ]|changeme|change[-_]me|replace[-_]?me|placeholder|example|redacted"
    r"|\.\.\.|…|\*{3}|x{4}|<[^>]*>|\[[^\]]*\]|\$\{[^}]*\}|\{\{[^}]*\}\}",
    re.IGNORECASE,
)
# Passwords documentation writes into URLs in place of a real one.
PLACEHOLDER_PASSWORDS = frozenset({"password", "pass", "passwd", "pwd", "secret"})
# An environment variable's name assigned to a variable: a name, not a value.
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")
KNOWN_PREFIX = re.compile(
    r"^(?:FlyV1 )?(?:sk-(?:proj|svcacct|admin)-|sk-|sb_secret_|sb_publishable_"
    r"|fm1[ar]_|fm2_|fo1_)"
)
LOCAL_HOSTS = re.compile(
    r"^(?:localhost|127\.\d+\.\d+\.\d+|\[?::1\]?|0\.0\.0\.0|host\.docker\.internal)$"
    r"|\.(?:localhost|example|test|invalid|local)$"
    r"|(?:^|\.)example\.(?:com|org|net)$",
    re.IGNORECASE,
)

# ://user:PASSWORD@HOST. The password is greedy up to the last @ before the
# host, so an unencoded @ in it (a common mistake) leaves it whole.
USERINFO_HOST = r"://[^:/@\s'\"]*:([^\s'\"`]+)@(\[[0-9a-fA-F:]+\]|[^@/?:\s'\"`]+)"
URL_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*" + USERINFO_HOST)


# --- Judging values ----------------------------------------------------------


def fingerprint(value: str) -> str:
    """The allowlist's handle on a value: SHA-256, never the value itself."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_placeholder(value: str) -> bool:
    """Whether VALUE stands in for a secret: `<key>`, `your-key`, `xxxx`, ..."""
    body = KNOWN_PREFIX.sub("", value.strip().strip("'\""))
    if not body or PLACEHOLDER_WORDS.search(body):
        return True
    if body.lower() in PLACEHOLDER_PASSWORDS:
        return True
    # One character repeated is a filler (`sk-proj-wwww...`), never a key.
    return len(set(body)) == 1


def jwt_claims(token: str) -> dict | None:
    """The payload of a JWT, unverified, or None when it is not one."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return claims if isinstance(claims, dict) else None


def is_public_jwt(claims: Mapping) -> bool:
    """Supabase's anon key, the CLI's demo keys and the docs' example ref."""
    return (
        claims.get("role") == "anon"
        or claims.get("iss") == DEMO_ISSUER
        or claims.get("ref") == EXAMPLE_REF
    )


def is_local_host(host: str) -> bool:
    """Loopback and reserved example hosts: no production credential there."""
    return bool(LOCAL_HOSTS.search(host)) or EXAMPLE_REF in host


def is_public(kind: str, value: str, line: str = "") -> bool:
    """Whether a value detect-secrets or a rule flagged is no secret at all.

    Placeholders, public keys (anon JWTs, `sb_publishable_`), the Supabase
    CLI's local keys, an environment variable's name where the keyword rule
    expected a value, and a URL's password for a local or example host.
    """
    if is_placeholder(value) or value.startswith("sb_publishable_"):
        return True
    if kind == "Basic Auth Credentials" and _url_host_is_local(value, line):
        return True
    if value in LOCAL_SECRET_KEYS:
        return True
    if kind == "Secret Keyword" and ENV_NAME.match(value.strip("'\"")):
        return True
    for token in JWT.findall(value):
        claims = jwt_claims(token)
        if claims is not None and is_public_jwt(claims):
            return True
    return False


def _url_host_is_local(password: str, line: str) -> bool:
    for match in URL_USERINFO.finditer(line):
        if match.group(1) == password and is_local_host(match.group(2)):
            return True
    return False


# --- Our rules, as detect-secrets plugins ------------------------------------


class SupabaseServiceRoleDetector(RegexBasedDetector):
    """Legacy Supabase keys whose role claim is service_role (the anon key is public)."""

    secret_type = SERVICE_ROLE
    denylist = (JWT,)

    def analyze_string(self, string: str) -> Iterator[str]:
        for token in super().analyze_string(string):
            claims = jwt_claims(token)
            if claims and claims.get("role") == "service_role":
                if not is_public_jwt(claims):
                    yield token


class SupabaseSecretKeyDetector(RegexBasedDetector):
    """New-style Supabase secret keys (`sb_publishable_` keys are public)."""

    secret_type = SUPABASE_SECRET
    denylist = (re.compile(r"(?<![A-Za-z0-9_])sb_secret_[A-Za-z0-9_-]{8,}"),)


class PostgresPasswordDetector(RegexBasedDetector):
    """The password of a Postgres URL, unless a placeholder or a local host."""

    secret_type = POSTGRES_URL
    denylist = (re.compile(r"postgres(?:ql)?(?:\+\w+)?" + USERINFO_HOST, re.I),)

    def analyze_string(self, string: str) -> Iterator[str]:
        for regex in self.denylist:
            for password, host in regex.findall(string):
                if is_local_host(host) or is_placeholder(unquote(password)):
                    continue
                yield password


class FlyTokenDetector(RegexBasedDetector):
    """Fly.io macaroons (`FlyV1 fm2_...`, `fm1r_`, `fm1a_`) and OAuth `fo1_` tokens."""

    secret_type = FLY_TOKEN
    denylist = (
        re.compile(
            r"(?<![A-Za-z0-9_])(?:FlyV1 )?(?:fm1[ar]|fm2)_[A-Za-z0-9+/=_-]{16,}"
            r"(?:,(?:fm1[ar]|fm2)_[A-Za-z0-9+/=_-]+)*"
        ),
        re.compile(r"(?<![A-Za-z0-9_])fo1_[A-Za-z0-9_-]{16,}"),
    )


class OpenAIKeyDetector(RegexBasedDetector):
    """OpenAI project, service-account, admin and legacy user keys."""

    secret_type = OPENAI_KEY
    denylist = (
        re.compile(r"(?<![A-Za-z0-9_-])sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}"),
        re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]*T3BlbkFJ[A-Za-z0-9_-]+"),
        re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9]{48}(?![A-Za-z0-9_-])"),
    )


RULES = (
    SupabaseServiceRoleDetector,
    SupabaseSecretKeyDetector,
    PostgresPasswordDetector,
    FlyTokenDetector,
    OpenAIKeyDetector,
)


# --- Findings ----------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One secret: where, which kind; the value only as a fingerprint."""

    kind: str
    path: str
    line: int
    # Short id of the commit that added it; empty for the working tree.
    commit: str = ""
    fingerprint: str = field(default="", repr=False)
    # For a tree finding: the first commit that already holds the value.
    in_history: str = ""

    @property
    def where(self) -> str:
        if self.commit:
            return f"{self.path}:{self.line} in commit {self.commit}"
        return f"{self.path}:{self.line}"

    @property
    def rotate(self) -> str:
        """The secret's name for `inv security.rotate`, or empty."""
        return ROTATE.get(self.kind, "")

    @property
    def fix(self) -> str:
        if self.rotate:
            return f"rotate it (`inv security.rotate {self.rotate}`), then remove it"
        if self.kind == FLY_TOKEN:
            return FLY_TOKEN_FIX
        return "rotate it where it was issued, then remove it"

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "path": self.path,
            "line": self.line,
            # Whether only history holds it, and the first commit that did.
            "only_in_history": bool(self.commit),
            "commit": self.commit or self.in_history or None,
            "rotate": self.rotate or None,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class Hit:
    """What a plugin saw on one line, before judging: holds the value."""

    kind: str
    line: int
    value: str = field(repr=False)
    # The whole line, for judging a URL's host.
    text: str = field(default="", repr=False)


def judge(
    path: str, hits: Iterable[Hit], allowlist: frozenset[str], commit: str = ""
) -> list[Finding]:
    """Findings from raw hits: public values, repeats and allowlisted ones dropped.

    When a rule of ours and a generic detect-secrets plugin see the same
    value (or one inside the other) on a line, the rule's kind is kept, and
    an allowlisted value covers both.
    """
    by_line: dict[int, list[Hit]] = {}
    for hit in hits:
        if not is_public(hit.kind, hit.value, hit.text):
            by_line.setdefault(hit.line, []).append(hit)

    findings = []
    for line, line_hits in sorted(by_line.items()):
        line_hits.sort(key=lambda h: (h.kind in GENERIC, h.kind))
        kept: list[Hit] = []
        for hit in line_hits:
            if not any(hit.value in k.value or k.value in hit.value for k in kept):
                kept.append(hit)
        findings += [
            Finding(h.kind, path, line, commit, fingerprint(h.value))
            for h in kept
            if fingerprint(h.value) not in allowlist
        ]
    return findings


def merge(tree: list[Finding], history: list[Finding]) -> list[Finding]:
    """Tree findings (noting the commit that first held each), then history-only.

    History is read oldest first, so the first commit seen for a value is
    where it was first committed.
    """
    first_commit: dict[str, str] = {}
    history_only: dict[str, Finding] = {}
    tree_prints = {f.fingerprint for f in tree}
    for finding in history:
        first_commit.setdefault(finding.fingerprint, finding.commit)
        if finding.fingerprint not in tree_prints:
            history_only.setdefault(finding.fingerprint, finding)
    noted = [
        Finding(
            f.kind,
            f.path,
            f.line,
            f.commit,
            f.fingerprint,
            in_history=first_commit.get(f.fingerprint, ""),
        )
        for f in tree
    ]
    return noted + list(history_only.values())


def read_allowlist(text: str) -> frozenset[str]:
    """Fingerprints from an allowlist file: the first word of each line; # comments."""
    prints = set()
    for line in text.splitlines():
        word = line.split("#", 1)[0].strip().split(" ", 1)[0]
        if word.startswith("sha256:"):
            prints.add(word)
    return frozenset(prints)


# --- Diffs -------------------------------------------------------------------

COMMIT_MARK = "\x00commit "
HUNK = re.compile(r"^(@{2,}) (?:-\S+ )+\+(\d+)(?:,\d+)? @{2,}")


@dataclass
class Added:
    """The lines one commit added to one file, with their line numbers."""

    commit: str
    path: str
    lines: list[tuple[int, str]] = field(default_factory=list)


def parse_log(text: str) -> Iterator[Added]:
    """Added lines per commit and file from `git log -p` with COMMIT_MARK.

    Handles combined diffs of merges (`diff --cc`): a line counts as added
    by the merge only when it is new against every parent.
    """
    commit = ""
    files: list[Added] = []
    current: Added | None = None
    in_header = False
    line_no = 0
    width = 1
    for raw in text.split("\n"):
        if raw.startswith(COMMIT_MARK):
            commit, current, in_header = raw[len(COMMIT_MARK) :].strip(), None, False
        elif raw.startswith(("diff --git ", "diff --cc ", "diff --combined ")):
            current, in_header = None, True
        elif in_header and raw.startswith("+++ "):
            target = _diff_path(raw[4:])
            current = Added(commit, target) if target else None
            if current:
                files.append(current)
        elif raw.startswith("@@") and (match := HUNK.match(raw)):
            in_header = False
            width = len(match.group(1)) - 1
            line_no = int(match.group(2))
        elif current is not None and not in_header:
            # Marks: one column per parent; "-" is a line the result lacks.
            marks = raw[:width]
            if len(marks) < width or not set(marks) <= {"+", " "}:
                continue
            if marks == "+" * width:
                current.lines.append((line_no, raw[width:]))
            line_no += 1
    yield from (added for added in files if added.lines)


def _diff_path(spec: str) -> str:
    spec = spec.rstrip("\t")
    if spec == "/dev/null":
        return ""
    if spec.startswith('"') and spec.endswith('"'):
        # core.quotePath=false leaves only quotes and control characters escaped.
        spec = spec[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
        spec = spec.encode("latin-1", "replace").decode("utf-8", "replace")
    return spec[2:] if spec.startswith("b/") else spec


# --- Files that must stay out of git ----------------------------------------

EXAMPLE_ENV_FILES = frozenset({".env.example", ".env.sample", ".env.template"})


@dataclass(frozen=True)
class IgnoreProblem:
    path: str
    problem: str
    fix: str


@dataclass(frozen=True)
class MustIgnore:
    """A path git must ignore: what it holds, and the .gitignore line for it."""

    holds: str
    line: str


def ignore_problems(
    must_ignore: Mapping[str, MustIgnore],
    ignored: frozenset[str],
    tracked: Sequence[str],
    private_paths: Sequence[str],
) -> list[IgnoreProblem]:
    """Which files holding values git would take, and which it already holds.

    MUST_IGNORE maps a repository path to what it holds; IGNORED is the
    subset `git check-ignore` confirmed; PRIVATE_PATHS are the env file and
    the state folder, whose tracked contents are problems too.
    """
    problems = []
    for path, rule in must_ignore.items():
        if path not in ignored:
            problems.append(
                IgnoreProblem(
                    path,
                    f"not git-ignored, and it is where {rule.holds} go",
                    f"add the line `{rule.line}` to .gitignore",
                )
            )
    for path in tracked:
        name = PurePosixPath(path).name
        is_env = name == ".env" or (
            name.startswith(".env.") and name not in EXAMPLE_ENV_FILES
        )
        private = any(
            path == p or path.startswith(p.rstrip("/") + "/") for p in private_paths
        )
        if is_env or private:
            problems.append(
                IgnoreProblem(
                    path,
                    "tracked by git: its values are in the repository",
                    f"`git rm --cached {path}` and commit, then rotate every value "
                    "it held (`inv security.rotate NAME`)",
                )
            )
    return problems


def private_files(
    root: Path, *, env_file: Path, state_dir: Path, journal: Path | None
) -> tuple[dict[str, MustIgnore], list[str]]:
    """Paths git must ignore, and the private ones, relative to ROOT.

    `.env.local` stands for every `.env.*`; files outside ROOT are not
    git's business and are left out.
    """
    must_ignore = {
        ".env": MustIgnore("secret values", ".env"),
        ".env.local": MustIgnore("secret values (.env.*)", ".env.*"),
    }
    state = _inside(root, state_dir)
    for path, holds in (
        (env_file, "secret values"),
        (state_dir / "digest.key", "the key of the secret digest records"),
        (journal, "the release journal"),
    ):
        relative = _inside(root, path)
        if not relative:
            continue
        in_state = bool(state) and relative.startswith(state + "/")
        line = f"{state}/" if in_state else relative
        must_ignore.setdefault(relative, MustIgnore(holds, line))
    private = [p for p in (_inside(root, env_file), state) if p]
    return must_ignore, private


def _inside(root: Path, path: Path | None) -> str:
    """PATH relative to ROOT, POSIX-style; empty when it lies outside."""
    if path is None:
        return ""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return ""


# --- Reading the repository --------------------------------------------------


def git(root: Path, *args: str, ok: Sequence[int] = (0,), timeout: float = 120) -> str:
    """Run git in ROOT and return its output; UsageError when git cannot run."""
    command = ["git", "-c", "core.quotePath=false", *args]
    try:
        completed = subprocess.run(
            command, cwd=root, capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise UsageError("git is not installed (or not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"`git {args[0]}` took more than {timeout:.0f} s") from None
    if completed.returncode not in ok:
        stderr = completed.stderr.decode("utf-8", "replace").strip()
        raise UsageError(f"`git {' '.join(args)}` failed: {stderr}")
    return completed.stdout.decode("utf-8", "replace")


def repository_root(start: Path) -> Path:
    """The top of the git work tree holding START; UsageError outside one."""
    try:
        return Path(git(start, "rev-parse", "--show-toplevel").strip())
    except UsageError as exc:
        if "not a git repository" in exc.message:
            raise UsageError(
                f"{start} is not inside a git repository: run inv security.scan "
                "from the repository root"
            ) from None
        raise


def tracked_files(root: Path) -> list[str]:
    return [p for p in git(root, "ls-files", "-z").split("\0") if p]


def ignored_paths(root: Path, paths: Iterable[str]) -> frozenset[str]:
    """The PATHS git's ignore rules exclude, whether or not they are tracked."""
    paths = list(paths)
    if not paths:
        return frozenset()
    out = git(root, "check-ignore", "--no-index", "--", *paths, ok=(0, 1))
    return frozenset(line for line in out.splitlines() if line)


def history_log(root: Path) -> str:
    """Every commit on every ref, oldest first, with the lines it added."""
    return git(
        root,
        "log",
        "--all",
        "--reverse",
        "-p",
        "-U0",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--diff-merges=dense-combined",
        f"--format={COMMIT_MARK.replace(chr(0), '%x00')}%h",
        timeout=600,
    )


def commit_count(log: str) -> int:
    return log.count(COMMIT_MARK)


# --- Scanning with detect-secrets -------------------------------------------


def _skip_file(path: str) -> bool:
    from detect_secrets.filters.heuristic import is_lock_file, is_non_text_file

    return is_non_text_file(path) or is_lock_file(path)


# (path, line text) -> (kind, value) of each hit on such a line.
LineCache = dict[tuple[str, str], list[tuple[str, str]]]


def scan_lines(
    path: str, lines: Sequence[tuple[int, str]], cache: LineCache | None = None
) -> list[Hit]:
    """Every plugin's hits on LINES of PATH, after detect-secrets' filters.

    Call inside `detector()`, which enables the plugins. Lines of PATH
    already in CACHE are not scanned again, and the others are added to it.
    """
    # NOTE: detect-secrets has no public call for lines that are not a file
    # on disk (scan_diff needs the unidiff package and loses the commit);
    # this is the function its scan_file and scan_diff share. uv.lock pins
    # the version and tests/test_secret_scan.py fails if it changes.
    from detect_secrets.core.scan import _process_line_based_plugins

    if not lines or _skip_file(path):
        return []
    cache = {} if cache is None else cache
    fresh = [(n, text) for n, text in lines if (path, text) not in cache]

    # Numbered 1..n so that its "previous line" (allowlist nextline) is the
    # previous line scanned, whatever the real line numbers.
    numbered = list(enumerate((text for _, text in fresh), start=1))
    found: dict[int, list[tuple[str, str]]] = {}
    for secret in _process_line_based_plugins(numbered, filename=path):
        found.setdefault(secret.line_number, []).append(
            (secret.type, secret.secret_value or "")
        )
    for index, (_, text) in enumerate(fresh, start=1):
        cache[(path, text)] = found.get(index, [])
    texts = dict(lines)
    return [
        Hit(kind, number, value, texts[number])
        for number, text in lines
        for kind, value in cache[(path, text)]
    ]


@contextlib.contextmanager
def detector() -> Iterator[None]:
    """detect-secrets' plugins and default filters, plus RULES, for a scan."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.settings import transient_settings

    # As detect_secrets.core.plugins.initialize.from_file registers a custom
    # plugin file: into the mapping from secret type to plugin class.
    mapping = get_mapping_from_secret_type_to_class()
    for rule in RULES:
        mapping[rule.secret_type] = rule
    config = {"plugins_used": [{"name": cls.__name__} for cls in mapping.values()]}
    with transient_settings(config):
        yield


def scan_tree(
    root: Path,
    paths: Iterable[str],
    allowlist: frozenset[str],
    cache: LineCache | None = None,
) -> tuple[list[Finding], int]:
    """Findings in the tracked files as they are on disk, and the files read."""
    findings: list[Finding] = []
    count = 0
    for path in paths:
        text = _read_text(root / path)
        if text is None:
            continue
        count += 1
        lines = list(enumerate(text.splitlines(), start=1))
        findings += judge(path, scan_lines(path, lines, cache), allowlist)
    return findings, count


def scan_history(
    log: str, allowlist: frozenset[str], cache: LineCache | None = None
) -> list[Finding]:
    """Findings in the lines each commit added, oldest commit first.

    Most lines ever added are still in the tree: with the tree scan's CACHE
    a line is judged once per file and text.
    """
    findings: list[Finding] = []
    for added in parse_log(log):
        hits = scan_lines(added.path, added.lines, cache)
        findings += judge(added.path, hits, allowlist, commit=added.commit)
    return findings


def _read_text(path: Path) -> str | None:
    """A tracked file's text; None for symlinks, binaries and deleted files."""
    if path.is_symlink() or not path.is_file():
        return None
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")
