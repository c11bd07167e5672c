"""Sections 2 and 3: the apps' secrets, checked, validated and set."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from invoke import task

from tasks import checks, digests, flyctl, probes, ui, values
from tasks.errors import FlyctlError, OctoError, UsageError, task_boundary
from tasks.session import Session, open_session
from tasks.settings import AppSettings, Secret, Settings

YES_HELP = "Change production without asking first (for CI)"
DRY_RUN_HELP = "Show what would be sent and to which apps; change nothing"
NOW_HELP = (
    "Apply the values now with `flyctl secrets deploy` (restarts machines); "
    "default: stage them for the next deploy"
)
DEFAULT_PROBE_TIMEOUT = 10.0


@task
def check(c):
    """
    Check secret names, parity between apps and drift from .env.

    Reports names only: missing (a failure), staged but not deployed, names
    no setting expects, names whose digest differs between the API and the
    worker (a failure: the apps hold different values), and which production
    values differ from .env, judged from the digests this tool recorded.
    """
    with task_boundary("secrets.check"):
        session = open_session(c)
        entries_by_app = list_entries(session)
        problems = report_names(session, entries_by_app)
        problems += report_parity(session, entries_by_app)
        report_drift(session, entries_by_app)
        if problems:
            raise OctoError(
                f"{len(problems)} problem(s): {'; '.join(problems)}",
                next_command="put the right values in .env, then `inv secrets.push`",
            )


@task
def validate(c):
    """
    Check every value in .env against what its name must be.

    Local only: parses SUPABASE_DB_URL as libpq does, decodes the Supabase
    keys, checks the OpenAI key's kind and the worker's numbers. Reports
    every problem by name, reason and fix, never the value. Warnings alone
    do not fail.
    """
    with task_boundary("secrets.validate"):
        session = open_session(c)
        ui.step(f"Validating the values in {session.settings.env_file.name}")
        findings = validate_values(session.settings)
        report_findings(session.settings, findings)
        failed = values.errors(findings)
        if failed:
            names = sorted({f.name for f in failed})
            raise OctoError(
                f"{len(failed)} problem(s) in {', '.join(names)} (listed above)",
                next_command=f"fix {session.settings.env_file.name}, then "
                "`inv secrets.validate` again",
            )


@task(
    name="set",
    help={
        "names": "Secret names to send, comma-separated (e.g. SUPABASE_DB_URL,OPENAI_API_KEY)",
        "now": NOW_HELP,
        "yes": YES_HELP,
        "dry_run": DRY_RUN_HELP,
    },
)
def set_(c, names, now=False, yes=False, dry_run=False):
    """
    Send chosen secrets from .env to every app that uses them.

    Validates first and refuses invalid values. Values travel on flyctl's
    standard input, staged so the next deploy applies them with one restart.
    Reports per app which names changed.
    """
    with task_boundary("secrets.set"):
        session = open_session(c, dry_run=dry_run)
        chosen = parse_names(names)
        push_values(session, chosen, now=now, yes=yes)
        ui.done("secrets.set", session.started)


@task(help={"now": NOW_HELP, "yes": YES_HELP, "dry_run": DRY_RUN_HELP})
def push(c, now=False, yes=False, dry_run=False):
    """
    Send every known secret in .env to the apps that use it.

    Like secrets.set for all names the apps list (required and optional)
    that .env holds. Values Fly already holds, according to the digest
    record, are not sent again, so nothing is staged needlessly.
    """
    with task_boundary("secrets.push"):
        session = open_session(c, dry_run=dry_run)
        known = {n for app in session.settings.apps for n in _app_names(app)}
        present = sorted(n for n in known if session.settings.value(n))
        if not present:
            raise UsageError(
                f"no known secret names in {session.settings.env_file.name} or the "
                "environment; see `inv secrets.validate`"
            )
        push_values(session, present, now=now, yes=yes)
        ui.done("secrets.push", session.started)


@task(help={"skip_db": "Do not connect to the database (e.g. to avoid any ban risk)"})
def test(c, skip_db=False):
    """
    Try the secrets against the database, OpenAI and Storage.

    Online and opt-in: one database connection with `select 1` (never
    retried, since repeated wrong passwords get an address banned), a free
    GET of the OpenAI model, a GET of each storage bucket with the service
    key. A check whose values are absent is skipped with the reason.
    """
    with task_boundary("secrets.test"):
        session = open_session(c)
        ui.step("Testing the secrets against the services")
        outcomes = run_probes(session.settings, skip_db=skip_db)
        failed = report_outcomes(outcomes)
        if failed:
            raise OctoError(
                f"{len(failed)} check(s) failed: {', '.join(failed)}",
                next_command="fix .env as shown, `inv secrets.validate`, then "
                "`inv secrets.push`",
            )
        ui.done("secrets.test", session.started)


# --- names ----------------------------------------------------------------------


def list_entries(session: Session) -> dict[str, list[checks.SecretEntry]]:
    """Every app's secret entries from `secrets list --json`."""
    entries_by_app = {}
    for app in session.settings.apps:
        entries_by_app[app.key] = _read_entries(session, app)
    return entries_by_app


