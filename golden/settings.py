"""Every environment variable golden reads, read when asked (never at import
time), so a caller may change the environment between calls."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from golden.errors import GoldenError
from golden.paths import REPO


def _get(name: str) -> str:
    return os.environ.get(name, "").strip()


def cache_dir() -> Path:
    """$GOLDEN_CACHE, or $XDG_CACHE_HOME/golden, or ~/.cache/golden."""
    if _get("GOLDEN_CACHE"):
        return Path(_get("GOLDEN_CACHE"))
    return Path(_get("XDG_CACHE_HOME") or Path.home() / ".cache") / "golden"


def state_dir() -> Path:
    """$GOLDEN_STATE, or $XDG_STATE_HOME/golden, or ~/.local/state/golden:
    what this machine has seen (e.g. the newest catalog serials)."""
    if _get("GOLDEN_STATE"):
        return Path(_get("GOLDEN_STATE"))
    return Path(_get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "golden"


def artifacts_dir() -> Path:
    return Path(_get("GOLDEN_ARTIFACTS") or REPO / "artifacts")


def _whole_number(name: str, default: int, least: int) -> int:
    value = _get(name) or str(default)
    if not (value.isascii() and value.isdigit()) or int(value) < least:
        raise GoldenError(f"{name}: expected a whole number of at least {least}, got {value!r}")
    return int(value)


def keep_versions() -> int:
    """GOLDEN_KEEP_VERSIONS: built versions kept per image after a build (default 3)."""
    return _whole_number("GOLDEN_KEEP_VERSIONS", 3, 1)


def cache_max_gb() -> int:
    """GOLDEN_CACHE_MAX_GB: the stage cache size a build prunes down to, by
    removing entries no current spec uses (default 10; 0: all of those)."""
    return _whole_number("GOLDEN_CACHE_MAX_GB", 10, 0)


def images_dir() -> Path:
    return Path(_get("GOLDEN_IMAGES") or REPO / "images")


def accelerator_override() -> str:
    """GOLDEN_ACCEL (kvm or tcg), lowercased; empty: probe."""
    return _get("GOLDEN_ACCEL").lower()


def catalog() -> str:
    """GOLDEN_CATALOG: the box repository labs take their boxes from (empty: the local artifacts)."""
    return _get("GOLDEN_CATALOG")


def signing_key() -> Path:
    return Path(_get("GOLDEN_SIGNING_KEY") or Path.home() / ".config" / "golden" / "signing_key")


def allowed_signers() -> Path | None:
    return Path(_get("GOLDEN_ALLOWED_SIGNERS")) if _get("GOLDEN_ALLOWED_SIGNERS") else None


def publish_credentials() -> dict:
    """{'token': ...} or {'user': ..., 'password': ...} or {} (never printed)."""
    if _get("GOLDEN_PUBLISH_TOKEN"):
        return {"token": os.environ["GOLDEN_PUBLISH_TOKEN"]}
    if _get("GOLDEN_PUBLISH_USER"):
        return {"user": os.environ["GOLDEN_PUBLISH_USER"], "password": os.environ.get("GOLDEN_PUBLISH_PASSWORD", "")}
    return {}


def publish_lock_timeout() -> float:
    return float(_get("GOLDEN_PUBLISH_LOCK_TIMEOUT") or 600)


@contextmanager
def environment(**values: str):
    """Runs a block with these variables set (e.g. the bench's own GOLDEN_CACHE)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
