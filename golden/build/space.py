"""Disk space: checked before a build starts, given back after it succeeds.

A build writes in two places: artifacts/<name>/ (the partial build: the
provisioned disk, then every output format at once) and the stage cache
(rootfs tar, disk image, container images, packages). A disk that fills up
halfway fails the packaging step after minutes of work, so the check comes
before any stage; and a build that succeeded removes what it superseded, so
repeated builds do not fill the disk either (the cache down to a size)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from golden import settings
from golden.build.cache import cache_dir
from golden.build.clean import clean_image, prune_cache
from golden.errors import GoldenError

GIB = 1024 ** 3
# Peak use of one image build from an empty cache, measured (fresh-ci,
# 2026-12-01): artifacts 3.8 GB while packaging (the sealed disk, a raw copy
# and every format at once; 2.1 GB remain), cache 1.9 GB (rootfs, disk, debs).
# tmp: mmdebstrap's chroot before it becomes the rootfs tar (0.85 GB) with
# the packages copied in (0.6 GB).
BUILD_NEEDS = {"artifacts": 4 * GIB, "cache": 2 * GIB, "tmp": 2 * GIB}


def _existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    stat = os.statvfs(_existing(path))
    return stat.f_bavail * stat.f_frsize


def require_free_space(artifacts: Path, builds: int = 1, warm: bool = False,
                       cache: Path | None = None, tmp: Path | None = None) -> None:
    """One clear line when a filesystem has less room than `builds` builds at
    once need; places on one filesystem add up. warm: every stage cache entry
    exists already, so only the artifacts need room."""
    places = {"artifacts": artifacts}
    if not warm:
        places.update(cache=cache or cache_dir(), tmp=tmp or Path(tempfile.gettempdir()))
    needs: dict[int, tuple[Path, int]] = {}
    for what, path in places.items():
        device = os.stat(_existing(path)).st_dev
        shown, need = needs.get(device, (path, 0))
        needs[device] = (shown, need + builds * BUILD_NEEDS[what])
    for path, need in needs.values():
        free = free_bytes(path)
        if free < need:
            raise GoldenError(
                f"not enough disk space: {path} has {free / GIB:.1f} GiB free, "
                f"{builds} image build{'s' if builds > 1 else ''} at once need about {need / GIB:.0f} GiB "
                f"(./inv clean removes old versions and unused cache entries)")


def give_back_space(image_dirs: list[Path], protect: list[Path], specs, say=print) -> None:
    """After a successful build: versions older than the newest
    GOLDEN_KEEP_VERSIONS (never one in protect, the newest tested one or
    `latest`), then cache entries no spec in specs uses (None: none is known
    unused), least recently used first, while the stage cache is over
    GOLDEN_CACHE_MAX_GB. Nothing here fails the build: a problem is one line,
    and the space stays."""
    try:
        for image_dir in image_dirs:
            clean_image(image_dir, keep=settings.keep_versions(), partials=False, protect=protect, say=say)
    except Exception as exc:  # the build succeeded; its artifact stays valid
        say(f"old versions not removed: {_first_line(exc)}")
    try:
        if specs is not None:
            prune_cache(specs, max_bytes=settings.cache_max_gb() * GIB, say=say)
    except Exception as exc:
        say(f"cache not pruned: {_first_line(exc)}")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
