"""Section 10: run every read-only check, diagnose failures, offer fixes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from invoke import task

from tasks import (
    auth,
    checks,
    digests,
    preflight,
    secrets,
    security,
    ui,
    values,
    verify,
)
from tasks.diagnose import Failure, diagnose
from tasks.errors import FlyctlMissing, OctoError, UsageError, task_boundary
from tasks.runner import TOKEN_FAILURES, TOKEN_VARIABLES, empty_token_variables
from tasks.session import Session, open_session
from tasks.settings import AppSettings

OK, FAILED, WARNING, SKIPPED = "ok", "failed", "warning", "skipped"


@dataclass(frozen=True)
class Fix:
    """A fix safe to automate; `apply` asks the operator before it changes anything."""

    offer: str
    apply: Callable[[], None]


@dataclass
class Outcome:
    result: str
    evidence: str = ""
    diagnosis: str = ""
    fix: str = ""
    automated: Fix | None = None
    failure_ids: tuple[str, ...] = ()
    # Set by auth.check: the apps later checks cannot reach.
    unreachable: tuple[str, ...] = ()


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Session, bool], Outcome]
    # Checks that ask Fly.io are skipped once flyctl is missing or access
    # failed; one about a single app only when that app is unreachable.
    needs_fly: bool = False
    app: str = ""


@dataclass
class Row:
    check: Check
    outcome: Outcome
    seconds: float = 0.0
    fixed: bool = False


@task(
    help={
        "fix": "Offer the fixes that are safe to automate (re-login, staging "
        "secrets from .env, adding the frontend origin), each confirmed first",
        "yes": "With --fix: apply the fixes without asking (for CI)",
        "json": "Print the final table as a JSON array on stdout, for scripts",
    }
)
def doctor(c, fix=False, yes=False, json=False):
    """
    Run every read-only check and diagnose what fails.

    Runs the checks of each runbook section in order (prerequisites, Fly.io
    access, secrets, the apps, CORS, committed secrets), continues past
    failures, and ends with one table: check, result, diagnosis, fix.
    Changes nothing unless --fix is given.
    """
    with task_boundary("doctor"):
        if fix and json:
            raise UsageError(
                "--json cannot go with --fix: a fix streams flyctl's output on "
                "standard output; run `inv doctor --fix`, then `inv doctor --json`"
            )
        session = open_session(c)
        if fix and not yes:
            ui.require_terminal("doctor --fix asks before each fix")
        rows = run_checks(session, all_checks(session), yes=yes)
        if fix:
            if not json:
                show_table(rows)
            apply_fixes(session, rows, yes=yes)
        show_rows(rows, as_json=json)
        failed = [row for row in rows if row.outcome.result == FAILED]
        if failed:
            fixable = [row.check.name for row in failed if row.outcome.automated]
            names = ", ".join(row.check.name for row in failed)
            raise OctoError(
                f"{len(failed)} check(s) failed: {names} (table above)",
                next_command=(
                    f"inv doctor --fix (it can fix {', '.join(fixable)}); "
                    "the fix column says what to do for the others"
                    if fixable and not fix
                    else "the fix column says what to do"
                ),
            )
        ui.ok("all clear", f"{len(rows)} checks, none failed")
        ui.done("doctor", session.started)


def all_checks(session: Session) -> list[Check]:
    """The read-only checks of every section, in runbook order."""
    found = [
        Check("preflight", _preflight),
        Check("fly token variables", _token_variables),
        Check("auth.check", _auth, needs_fly=True),
        Check("secrets.check", _secret_names, needs_fly=True),
        Check("secrets.validate", _secret_values),
    ]
    for app in session.settings.apps:
        found.append(
            Check(
                f"verify.{app.key}",
                lambda s, yes, app=app: _verify(s, app.key),
                needs_fly=True,
                app=app.name,
            )
        )
    found.append(Check("verify.cors", _cors))
    found.append(Check("security.scan", _scan))
    return found


def run_checks(session: Session, found: list[Check], *, yes: bool) -> list[Row]:
    """Run each check, continuing past failures; skip Fly checks without access."""
    rows: list[Row] = []
    no_fly = ""
    unreachable: list[str] = []
    for check in found:
        why_not = no_fly or _unreachable(check, unreachable)
        if check.needs_fly and why_not:
            rows.append(Row(check, Outcome(SKIPPED, why_not)))
            continue
        started = time.monotonic()
        outcome = _outcome_of(check, session, yes)
        rows.append(Row(check, outcome, time.monotonic() - started))
        if check.name == "preflight" and not session.fly.available:
            no_fly = "flyctl not found (see preflight)"
        elif check.name == "auth.check" and outcome.result == FAILED:
            unreachable = list(outcome.unreachable)
            if not unreachable:
                no_fly = "needs Fly.io access (see auth.check)"
    return rows


def _unreachable(check: Check, unreachable: list[str]) -> str:
    if not unreachable:
        return ""
    if check.app and check.app not in unreachable:
        return ""
    return f"{', '.join(unreachable)} not reachable (see auth.check)"


def _outcome_of(check: Check, session: Session, yes: bool) -> Outcome:
    try:
        return check.run(session, yes)
    except OctoError as exc:
        return _failed(check, exc)


def _failed(check: Check, exc: OctoError) -> Outcome:
    ui.fail(check.name, exc.message.splitlines()[0])
    return failed_outcome(exc)


def failed_outcome(exc: OctoError) -> Outcome:
    """A failed check's row: its catalogue diagnoses, or its own words."""
    found: tuple[Failure, ...] = exc.diagnoses
    if found:
        return Outcome(
            FAILED,
            exc.message,
            diagnosis=f"{exc.message.splitlines()[0]}: "
            + " ".join(dict.fromkeys(f.meaning for f in found)),
            fix=" ".join(dict.fromkeys(f.fix for f in found)),
            failure_ids=tuple(dict.fromkeys(f.id for f in found)),
        )
    return Outcome(
        FAILED,
        exc.message,
        diagnosis=exc.message.splitlines()[0],
        fix=exc.next_command or "see the lines above the table",
    )


