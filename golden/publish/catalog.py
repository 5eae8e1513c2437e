"""Vagrant box catalogs (metadata.json): the published repository's, and the
one for local artifacts that the lab uses by default.

Format: name, description, versions[] newest first, each with one libvirt
provider (url, checksum_type sha256, checksum, architecture amd64).
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import re
from pathlib import Path

from golden import settings
from golden.build.manifest import read_manifest
from golden.errors import GoldenError
from golden.files import write_json

CATALOG = "metadata.json"
VERSION_RE = re.compile(r"[0-9]{8}\.[0-9]{6}")  # golden's own: build time, YYYYMMDD.HHMMSS (fullmatch)
SERIAL, SIGNED_AT = "golden_serial", "golden_signed_at"  # signed with the catalog; one more at every write


class CatalogError(GoldenError):
    pass


def catalog_versions(catalog: dict, where: str) -> list[str]:
    """The catalog's versions, each checked to be golden's own format before
    any use (a version names a directory that --keep deletes)."""
    versions = catalog.get("versions") if isinstance(catalog, dict) else None
    if not isinstance(versions, list):
        raise CatalogError(f"{where}: not a box catalog (no versions list)")
    found = []
    for i, entry in enumerate(versions):
        version = entry.get("version") if isinstance(entry, dict) else None
        if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
            raise CatalogError(f"{where}: versions[{i}].version: {version!r} is not a golden version "
                               "(YYYYMMDD.HHMMSS): refusing the catalog")
        providers = entry.get("providers")
        if not isinstance(providers, list) or not providers or not all(isinstance(p, dict) for p in providers):
            raise CatalogError(f"{where}: versions[{i}].providers: expected a list of providers")
        found.append(version)
    revoked = catalog.get("revoked", [])
    if not isinstance(revoked, list) or not all(isinstance(r, dict) for r in revoked):
        raise CatalogError(f"{where}: revoked: expected a list of notices")
    for i, notice in enumerate(revoked):
        if not isinstance(notice.get("version"), str) or not VERSION_RE.fullmatch(notice["version"]):
            raise CatalogError(f"{where}: revoked[{i}].version: {notice.get('version')!r} is not a golden version")
    return found


def catalog_serial(catalog: dict, where: str) -> int:
    """The catalog's serial (0 for a catalog written before golden had them)."""
    serial = catalog.get(SERIAL, 0)
    if type(serial) is not int or serial < 0:
        raise CatalogError(f"{where}: {SERIAL}: expected a whole number, not {serial!r}")
    return serial


def remember_serial(url: str, catalog: dict) -> None:
    """Refuses a signed catalog older than one this machine has already seen
    at url (a rollback: an old catalog served again, to hide newer versions or
    a revocation); otherwise records its serial in the state directory."""
    path = settings.state_dir() / "catalog-serials.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        seen = _read_serials(path)
        before = seen.get(url, {}).get("serial", -1)
        serial = catalog_serial(catalog, url)
        if serial < before:
            raise CatalogError(
                f"{url}: serial {serial} (signed {catalog.get(SIGNED_AT, 'before serials')}) is older than "
                f"serial {before}, seen here on {seen[url].get('seen_at')}: a rolled-back catalog. If the "
                f"repository was restored on purpose, remove its entry from {path}")
        if serial > before:
            seen[url] = {"serial": serial, "seen_at": utc_now()}
            write_json(path, seen)


def seen_serial(url: str) -> int | None:
    """The highest serial this machine has seen at url (None: never)."""
    path = settings.state_dir() / "catalog-serials.json"
    entry = _read_serials(path).get(url) if path.is_file() else None
    return entry["serial"] if entry else None


def _read_serials(path: Path) -> dict:
    try:
        seen = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        seen = None
    if not isinstance(seen, dict) or not all(isinstance(e, dict) and type(e.get("serial")) is int
                                             for e in seen.values()):
        raise CatalogError(f"{path}: damaged (expected {{url: {{serial: N}}}}): move it away "
                           "(the serials seen are lost)")
    return seen


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def box_file(manifest: dict) -> dict:
    return next(f for f in manifest["files"] if f["name"].endswith(".libvirt.box"))


def version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def new_catalog(manifest: dict) -> dict:
    return {"name": f"golden/{manifest['name']}", "description": manifest.get("description", ""), "versions": []}


def with_version(catalog: dict, manifest: dict, box_url: str, keep: int | None = None) -> tuple[dict, list[dict]]:
    """The catalog with manifest's version added (replacing an entry of the same
    version), newest first, cut to `keep` versions; and the entries cut."""
    catalog_versions(catalog, "the catalog")
    entry = {"version": manifest["version"],
             "providers": [{"name": "libvirt", "url": box_url, "checksum_type": "sha256",
                            "checksum": box_file(manifest)["sha256"], "architecture": "amd64"}]}
    versions = [v for v in catalog["versions"] if v["version"] != manifest["version"]] + [entry]
    versions.sort(key=lambda v: version_key(v["version"]), reverse=True)
    kept = versions[:keep] if keep else versions
    if entry not in kept:
        raise CatalogError(f"--keep {keep} would drop {manifest['version']}, the version being published "
                           "(newer ones exist)")
    return dict(catalog, versions=kept), versions[len(kept):]


def write_local_catalog(image_dir: Path) -> Path | None:
    """artifacts/<name>/metadata.json listing the versions that passed ./inv
    test (none: no catalog). Replaced atomically."""
    catalog = None
    for version_dir in sorted(p.parent for p in Path(image_dir).glob("*/manifest.json")):
        if version_dir.is_symlink() or version_dir.name.startswith("."):
            continue
        manifest = read_manifest(version_dir / "manifest.json")
        if not (manifest.get("test") or {}).get("passed"):
            continue
        catalog = catalog or new_catalog(manifest)
        catalog, _ = with_version(catalog, manifest, (version_dir / box_file(manifest)["name"]).resolve().as_uri())
    path = Path(image_dir) / CATALOG
    if catalog is None:
        path.unlink(missing_ok=True)
        return None
    write_json(path, catalog)
    return path