def _read_entries(session: Session, app: AppSettings) -> list[checks.SecretEntry]:
    try:
        data = session.fly.read_json(flyctl.secrets_list(app.name), app=app.name)
        return checks.parse_secrets(data)
    except checks.ParseError as exc:
        raise OctoError(
            f"secrets list of {app.name} has an unknown shape: {exc}"
        ) from None
    except FlyctlError as exc:
        raise OctoError(
            f"cannot list the secrets of {app.name}: {exc.render()}"
        ) from None


def report_names(
    session: Session, entries_by_app: Mapping[str, list[checks.SecretEntry]]
) -> list[str]:
    """Print each app's name verdicts; return the missing names as problems."""
    ui.step("Checking secret names")
    missing_total = []
    for app in session.settings.apps:
        entries = entries_by_app[app.key]
        names = checks.compare_secret_names(
            entries, app.required_secrets, app.optional_secrets
        )
        if names.missing:
            ui.fail(f"{app.label} is missing", ", ".join(names.missing))
            missing_total += [f"{app.name}: {n} missing" for n in names.missing]
        else:
            ui.ok(
                f"{app.label}",
                f"all {len(app.required_secrets)} required names present",
            )
        if names.staged:
            ui.warn(
                f"{app.label} staged, not deployed",
                ", ".join(names.staged) + " (the next deploy applies them)",
            )
        if names.partial:
            ui.warn(f"{app.label} partially deployed", ", ".join(names.partial))
        if names.unexpected:
            ui.warn(
                f"{app.label} has names no setting expects", ", ".join(names.unexpected)
            )
    return missing_total


def check_names(session: Session) -> dict[str, list[checks.SecretEntry]]:
    """Every app's secret entries; raise when a required name is missing."""
    entries_by_app = list_entries(session)
    missing_total = report_names(session, entries_by_app)
    if missing_total:
        raise OctoError(
            f"{len(missing_total)} required secret(s) missing: {'; '.join(missing_total)}",
            next_command="add them to .env and stage them: `inv secrets.push` "
            "(values travel on flyctl's standard input)",
        )
    return entries_by_app


def report_parity(
    session: Session, entries_by_app: Mapping[str, list[checks.SecretEntry]]
) -> list[str]:
    """Names shared by several apps must carry the same digest on each."""
    ui.step("Comparing shared secrets between apps")
    apps = {a.key: a for a in session.settings.apps}
    mismatches = digests.parity(
        {
            key: {e.name: e.digest for e in entries}
            for key, entries in entries_by_app.items()
        }
    )
    if not mismatches:
        shared = _shared_names(entries_by_app)
        ui.ok("shared names", f"{len(shared)} name(s) hold the same value on every app")
        return []
    problems = []
    for name, keys in mismatches.items():
        labels = ", ".join(apps[k].name for k in keys)
        ui.fail(f"{name} differs between apps", f"{labels} hold different values")
        problems.append(f"{name} differs between {labels}")
    ui.detail(
        "fix: `inv secrets.set "
        + ",".join(mismatches)
        + "` sends the .env value to every app"
    )
    return problems


def _shared_names(entries_by_app: Mapping[str, list[checks.SecretEntry]]) -> set[str]:
    seen: dict[str, int] = {}
    for entries in entries_by_app.values():
        for e in entries:
            seen[e.name] = seen.get(e.name, 0) + 1
    return {n for n, count in seen.items() if count > 1}