def show_rows(rows: list[Row], *, as_json: bool) -> None:
    if not as_json:
        fixed = any(row.fixed for row in rows)
        show_table(rows, title="doctor, after the fixes" if fixed else "doctor")
        return
    import json

    ui.data(
        json.dumps(
            [
                {
                    "check": row.check.name,
                    "result": row.outcome.result,
                    "evidence": row.outcome.evidence,
                    "diagnosis": row.outcome.diagnosis,
                    "fix": row.outcome.fix,
                    "failures": list(row.outcome.failure_ids),
                    "fixed": row.fixed,
                    "seconds": round(row.seconds, 1),
                }
                for row in rows
            ],
            indent=2,
        )
    )


def show_table(rows: list[Row], *, title: str = "doctor") -> None:
    ui.table(
        title,
        ["check", "result", "diagnosis", "fix"],
        [
            (
                row.check.name,
                row.outcome.result,
                row.outcome.diagnosis or row.outcome.evidence,
                row.outcome.fix,
            )
            for row in rows
        ],
    )


def apply_fixes(session: Session, rows: list[Row], *, yes: bool) -> None:
    """Offer each automatable fix, then re-run the checks it was meant to cure."""
    offered = [row for row in rows if row.outcome.automated]
    if not offered:
        ui.skip("no fix to automate", "the fixes in the table are for a person")
        return
    for row in offered:
        fix = row.outcome.automated
        assert fix is not None
        ui.step(f"Fix for {row.check.name}: {fix.offer}")
        try:
            fix.apply()
        except OctoError as exc:
            # Declining is an answer, not a failure of the doctor.
            ui.skip(row.check.name, exc.message.splitlines()[0])
            continue
        ui.step(f"Checking {row.check.name} again")
        row.outcome = _outcome_of(row.check, session, yes)
        row.fixed = True
        verdict = ui.ok if row.outcome.result in (OK, WARNING) else ui.fail
        verdict(row.check.name, f"{row.outcome.result} after the fix")


