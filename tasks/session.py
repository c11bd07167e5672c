"""What every task starts from: settings, flyctl and the dry-run switch."""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks import settings as settings_module
from tasks.errors import OctoError, UsageError
from tasks.runner import Flyctl

if TYPE_CHECKING:
    from invoke import Context

    from tasks.checks import Release
    from tasks.settings import AppSettings, Settings

# The folder holding tasks.py, invoke.yaml and the Fly config files.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Session:
    c: Context
    settings: Settings
    fly: Flyctl
    dry_run: bool
    started: float = field(default_factory=time.monotonic)
    # App key -> the release it ran before this task first deployed it, in
    # deploy order: what an automatic rollback returns to.
    replaced: dict[str, Release | None] = field(default_factory=dict)

    def fly_config(self, app: AppSettings) -> dict[str, Any]:
        """The parsed Fly config file of APP."""
        try:
            with app.config.open("rb") as fh:
                return tomllib.load(fh)
        except FileNotFoundError:
            raise UsageError(
                f"{app.config.name} (Fly config of {app.name}) not found in "
                f"{app.config.parent}; run from the repository root"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise OctoError(f"{app.config.name} is not valid TOML: {exc}") from None

    def auto_stops(self, app: AppSettings) -> bool:
        """Whether Fly stops APP's machines when idle (scale to zero)."""
        service = self.fly_config(app).get("http_service") or {}
        return service.get("auto_stop_machines") not in (None, False, "off")


def open_session(c: Context, *, dry_run: bool = False) -> Session:
    """Load settings for a task; refuse invoke's global --dry.

    Under `inv --dry` every command returns an empty result, so nothing
    could be parsed or verified; the tasks' own `--dry-run` runs the reads
    and only shows the changes. The refusal exits 2 (not as asked), never
    0: a CI step `inv --dry release` must not pass for a release.
    """
    if c.config.run.dry:
        from invoke.exceptions import Exit

        raise Exit(
            "inv --dry runs no flyctl reads, so nothing can be verified; "
            "use the task's --dry-run option instead (e.g. inv release --dry-run)",
            code=2,
        )
    loaded = settings_module.load(c.config, root=Path.cwd())
    return Session(
        c=c, settings=loaded, fly=Flyctl(c, loaded, dry_run=dry_run), dry_run=dry_run
    )
