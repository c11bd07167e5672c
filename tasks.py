"""The OCTO backend runbook as invoke tasks: `inv --list` shows them all.

This file only assembles the collection; each runbook section lives in its
own module under tasks/.
"""

import os
import sys
from pathlib import Path

# invoke imports this file as the module `tasks`, which would hide the
# tasks/ folder beside it. Naming that folder as this module's package path
# makes `tasks` one package for invoke and pytest alike, so `tasks.deploy`
# is the same module however it is imported. (tasks/ has no __init__.py on
# purpose: with one, pytest would import the folder and invoke this file.)
__path__ = [str(Path(__file__).with_name("tasks"))]

from invoke import Collection  # noqa: E402

from tasks import (  # noqa: E402
    auth,
    db,
    deploy,
    doctor,
    preflight,
    release,
    rollback,
    secrets,
    security,
    smoke,
    verify,
)

ns = Collection()
ns.add_task(preflight.preflight)
ns.add_task(doctor.doctor)
for module in (auth, secrets, db, deploy, verify, smoke, release, rollback, security):
    ns.add_collection(Collection.from_module(module))
# The echoed flyctl command in invoke's bold, but plain where colour is
# unwanted (NO_COLOR) or unseen (a CI log, a pipe), as ui.py does.
_plain = bool(os.environ.get("NO_COLOR")) or not sys.stdout.isatty()
ns.configure(
    {
        "run": {
            "echo_format": "$ {command}" if _plain else "\033[1;37m$ {command}\033[0m"
        }
    }
)