def report_drift(
    session: Session, entries_by_app: Mapping[str, list[checks.SecretEntry]]
) -> None:
    """Say which production values differ from .env, from recorded digests."""
    ui.step("Comparing production with .env (by recorded digests)")
    record = digests.Record(session.settings.state_dir)
    if not record.entries:
        ui.skip(
            "no digest record yet",
            "`inv secrets.push` records what it sends, then drift can be judged",
        )
        return
    known = record.by_digest()
    for app in session.settings.apps:
        verdicts: dict[str, list[str]] = {}
        for entry in entries_by_app[app.key]:
            value = session.settings.value(entry.name)
            local = record.hash(value) if value else None
            verdict = digests.compare_with_local(entry.digest, local, known)
            verdicts.setdefault(verdict, []).append(entry.name)
        if verdicts.get(digests.SAME):
            ui.ok(
                f"{app.label} matches .env", f"{len(verdicts[digests.SAME])} value(s)"
            )
        if verdicts.get(digests.DIFFERENT):
            names = verdicts[digests.DIFFERENT]
            ui.warn(f"{app.label} differs from .env", ", ".join(names))
            ui.detail(f"fix: `inv secrets.set {','.join(names)}` (or correct .env)")
        if verdicts.get(digests.NOT_LOCAL):
            ui.skip(f"{app.label} not in .env", ", ".join(verdicts[digests.NOT_LOCAL]))
        if verdicts.get(digests.UNKNOWN):
            ui.skip(
                f"{app.label} set outside this tool, not comparable",
                ", ".join(verdicts[digests.UNKNOWN]),
            )


# --- validation -------------------------------------------------------------------


def validate_values(
    settings: Settings, names: Iterable[str] | None = None
) -> list[values.Finding]:
    """Findings for the known values, plus required names absent from .env."""
    chosen = tuple(names) if names is not None else None
    findings = values.validate(
        settings.values, names=chosen, has_ipv6=probes.has_ipv6_route()
    )
    for problem in settings.env_file_problems:
        findings.append(values.Finding(settings.env_file.name, problem, "fix the line"))
    required: dict[str, list[str]] = {}
    for app in settings.apps:
        for name in app.required_secrets:
            required.setdefault(name, []).append(app.key)
    for name, keys in sorted(required.items()):
        if name in values.MAY_BE_EMPTY:
            continue
        if (chosen is None or name in chosen) and not settings.value(name):
            findings.append(
                values.Finding(
                    name,
                    f"is not set (required by {', '.join(keys)})",
                    f"add {name}=... to {settings.env_file.name}",
                )
            )
    return findings


def report_findings(settings: Settings, findings: list[values.Finding]) -> None:
    named = {f.name for f in findings}
    known = sorted({n for app in settings.apps for n in _app_names(app)})
    for name in known:
        if name not in named and settings.value(name):
            ui.ok(name, "valid")
    for finding in findings:
        if finding.is_error:
            ui.fail(finding.name, finding.reason)
        else:
            ui.warn(finding.name, finding.reason)
        ui.detail(f"fix: {finding.fix}")


# --- sending ---------------------------------------------------------------------


def parse_names(text: str) -> list[str]:
    """Names from `A,B` or `A B`; refuse anything that is not a name."""
    names = [n for n in re.split(r"[,\s]+", text.strip()) if n]
    bad = [n for n in names if not flyctl.SECRET_NAME.match(n) or "=" in n]
    if not names or bad:
        raise UsageError(
            "give secret names only, comma-separated (values come from .env): "
            "inv secrets.set SUPABASE_DB_URL,OPENAI_API_KEY"
        )
    return list(dict.fromkeys(names))


def _app_names(app: AppSettings) -> tuple[str, ...]:
    return app.required_secrets + app.optional_secrets


def targets(apps: Iterable[AppSettings], names: Iterable[str]) -> dict[str, list[str]]:
    """App key -> the chosen names that app uses, in app order."""
    plan = {}
    for app in apps:
        used = [n for n in names if n in _app_names(app)]
        if used:
            plan[app.key] = used
    return plan


