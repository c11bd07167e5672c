"""Section 3: build the database URL the runbook's secret needs."""

from __future__ import annotations

from pathlib import Path

from invoke import task

from tasks import ui, values
from tasks.errors import OctoError, UsageError, task_boundary
from tasks.session import open_session
from tasks.settings import Secret


@task(
    help={
        "kind": "direct (db.<ref>.supabase.co), session (pooler, port 5432) or "
        "transaction (pooler, port 6543); default direct",
        "ref": "Supabase project ref (default from SUPABASE_URL)",
        "pooler_host": "Pooler host from the dashboard's Connect dialog, e.g. "
        "aws-0-eu-central-1.pooler.supabase.com (session and transaction only)",
        "role": "Database role (default postgres; the pooler adds .<ref>)",
        "host": "Any other host, overriding the Supabase one (e.g. a local test server)",
        "port": "Port for --host (default 5432)",
        "print_only": "Print the URL with its password masked; leave .env alone",
    }
)
def url(
    c,
    kind="direct",
    ref="",
    pooler_host="",
    role="postgres",
    host="",
    port=5432,
    print_only=False,
):
    """
    Build SUPABASE_DB_URL with an encoded password and SSL.

    Asks for the password without echoing it (or reads one line from
    standard input when that is not a terminal), percent-encodes it, adds
    /postgres and sslmode=require, checks the result as secrets.validate
    does and writes it to .env, replacing the old line and keeping others.
    """
    with task_boundary("db.url"):
        session = open_session(c)
        settings = session.settings
        user, target_host, target_port = _endpoint(
            settings, kind, ref, pooler_host, role, host, port
        )

        password = ui.read_secret("Database password")
        built = Secret(
            values.build_db_url(
                user=user,
                password=password.reveal(),
                host=target_host,
                port=target_port,
            )
        )
        context = dict(settings.values, **{values.DB_URL: built})
        findings = [
            f
            for f in values.validate(context, names=(values.DB_URL,))
            if not (host and not f.is_error)
        ]
        for finding in findings:
            (ui.fail if finding.is_error else ui.warn)(finding.name, finding.reason)
            ui.detail(f"fix: {finding.fix}")
        if values.errors(findings):
            raise OctoError(
                "the built URL does not pass validation (listed above); .env is unchanged"
            )

        if print_only:
            ui.ok(values.DB_URL, values.mask_db_url(built.reveal()))
            return
        write_env_value(settings.env_file, values.DB_URL, built)
        ui.ok(
            f"{values.DB_URL} written to {settings.env_file.name}",
            values.mask_db_url(built.reveal()),
        )
        ui.detail(
            "next: `inv secrets.test` to try it once, then `inv secrets.set SUPABASE_DB_URL`"
        )


def _endpoint(
    settings, kind: str, ref: str, pooler_host: str, role: str, host: str, port: int
) -> tuple[str, str, int]:
    if host:
        if kind != "direct":
            raise UsageError(
                "--host replaces the Supabase host: use it with --kind direct"
            )
        return role, host, int(port)
    if not ref:
        supabase_url = settings.value(values.SUPABASE_URL)
        ref = values.supabase_ref(supabase_url.reveal()) if supabase_url else ""
    if not ref or not values.REF.match(ref):
        raise UsageError(
            "no project ref: pass --ref <20 lower-case letters> or set SUPABASE_URL "
            "to https://<ref>.supabase.co"
        )
    try:
        return values.supabase_endpoint(kind, ref, pooler_host, role)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def write_env_value(path: Path, name: str, value: Secret) -> None:
    """Put NAME=VALUE into the dotenv file at PATH, keeping every other line."""
    text = path.read_text(encoding="utf-8-sig") if path.is_file() else ""
    path.write_text(
        values.replace_env_line(text, name, value.reveal()), encoding="utf-8"
    )
