"""Disk space: checked before a build starts, given back after it succeeds.

A build writes in two places: artifacts/<name>/ (the partial build: the
provisioned disk, then every output format at once) and the stage cache
(rootfs tar, disk image, container images, packages). A disk that fills up
halfway fails the packaging step after minutes of work, so the check comes
before any stage; and a build that succeeded removes what it superseded, so
repeated builds do not fill the disk either."""
from __future__ import annotations

import os
from pathlib import Path

from golden import settings
from golden.build.cache import cache_dir
from golden.build.clean import clean_image, prune_cache
from golden.errors import GoldenError

GIB = 1024 ** 3
# Peak use of one image build from an empty cache, measured (fresh-ci,
# 2026-12-01): artifacts 3.8 GB while packaging (the sealed disk, a raw copy
# and every format at once; 2.1 GB remain), cache 1.9 GB (rootfs, disk, debs).
BUILD_NEEDS = {"artifacts": 4 * GIB, "cache": 2 * GIB}


def _existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    stat = os.statvfs(_existing(path))
    return stat.f_bavail * stat.f_frsize


def require_free_space(artifacts: Path, builds: int = 1, cache: Path | None = None) -> None:
    """One clear line when the filesystem of the artifacts or of the cache has
    less room than `builds` builds at once need; places on one filesystem add up."""
    places = {"artifacts": artifacts, "cache": cache or cache_dir()}
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
                f"{builds} image build{'s' if builds > 1 else ''} need about {need / GIB:.0f} GiB "
                f"(./inv clean removes old versions and unused cache entries)")


def give_back_space(image_dirs: list[Path], specs, say=print) -> None:
    """After a successful build: versions older than the newest
    GOLDEN_KEEP_VERSIONS, and cache entries no current spec uses (specs None:
    the cache stays). A build in progress keeps its partial directory."""
    keep = settings.keep_versions()
    for image_dir in image_dirs:
        clean_image(image_dir, keep=keep, partials=False, say=say)
    if specs is not None:
        prune_cache(specs, say=say)