def push_values(session: Session, names: list[str], *, now: bool, yes: bool) -> None:
    """Validate, plan, ask, stage on every app, then re-check parity."""
    settings = session.settings
    unused = [n for n in names if not any(n in _app_names(a) for a in settings.apps)]
    if unused:
        raise UsageError(
            f"no app uses {', '.join(unused)}; add the name to an app's "
            "required_secrets or optional_secrets in invoke.yaml"
        )
    absent = [n for n in names if not settings.value(n)]
    if absent:
        raise UsageError(
            f"{', '.join(absent)} not set in {settings.env_file.name} or the environment"
        )

    ui.step("Validating the values to send")
    findings = validate_values(settings, names)
    report_findings_for(findings)
    failed = values.errors(findings)
    if failed:
        raise OctoError(
            f"refusing to send invalid values: {', '.join(sorted({f.name for f in failed}))}",
            next_command="fix .env, then `inv secrets.validate`",
        )
    chosen = {n: settings.value(n) for n in names}
    check_sendable(chosen)

    plan = targets(settings.apps, names)
    record = digests.Record(settings.state_dir)
    sends = _plan_sends(session, plan, chosen, record)
    if not any(sends.values()):
        ui.ok(
            "nothing to send",
            "Fly already holds every value in .env (by recorded digests)",
        )
        return
    if not session.dry_run:
        total = sum(len(v) for v in sends.values())
        apps = ", ".join(settings.app(k).name for k, v in sends.items() if v)
        verb = "Set and apply now (restarting machines)" if now else "Stage"
        if not ui.confirm(f"{verb} {total} secret value(s) on {apps}?", yes=yes):
            raise OctoError("not confirmed; no secret was changed")

    done: list[str] = []
    for key, sent in sends.items():
        if not sent:
            continue
        app = settings.app(key)
        try:
            ui.step(f"Staging {len(sent)} secret(s) on {app.name}")
            changed = stage_values(
                session, app, {n: chosen[n] for n in sent}, record=record
            )
            _report_changed(session, app, sent, changed)
            if now and not session.dry_run:
                ui.step(f"Applying staged secrets on {app.name}")
                session.fly.change(flyctl.secrets_deploy(app.name), app=app.name)
        except OctoError as exc:
            _say_half_sent(exc, app.name, done)
            raise
        done.append(app.name)

    if not session.dry_run:
        _recheck_parity(session, names)
        if not now:
            ui.detail(
                "the next deploy applies staged values (inv release), or run with --now"
            )


def _say_half_sent(exc: OctoError, failed_app: str, done: list[str]) -> None:
    """Add to one app's failed send which apps already got their values."""
    if not done:
        return
    exc.message = (
        f"{exc.message}\n  sent to {', '.join(done)} already, not to {failed_app} "
        "or any app after it: the apps now hold different values"
    )
    exc.next_command = (
        "fix the cause and run the same command again: values an app already "
        "holds are not sent twice (`inv secrets.check` shows the difference)"
    )


def report_findings_for(findings: list[values.Finding]) -> None:
    for finding in findings:
        (ui.fail if finding.is_error else ui.warn)(finding.name, finding.reason)
        ui.detail(f"fix: {finding.fix}")


def check_sendable(chosen: Mapping[str, Secret]) -> None:
    """Refuse values flyctl's import could not carry, before anything is sent."""
    try:
        flyctl.render_import({n: v.reveal() for n, v in chosen.items()})
    except flyctl.UnsendableValue as exc:
        raise OctoError(f"cannot send: {exc}") from None


def _plan_sends(
    session: Session,
    plan: Mapping[str, list[str]],
    chosen: Mapping[str, Secret],
    record: digests.Record,
) -> dict[str, list[str]]:
    """Per app, the names whose value Fly does not already hold."""
    known = record.by_digest()
    sends = {}
    for key, names in plan.items():
        app = session.settings.app(key)
        current = {e.name: e.digest for e in _read_entries(session, app)}
        sends[key] = []
        same = []
        for name in names:
            verdict = digests.compare_with_local(
                current.get(name, ""), record.hash(chosen[name]), known
            )
            (same if verdict == digests.SAME else sends[key]).append(name)
        if same:
            ui.skip(f"{app.label} already holds", ", ".join(same))
        if sends[key]:
            ui.ok(f"{app.label} will get", ", ".join(sends[key]))
    return sends


def stage_values(
    session: Session,
    app: AppSettings,
    values: Mapping[str, Secret],  # shadows the module, which is not used here
    *,
    record: digests.Record | None = None,
) -> list[str]:
    """Stage VALUES on APP through flyctl's standard input; return changed names.

    The names changed are those whose digest in `secrets list` differs after
    the import. Each sent value is recorded (keyed hash and Fly's digest) for
    later drift checks. Under a dry run nothing is sent and every name is
    returned as would-be changed. Values are not validated here: callers
    (secrets.set/push, a rotation) validate first, e.g. with validate_values.
    """
    try:
        text = flyctl.render_import({n: v.reveal() for n, v in values.items()})
    except flyctl.UnsendableValue as exc:
        raise OctoError(f"cannot send to {app.name}: {exc}") from None
    before = {e.name: e.digest for e in _read_entries(session, app)}

    result = session.fly.change(
        flyctl.secrets_import(app.name, stage=True),
        app=app.name,
        stdin=text,
        timeout=session.settings.timeouts.command,
    )
    if result is None:
        return sorted(values)

    after = {e.name: e.digest for e in _read_entries(session, app)}
    record = (
        record if record is not None else digests.Record(session.settings.state_dir)
    )
    for name, value in values.items():
        if after.get(name):
            record.add(app.name, name, value, after[name])
    record.save()
    return digests.changed_names(before, {n: after.get(n, "") for n in values})


