"""manifest.json of an artifact version: what was built, from what, how long."""
from __future__ import annotations

import json
from pathlib import Path

from golden.errors import GoldenError
from golden.files import write_json

REQUIRED = ("name", "version", "built_at", "spec_sha256", "base", "packages", "files",
            "stages", "accelerator")


def version_dirs(image_dir: Path) -> list[Path]:
    """Completed versions, newest first."""
    if not image_dir.is_dir():
        return []
    dirs = [d for d in image_dir.iterdir()
            if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")
            and (d / "manifest.json").is_file()]
    return sorted(dirs, key=lambda d: d.name, reverse=True)


def write_manifest(path: Path, manifest: dict) -> None:
    """Atomic: a reader sees the old manifest or the new one, never half."""
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise ValueError(f"manifest lacks {', '.join(missing)}")
    write_json(path, manifest)


def read_manifest(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise GoldenError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise GoldenError(f"{path}: not a valid manifest (invalid JSON: {exc})") from None


def record_test(path: Path, passed: bool, tests: int, failures: int, reports: list[str]) -> dict:
    manifest = read_manifest(path)
    manifest["test"] = {"passed": passed, "tests": tests, "failures": failures, "reports": reports}
    write_manifest(path, manifest)
    return manifest
