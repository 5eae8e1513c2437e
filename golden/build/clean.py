"""./inv clean: remove failed builds and old versions, optionally the cache."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from golden.build.manifest import version_dirs
from golden.build.cache import cache_dir

STAGE_KINDS = ("rootfs", "disk", "container")


def clean_image(image_dir: Path, keep: int = 1, partials: bool = True, say=print) -> list[Path]:
    """Removes all but the newest `keep` versions and, with partials, the
    leftovers of failed or killed builds (.<version>.partial: also a build
    running now); `latest` always stays valid."""
    removed = []
    if not image_dir.is_dir():
        return removed
    if partials:
        removed += [d for d in image_dir.glob(".*.partial") if d.is_dir()]
    latest = (image_dir / "latest").resolve() if (image_dir / "latest").exists() else None
    versions = version_dirs(image_dir)
    removed += [d for d in versions[max(keep, 1):] if d.resolve() != latest]
    for d in removed:
        shutil.rmtree(d)
        say(f"removed {d}")
    return removed


def prune_cache(specs, say=print) -> list[Path]:
    """Removes stage cache entries that no current image spec uses, and
    leftovers of interrupted stages (*.tmp-<pid>, *.old-<pid> of a process
    that has ended). The package cache (debs/) stays: the lock files decide
    which versions are wanted."""
    from golden.build.pipeline import stage_keys
    from golden.build.lock import lock_path, read_lock
    used = set()
    for spec in specs:
        keys = stage_keys(spec, read_lock(lock_path(spec)))
        used |= {("rootfs", keys["rootfs"]), ("disk", keys["disk"])}
        used |= {("container", k) for k in keys["container"].values()}
    removed = []
    root = cache_dir()
    for kind_dir in (root / kind for kind in STAGE_KINDS):
        if not kind_dir.is_dir():
            continue
        for entry in sorted(kind_dir.iterdir()):
            if (kind_dir.name, entry.name) not in used and not _being_built(entry):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                removed.append(entry)
                say(f"removed {entry} (no current image spec uses it)")
    return removed


def _being_built(entry: Path) -> bool:
    """A stage's work directory whose process still runs (another build)."""
    match = re.fullmatch(r".+\.(?:tmp|old)-(\d+)", entry.name)
    return bool(match) and Path(f"/proc/{match[1]}").exists()


def clean_cache(say=print) -> None:
    path = cache_dir()
    if path.exists():
        shutil.rmtree(path)
        say(f"removed {path}")
