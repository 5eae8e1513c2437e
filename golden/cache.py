"""Stage cache: one directory per stage output, named by the hash of its inputs.

An entry is built under a temporary name and renamed when complete, so an
interrupted stage never leaves an entry that looks usable.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable


def cache_dir() -> Path:
    if os.environ.get("GOLDEN_CACHE"):
        return Path(os.environ["GOLDEN_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "golden"


from golden.paths import REPO


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


def cached_stage(kind: str, key: str, build: Callable[[Path], None], log) -> Path:
    """Returns the entry for key, running build(tmp_dir) only when it is missing."""
    final = cache_dir() / kind / key
    if final.is_dir():
        log.say(f"    {kind}: cached ({key})")
        return final
    tmp = final.with_name(f"{key}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        build(tmp)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