# --- the checks ------------------------------------------------------------------


def _preflight(session: Session, yes: bool) -> Outcome:
    try:
        preflight.check(session)
    except FlyctlMissing as exc:
        return Outcome(
            FAILED,
            "flyctl not found",
            diagnosis="flyctl is not installed or not on PATH.",
            fix=exc.message,
        )
    return Outcome(OK, "flyctl, config files, working folder, .env")


def _token_variables(session: Session, yes: bool) -> Outcome:
    empty = empty_token_variables(os.environ)
    if not empty:
        set_ = [n for n in TOKEN_VARIABLES if os.environ.get(n)]
        return Outcome(OK, f"{', '.join(set_)} set" if set_ else "none set (login)")
    found = diagnose("\n".join(f"{n} is set but empty" for n in empty), "env")
    ui.warn(
        f"{', '.join(empty)} set but empty", "removed for the flyctl these tasks run"
    )
    return Outcome(
        WARNING,
        f"{', '.join(empty)} set but empty",
        diagnosis=" ".join(f.meaning for f in found),
        fix=" ".join(f.fix for f in found),
        failure_ids=tuple(f.id for f in found),
    )


def _auth(session: Session, yes: bool) -> Outcome:
    try:
        statuses = auth.check_access(session)
    except OctoError as exc:
        outcome = failed_outcome(exc)
        if isinstance(exc, auth.AppsUnreachable):
            outcome.unreachable = tuple(exc.apps)
        if TOKEN_FAILURES & set(outcome.failure_ids):
            outcome.automated = _relogin_fix(session)
        return outcome
    return Outcome(OK, f"{len(statuses)} app(s) reachable")


def _relogin_fix(session: Session) -> Fix | None:
    """Log out and in again, unless a token variable would override the login."""
    if any(session.fly.env.get(n) for n in TOKEN_VARIABLES):
        # flyctl prefers a token variable to the login, so a new login
        # would change nothing: the token itself must be replaced.
        return None

    def relogin() -> None:
        if not sys.stdin or not sys.stdin.isatty():
            # --yes cannot stand in for a person at a browser.
            raise UsageError(
                "flyctl auth login needs a terminal and a browser: run "
                "`flyctl auth login` yourself, or set FLY_API_TOKEN (CI)"
            )
        if not ui.confirm("Log out of Fly.io and log in again?", yes=False):
            raise OctoError("not confirmed; the login is unchanged")
        session.fly.interactive(["auth", "logout"])
        if session.fly.interactive(["auth", "login"]) != 0:
            raise OctoError("flyctl auth login did not complete")

    return Fix("log out of Fly.io and log in again (browser)", relogin)


def _secret_names(session: Session, yes: bool) -> Outcome:
    entries_by_app = secrets.list_entries(session)
    problems = secrets.report_names(session, entries_by_app)
    problems += secrets.report_parity(session, entries_by_app)
    secrets.report_drift(session, entries_by_app)
    if not problems:
        staged = sorted(
            {
                name
                for app in session.settings.apps
                for name in _not_deployed(entries_by_app[app.key], app)
            }
        )
        if staged:
            # Present, but the apps do not run them until their next deploy.
            return Outcome(
                WARNING,
                f"staged, not deployed: {', '.join(staged)}",
                fix="inv release (or inv deploy.<app>) applies staged secrets",
            )
        return Outcome(OK, "required names present, shared values alike")

    wrong = set(_mismatched(session, entries_by_app))
    for app in session.settings.apps:
        wrong |= set(
            checks.compare_secret_names(
                entries_by_app[app.key], app.required_secrets, app.optional_secrets
            ).missing
        )
    in_env = sorted(n for n in wrong if session.settings.value(n))
    outcome = Outcome(
        FAILED,
        "; ".join(problems),
        diagnosis="; ".join(problems),
        fix=(
            f"inv secrets.set {','.join(in_env)} (from .env)"
            if in_env
            else f"add {', '.join(sorted(wrong))} to .env, then inv secrets.push"
        ),
    )
    if in_env:
        outcome.automated = Fix(
            f"stage {', '.join(in_env)} from .env on the apps that use them",
            lambda: secrets.push_values(session, in_env, now=False, yes=yes),
        )
    return outcome


