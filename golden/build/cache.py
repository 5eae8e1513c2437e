"""Stage cache: one directory per stage output, named by the hash of its inputs.

An entry is built under a temporary name and renamed when complete, so an
interrupted stage never leaves an entry that looks usable. Each entry lists
the sha256 of its files (.sha256sums); an entry that no longer matches (a
disk error, a hand edit, a half-copied cache) is removed and rebuilt.

Every process that uses the cache (a build from its first step) holds a read
lock on .locks/in-use until it ends; pruning needs the write lock, so it
never removes what a running build still reads. An entry's modification
time is its last use.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from golden import settings
from golden.build.slots import slot_given_up
from golden.paths import REPO
from golden.vm.runner import pause_unless_interrupted


def cache_dir() -> Path:
    return settings.cache_dir()


def hash_files(paths: list[Path]) -> str:
    """Hash of the files' contents and their places (relative to the
    repository when inside it), so a file moved elsewhere changes the key."""
    h = hashlib.sha256()
    for path in sorted(Path(p).resolve() for p in paths):
        place = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
        h.update(str(place).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def stage_key(**inputs) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:20]


SUMS = ".sha256sums"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _entry_sums(entry: Path) -> str:
    files = sorted(p for p in entry.rglob("*") if p.is_file() and p.name != SUMS)
    return "".join(f"{sha256_file(p)}  {p.relative_to(entry)}\n" for p in files)


def entry_is_intact(entry: Path) -> bool:
    sums = entry / SUMS
    return sums.is_file() and sums.read_text() == _entry_sums(entry)


_IN_USE: dict[Path, object] = {}  # cache directory: its .locks/in-use, open and read-locked
_IN_USE_GUARD = threading.Lock()  # parallel builds are threads


def use_cache() -> object:
    """Marks this process as a user of the cache until it ends: a read lock
    (POSIX, per process) on .locks/in-use, which pruning must hold alone."""
    root = cache_dir().resolve()
    with _IN_USE_GUARD:
        if root not in _IN_USE:
            (root / ".locks").mkdir(parents=True, exist_ok=True)
            _IN_USE[root] = (root / ".locks" / "in-use").open("a+")  # read and write: both kinds of lock
            fcntl.lockf(_IN_USE[root], fcntl.LOCK_SH)
        return _IN_USE[root]


@contextmanager
def sole_user():
    """Yields True, with the cache locked for writing, when no other process
    uses it; else False. Either way this process keeps its read lock (POSIX
    locks convert atomically). Callers in one process take turns themselves."""
    lock_file = use_cache()
    try:
        fcntl.lockf(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        sole = True
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        sole = False
    try:
        yield sole
    finally:
        if sole:
            fcntl.lockf(lock_file, fcntl.LOCK_SH)


def cached_stage(kind: str, key: str, build: Callable[[Path], None], log, force: bool = False) -> Path:
    """Returns the entry for key, running build(tmp_dir) only when it is
    missing, damaged, or force is set. Builds of the same entry take turns
    (a lock file per key): parallel image builds share it, built once."""
    use_cache()
    final = cache_dir() / kind / key
    final.parent.mkdir(parents=True, exist_ok=True)
    with (cache_dir() / ".locks" / f"{kind}-{key}").open("w") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.say(f"    {kind}: another build is making it; waiting, its job slot free meanwhile")
            with slot_given_up():
                _wait_for(lock_file)
        return _cached_stage(final, kind, key, build, log, force)


def _wait_for(lock_file) -> None:
    """Takes lock_file once the build holding it (in this process or
    another) lets go; stops waiting when the run is interrupted, which a
    blocking flock in a worker thread would not."""
    while True:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pause_unless_interrupted(0.2, "the rest of this build")


def _cached_stage(final: Path, kind: str, key: str, build, log, force: bool) -> Path:
    if final.is_dir() and not force:
        if entry_is_intact(final):
            log.say(f"    {kind}: cached ({key})")
            os.utime(final)  # its last use
            return final
        log.say(f"    {kind}: cache entry {key} is damaged (checksums differ): rebuilding it")
    tmp = final.with_name(f"{key}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        build(tmp)
        (tmp / SUMS).write_text(_entry_sums(tmp))
        if final.exists():  # damaged or forced: out of the way first, then replaced
            old = final.with_name(f"{key}.old-{os.getpid()}")
            final.rename(old)
            shutil.rmtree(old)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def alias(kind: str, key: str, other_key: str) -> None:
    """Files entry key also under other_key (hard links: no copy), unless
    that exists already or key does not."""
    src, dest = cache_dir() / kind / key, cache_dir() / kind / other_key
    if dest.exists() or not src.is_dir() or key == other_key:
        return
    tmp = dest.with_name(f"{other_key}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, copy_function=os.link)
    tmp.rename(dest)
