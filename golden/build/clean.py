"""./inv clean, and what a successful build gives back: old versions of an
image, stage cache entries no current spec uses, and (./inv clean only)
the package cache's .deb files of versions no lock pins."""
from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

from golden.build.cache import cache_dir, sole_user
from golden.build.manifest import read_manifest, version_dirs
from golden.errors import GoldenError

STAGE_KINDS = ("rootfs", "disk", "container")


def clean_image(image_dir: Path, keep: int = 1, partials: bool = True, protect=(), say=print) -> list[Path]:
    """Removes all but the newest `keep` versions and, with partials, the
    leftovers of failed or killed builds (.<version>.partial: also a build
    running now). Always kept: what `latest` points to, the newest version
    that passed ./inv test (the lab's box) and the paths in protect."""
    if not image_dir.is_dir():
        return []
    removed = [d for d in image_dir.glob(".*.partial") if d.is_dir()] if partials else []
    versions = version_dirs(image_dir)
    tested = next((d for d in versions if _passed(d)), None)
    stays = {p.resolve() for p in protect} | {d.resolve() for d in (tested, image_dir / "latest") if d and d.exists()}
    removed += [d for d in versions[max(keep, 1):] if d.resolve() not in stays]
    for d in removed:
        _remove(d)
        say(f"removed {d}")
    return removed


def _passed(version: Path) -> bool:
    try:
        return bool((read_manifest(version / "manifest.json").get("test") or {}).get("passed"))
    except GoldenError:  # unreadable: not known to have passed
        return False


def prune_cache(specs, max_bytes: int | None = None, say=print) -> list[Path]:
    """Removes stage cache entries that no spec in specs uses and leftovers of
    interrupted stages (*.tmp-<pid>, *.old-<pid> of a process that has
    ended): all of them, or with max_bytes (not 0), least recently used
    first until the stage cache is no larger. Only when no other process uses
    the cache. The package cache (debs/) stays: the lock files decide which
    versions are wanted."""
    with _alone():
        return _prune(specs, max_bytes, say)


def clean(image_dirs: list[Path], keep: int, specs, whole_cache: bool = False, say=print) -> None:
    """./inv clean: failed builds and old versions of each image, then unused
    cache entries (or the whole cache), all only while no other golden
    process uses the cache (a build in progress has a .partial directory)."""
    with _alone():
        for image_dir in image_dirs:
            clean_image(image_dir, keep=keep, say=say)
        if whole_cache:
            for item in cache_dir().iterdir():
                if item.name != ".locks":
                    _remove(item)
            say(f"emptied {cache_dir()}")
        else:
            _prune(specs, None, say)
            prune_packages(specs, say)


def prune_packages(specs, say=print) -> list[Path]:
    """Removes the package cache's .deb files of versions no lock of specs
    pins (a lock pins the versions a locked build installs, offline when the
    cache has them all) and the local repositories that earlier versions of
    golden kept beside it (each run now makes its own). Not after a build: a
    second worktree sharing the cache may pin older versions."""
    from golden.build.lock import deb_file_version, lock_path, read_lock
    wanted = {(package, deb_file_version(version))
              for spec in specs for section in (read_lock(lock_path(spec)) or {}).values()
              for package, version in section.items()}
    debs = cache_dir() / "debs"
    suites = sorted(d for d in debs.iterdir() if d.is_dir()) if debs.is_dir() else []
    removed = []
    for suite in suites:
        if "-repo" in suite.name:  # or its .tmp-<pid> left by an interrupt
            stale = [suite]
        else:
            stale = [deb for deb in sorted(suite.glob("*.deb")) if tuple(deb.name.split("_")[:2]) not in wanted]
        freed = _disk_bytes(stale)
        for path in stale:
            _remove(path)
        if stale:
            say(f"removed {suite}" if stale == [suite] else
                f"removed {len(stale)} package{'s' if len(stale) != 1 else ''} no lock pins from {suite} ({freed / 1e6:.1f} MB)")
        removed += stale
    return removed


@contextmanager
def _alone():
    with sole_user() as sole:
        if not sole:
            raise GoldenError(f"the stage cache {cache_dir()} is in use by another golden process")
        yield


def _prune(specs, max_bytes: int | None, say) -> list[Path]:
    from golden.build.pipeline import locked_entries
    used = {entry for spec in specs for entry in locked_entries(spec)}
    entries = [e for kind in STAGE_KINDS if (cache_dir() / kind).is_dir()
               for e in (cache_dir() / kind).iterdir() if not _being_built(e)]
    leftovers = [e for e in entries if _WORK_DIR.fullmatch(e.name)]  # of stages whose process has ended
    unused = sorted((e for e in entries if (e.parent.name, e.name) not in used and e not in leftovers),
                    key=lambda e: e.stat().st_mtime)
    if max_bytes:  # else all of them
        unused = _least_recently_used(unused, over=_disk_bytes(entries) - _disk_bytes(leftovers) - max_bytes,
                                      kept=[e for e in entries if e not in unused and e not in leftovers])
    for entry in leftovers + unused:
        _remove(entry)
        say(f"removed {entry} ({'left by an interrupted stage' if entry in leftovers else 'no current image spec uses it'})")
    return leftovers + unused


_WORK_DIR = re.compile(r".+\.(?:tmp|old)-(\d+)")  # cache.py's names while a stage works


def _being_built(entry: Path) -> bool:
    """A stage's work directory whose process still runs (another build)."""
    match = _WORK_DIR.fullmatch(entry.name)
    return bool(match) and Path(f"/proc/{match[1]}").exists()


def _files(path: Path):
    return [path] if not path.is_dir() else [Path(d) / f for d, _, files in os.walk(path) for f in files]


def _disk_bytes(paths) -> int:
    """Bytes on disk, each file once (aliased entries share theirs: hard links)."""
    sizes = {}
    for f in (f for path in paths for f in _files(path)):
        st = f.lstat()
        sizes[st.st_dev, st.st_ino] = st.st_blocks * 512
    return sum(sizes.values())


def _least_recently_used(unused: list[Path], over: int, kept: list[Path]) -> list[Path]:
    """The oldest of unused (oldest first) whose removal frees `over` bytes. A
    file frees its bytes with its last link (aliased entries are hard links),
    never while a kept entry links it."""
    kept_files = {(st.st_dev, st.st_ino) for st in (f.lstat() for e in kept for f in _files(e))}
    links_left: dict = {}
    chosen = []
    for entry in unused:
        if over <= 0:
            break
        chosen.append(entry)
        for st in (f.lstat() for f in _files(entry)):
            inode = st.st_dev, st.st_ino
            if inode not in kept_files:
                links_left[inode] = links_left.get(inode, st.st_nlink) - 1
                over -= st.st_blocks * 512 if links_left[inode] == 0 else 0
    return chosen


def _remove(path: Path) -> None:
    try:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    except FileNotFoundError:  # removed by another clean meanwhile
        pass
