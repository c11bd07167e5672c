"""Choose the release a rollback returns an app to (pure: no I/O).

flyctl has no rollback command: going back means deploying an earlier
release's image again, which makes a new release (reference section 5).
These functions pick that earlier release from `flyctl releases --json`
(newest first) and from what the release journal remembers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from tasks.checks import AppStatus, Release

# `flyctl releases` lists only this many of the newest releases.
RELEASES_SHOWN = 25


class NoTarget(ValueError):
    """No release fits; the message says why, in the operator's words."""


@dataclass(frozen=True)
class Plan:
    """What one app's rollback will do."""

    app: str
    current: Release
    target: Release
    # How the target was chosen, and the releases passed over on the way.
    reason: str
    skipped: tuple[str, ...] = ()

    @property
    def needed(self) -> bool:
        return self.target.image != self.current.image


def choose(
    app: str,
    releases: Sequence[Release],
    *,
    to: int = 0,
    recorded: Mapping[int, Release] | None = None,
    before: Release | None = None,
    avoid: Collection[str] = (),
) -> Plan:
    """The rollback of APP: to `before`, to version `to`, or to the previous.

    `before` is the release the app ran before the last release in the
    journal (the pair's rollback); `recorded` maps versions to what the
    journal knows of them, for versions older than flyctl lists; `avoid`
    holds images already rolled back from, so a second rollback goes further
    back instead of returning to the bad image.
    """
    if not releases:
        raise NoTarget("has no releases: it was never deployed, nothing to go back to")
    current = releases[0]
    if before is not None:
        return Plan(
            app,
            current,
            before,
            f"the image it ran before the last release (v{before.version})",
        )
    if to:
        return Plan(
            app, current, by_version(releases, to, recorded or {}), f"v{to} as asked"
        )
    target, skipped = previous_good(releases, avoid=avoid)
    return Plan(
        app,
        current,
        target,
        "the newest earlier complete release with another image",
        skipped,
    )


def previous_good(
    releases: Sequence[Release], *, avoid: Collection[str] = ()
) -> tuple[Release, tuple[str, ...]]:
    """The newest earlier complete release whose image differs from the newest.

    Also returns the releases passed over, each with the reason, so that the
    operator sees why (for example) the release just before was not chosen.
    """
    current = releases[0]
    skipped = []
    for release in releases[1:]:
        why = _unfit(release, current, avoid)
        if why is None:
            return release, tuple(skipped)
        skipped.append(f"v{release.version} ({why})")
    message = (
        f"has no earlier complete release with another image among the "
        f"{len(releases)} release(s) flyctl lists (v{releases[-1].version} to "
        f"v{current.version})"
    )
    if len(releases) >= RELEASES_SHOWN:
        message += (
            f"; flyctl shows only the {RELEASES_SHOWN} newest, so pick an older "
            "one with --to VERSION (the journal may know its image)"
        )
    raise NoTarget(message)


def by_version(
    releases: Sequence[Release], version: int, recorded: Mapping[int, Release]
) -> Release:
    """Release VERSION, from flyctl's list or else from the journal."""
    current = releases[0]
    if version > current.version:
        raise NoTarget(f"has no v{version}: its newest release is v{current.version}")
    for release in releases:
        if release.version != version:
            continue
        if release.status != "complete":
            raise NoTarget(
                f"v{version} is {release.status or 'of unknown status'}, not "
                "complete: its image may be the reason it failed; pick a complete one"
            )
        if not release.image:
            raise NoTarget(f"v{version} has no image ref in flyctl's answer")
        return release
    if version in recorded and recorded[version].image:
        return recorded[version]
    raise NoTarget(
        f"v{version} is older than the {len(releases)} newest releases flyctl "
        f"lists (v{releases[-1].version} to v{current.version}), and the "
        "journal has no record of it"
    )


def _unfit(release: Release, current: Release, avoid: Collection[str]) -> str | None:
    if release.status != "complete":
        return release.status or "unknown status"
    if not release.image:
        return "no image ref"
    if release.image == current.image:
        return "same image as the newest"
    if release.image in avoid:
        return "rolled back from before"
    return None


def machine_spread(status: AppStatus) -> str:
    """The release versions an app's machines run, e.g. `1 on v4, 1 on v3`.

    After a rolling deploy that failed part way, some machines run the new
    release and some the old one; a rollback deploy moves them all.
    """
    counts: dict[str, int] = {}
    for machine in status.machines:
        counts[machine.version or "?"] = counts.get(machine.version or "?", 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: _version_key(kv[0]), reverse=True)
    return ", ".join(f"{n} on v{version}" for version, n in ordered)


def _version_key(version: str) -> int:
    return int(version) if version.isdigit() else -1
