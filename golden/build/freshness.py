"""Current by default, exact on demand: what a build installs.

Before any stage runs, the spec's archives are read (archive.fetch_state):
- every locked version is what the archives serve now, and the spec asks for
  what it asked for when the lock was made: build exactly the lock (offline
  from the package cache when it has every version);
- the archives moved (or the spec's packages changed, or there is no lock
  yet): build with the current versions; the lock is rewritten afterwards
  and the changes are named;
- `--locked`: build exactly the lock, or fail now naming every locked version
  that neither the archives nor the package cache have;
- archives unreachable: build the lock from the package cache, and say so.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from golden.build import lock
from golden.build.archive import ArchiveState, ArchiveUnreachable, compare_versions, fetch_state
from golden.errors import GoldenError


@dataclass
class Plan:
    pins: dict[str, dict[str, str]] | None  # the lock to build exactly; None: the archives' current versions
    state: ArchiveState | None              # None: the archives could not be reached
    reason: str                             # one line for the build output
    locked: bool = False                    # --locked: the archives' candidates are not required

    @property
    def summary(self) -> str:
        return self.reason.split(": ")[0]

    @property
    def refresh(self) -> bool:
        return self.pins is None


def plan_build(spec, requested: dict[str, list[str]], locked: bool = False) -> Plan:
    """requested: {lock section: the packages the spec asks for in it}."""
    path = lock.lock_path(spec)
    pins = lock.read_lock(path)
    try:
        state, unreachable = fetch_state(spec.base), None
    except ArchiveUnreachable as exc:
        state, unreachable = None, str(exc)
    if locked or state is None:
        if pins is None:
            why = "--locked needs" if locked else f"the archives are unreachable ({unreachable}), and building needs"
            raise lock.LockError(f"{path.name}: {why} a lock file; there is none yet")
        for section, packages in requested.items():
            lock.check_requested(path, section, packages)
        _require_available(spec, pins, state)
        reason = ("--locked: building exactly the lock" if locked else
                  f"the archives are unreachable: building the lock from the package cache ({unreachable})")
        return Plan(pins, state, reason, locked=True)
    if pins is None:
        return Plan(None, state, "no lock yet: installing the archives' current versions; the build writes the lock")
    spec_changed = _spec_changes(path, requested)
    stale = stale_versions(pins, state)
    if not stale and not spec_changed:
        return Plan(pins, state, "every locked version is current: building exactly the lock")
    moved = [f"{p} {old} -> {new or '(gone)'}" for p, old, new in stale]
    why = "; ".join(([f"the archives moved: {len(moved)} locked versions are not current "
                      f"({', '.join(moved[:3])}{', ...' if len(moved) > 3 else ''})"] if moved else [])
                    + spec_changed)
    return Plan(None, state, f"{why}: installing the current versions; the build rewrites the lock")


def stale_versions(pins: dict[str, dict[str, str]], state: ArchiveState) -> list[tuple[str, str, str | None]]:
    """(package, locked version, current version or None) for each locked
    version that is not what the archives serve now."""
    stale = {}
    for packages in pins.values():
        for name, version in packages.items():
            candidate = state.candidate(name)
            if candidate is None or candidate.version != version:
                stale[name] = (name, version, candidate.version if candidate else None)
    return [stale[name] for name in sorted(stale)]


def _spec_changes(path: Path, requested: dict[str, list[str]]) -> list[str]:
    return [f"the spec's packages changed ([{section}] {'; '.join(problems)})"
            for section, packages in requested.items()
            if (problems := lock.requested_changes(path, section, packages))]


def _require_available(spec, pins: dict[str, dict[str, str]], state: ArchiveState | None) -> None:
    missing = sorted({(name, version) for packages in pins.values() for name, version in packages.items()
                      if not (state and state.serves(name, version))
                      and not lock.cached_deb(spec.base.suite, name, version)})
    if missing:
        named = ", ".join(f"{n} {v}" for n, v in missing)
        where = "the archives nor the package cache" if state else "the package cache (the archives are unreachable)"
        raise lock.LockError(
            f"{lock.lock_path(spec).name}: {len(missing)} locked versions are in neither {where}: {named}. "
            f"To build them, set base.snapshot to a UTC time when they were current (Debian's snapshot archive "
            f"keeps every version), or bring back the package cache that built them "
            f"({lock.debs_dir(spec.base.suite)}); or build without --locked to take the current versions")


def check_current(installed: dict[str, str], state: ArchiveState, where: str) -> None:
    """Without --locked an image is never built behind its archives: every
    installed package must be at least the archives' candidate."""
    behind = []
    for name, version in sorted(installed.items()):
        candidate = state.candidate(name)
        if candidate and compare_versions(version, candidate.version) < 0:
            behind.append(f"{name} {version} (the archives serve {candidate.version})")
    if behind:
        raise GoldenError(f"{where}: installed behind the archives: {', '.join(behind[:5])}"
                          + (f" and {len(behind) - 5} more" if len(behind) > 5 else ""))
