"""Section 11: keep secrets out of git, and rotate exposed keys."""

from __future__ import annotations

from invoke import task

from tasks import rotation, ui
from tasks.errors import UsageError, task_boundary
from tasks.flyctl import SECRET_NAME
from tasks.session import open_session


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