def _report_changed(
    session: Session, app: AppSettings, sent: list[str], changed: list[str]
) -> None:
    if session.dry_run:
        return
    if changed:
        ui.ok(f"{app.label} changed", ", ".join(changed))
    unchanged = [n for n in sent if n not in changed]
    if unchanged:
        ui.skip(f"{app.label} unchanged (same value sent again)", ", ".join(unchanged))


def _recheck_parity(session: Session, names: list[str]) -> None:
    entries_by_app = list_entries(session)
    digests_by_app = {
        key: {e.name: e.digest for e in entries if e.name in names}
        for key, entries in entries_by_app.items()
    }
    mismatches = digests.parity(digests_by_app)
    if mismatches:
        raise OctoError(
            f"after sending, {', '.join(mismatches)} still differ between apps",
            next_command="`inv secrets.check` for details",
        )
    ui.ok("apps in step", "every sent name holds one value on every app that uses it")


# --- online checks -----------------------------------------------------------------


def run_probes(settings: Settings, *, skip_db: bool) -> list[probes.Outcome]:
    try:
        timeout = float(settings.extra.get("probe_timeout") or DEFAULT_PROBE_TIMEOUT)
    except ValueError:
        raise UsageError("octo.probe_timeout must be a number of seconds") from None
    outcomes = []
    # A value that fails validation is not tried: a malformed database URL
    # sends a wrong password (repeated, the address gets banned), and an
    # admin key has no business with the models endpoint.
    invalid = {f.name for f in values.errors(validate_values(settings))}

    db_url = settings.value(values.DB_URL)
    if skip_db:
        outcomes.append(probes.Outcome("database", probes.SKIPPED, "--skip-db given"))
    elif db_url is None:
        outcomes.append(
            probes.Outcome("database", probes.SKIPPED, f"{values.DB_URL} is not set")
        )
    elif values.DB_URL in invalid:
        outcomes.append(_invalid("database", values.DB_URL))
    else:
        outcomes.append(
            probes.probe_database(db_url, timeout=timeout, ipv6=probes.has_ipv6_route())
        )

    key, model = settings.value(values.OPENAI_KEY), settings.value(values.OPENAI_MODEL)
    base_url = str(settings.extra.get("openai_base_url") or "https://api.openai.com/v1")
    supabase_url = settings.value(values.SUPABASE_URL)
    service_key = settings.value(values.SERVICE_KEY)
    buckets = sorted(
        n
        for n in settings.values
        if n.startswith(values.BUCKET_PREFIX) and settings.value(n)
    )
    with probes.http_client(timeout) as client:
        if key is None or model is None:
            missing = " and ".join(
                n
                for n, v in ((values.OPENAI_KEY, key), (values.OPENAI_MODEL, model))
                if v is None
            )
            outcomes.append(
                probes.Outcome("OpenAI", probes.SKIPPED, f"{missing} not set")
            )
        elif values.OPENAI_KEY in invalid:
            outcomes.append(_invalid("OpenAI", values.OPENAI_KEY))
        else:
            outcomes.append(probes.probe_openai(client, base_url, key, model.reveal()))

        if supabase_url is None or service_key is None or not buckets:
            why = (
                "no bucket names"
                if not buckets
                else f"{values.SUPABASE_URL} or {values.SERVICE_KEY} not set"
            )
            outcomes.append(probes.Outcome("storage buckets", probes.SKIPPED, why))
        else:
            for name in buckets:
                bucket = settings.value(name)
                assert bucket is not None
                outcomes.append(
                    probes.probe_bucket(
                        client,
                        supabase_url.reveal(),
                        service_key,
                        name,
                        bucket.reveal(),
                    )
                )
    return outcomes


def _invalid(subject: str, name: str) -> probes.Outcome:
    return probes.Outcome(
        subject,
        probes.FAILED,
        f"not tried: {name} fails validation",
        fix="run `inv secrets.validate` and fix what it names first",
    )


def report_outcomes(outcomes: list[probes.Outcome]) -> list[str]:
    failed = []
    for outcome in outcomes:
        show = {
            probes.OK: ui.ok,
            probes.FAILED: ui.fail,
            probes.WARNING: ui.warn,
            probes.SKIPPED: ui.skip,
        }[outcome.verdict]
        show(outcome.subject, outcome.evidence)
        for diagnosis in outcome.diagnoses:
            ui.detail(f"diagnosis: {diagnosis.meaning}")
            ui.detail(f"fix: {diagnosis.fix}")
        if outcome.fix and not outcome.diagnoses:
            ui.detail(f"fix: {outcome.fix}")
        if outcome.verdict == probes.FAILED:
            failed.append(outcome.subject)
    return failed