def _not_deployed(
    entries: list[checks.SecretEntry], app: AppSettings
) -> tuple[str, ...]:
    names = checks.compare_secret_names(
        entries, app.required_secrets, app.optional_secrets
    )
    return names.staged + names.partial


def _mismatched(
    session: Session, entries_by_app: dict[str, list[checks.SecretEntry]]
) -> list[str]:
    return list(
        digests.parity(
            {k: {e.name: e.digest for e in v} for k, v in entries_by_app.items()}
        )
    )


def _secret_values(session: Session, yes: bool) -> Outcome:
    settings = session.settings
    known = {n for app in settings.apps for n in app.required_secrets}
    known |= {n for app in settings.apps for n in app.optional_secrets}
    # Production holds the values; a machine (CI) with none of them in .env
    # or the environment has nothing to validate, which is no failure.
    present = sorted(n for n in known if settings.value(n))
    if not present and not settings.env_file_problems:
        ui.skip("secret values", f"none in {settings.env_file.name} to validate")
        return Outcome(SKIPPED, f"no secret values in {settings.env_file.name}")
    ui.step(f"Validating the values in {settings.env_file.name}")
    findings = secrets.validate_values(settings, present)
    secrets.report_findings(settings, findings)
    failed = values.errors(findings)
    worst = failed or findings
    if not worst:
        return Outcome(OK, "every value valid")
    names = sorted({f.name for f in worst})
    return Outcome(
        FAILED if failed else WARNING,
        ", ".join(names),
        diagnosis="; ".join(f"{f.name} {f.reason}" for f in worst),
        fix="; ".join(dict.fromkeys(f.fix for f in worst)),
    )


def _cors(session: Session, yes: bool) -> Outcome:
    raw = session.settings.extra.get("cors") or {}
    if not raw.get("origins"):
        ui.skip("CORS", "octo.cors.origins is empty: no frontend origin to check")
        return Outcome(SKIPPED, "no frontend origins set (octo.cors.origins)")
    settings = verify.cors_settings(session)
    verdicts = verify.check_origins(session, settings)
    try:
        verify.raise_for_verdicts(session, settings, verdicts, fixed=False)
    except OctoError as exc:
        outcome = failed_outcome(exc)
        fixable = [v.origin for v in verdicts if v.fixable]
        if fixable:
            outcome.automated = Fix(
                f"add {', '.join(fixable)} to the API's allowed origins and redeploy it",
                lambda: verify.fix_origins(
                    session, fixable, yes=yes, app_key=settings.app
                ),
            )
        return outcome
    return Outcome(OK, f"{len(verdicts)} origin(s) allowed")


def _scan(session: Session, yes: bool) -> Outcome:
    try:
        result = security.scan_repository(session, no_history=False)
    except UsageError as exc:
        # A copy of the tasks outside a clone has no history to scan.
        ui.skip("secrets in git", exc.message)
        return Outcome(SKIPPED, exc.message)
    security.report_scan(result)
    return Outcome(OK, f"no secrets in {result.scope}")


def _verify(session: Session, key: str) -> Outcome:
    app = session.settings.app(key)
    verify.verify_app(session, app, None)
    proofs = ["machines started"]
    if app.health_url:
        proofs.append("/health answers 200")
    if app.poll_pattern:
        proofs.append(f"{app.poll_pattern} in its logs")
    return Outcome(OK, ", ".join(proofs))
