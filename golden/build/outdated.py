"""./inv outdated: is the newest tested image still current?

Compares the packages of the newest tested artifact (its manifest: the root
file system and each container image) with what the spec's archives serve
now. The .deb files of pending security updates are downloaded into the
package cache (from the same archives, checked against their signed index),
where their changelogs name the CVEs they fix and the next build finds them.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from golden.build import changes
from golden.build import lock
from golden.build.archive import ArchiveState, compare_versions, download, fetch_state
from golden.build.manifest import version_dirs
from golden.build.manifest import read_manifest

CURRENT, REBUILD_DUE = 0, 1
MAX_DOWNLOADS = 30  # security updates whose changelogs are fetched per run


def newest_tested(image_dir: Path) -> Path | None:
    for version in version_dirs(image_dir):
        if read_manifest(version / "manifest.json").get("test", {}).get("passed"):
            return version
    return None


def pending_updates(manifest: dict, state: ArchiveState, suite: str) -> list[dict]:
    """The installed packages the archives now serve a newer version of,
    security updates first."""
    installed = changes.merged_sections({"rootfs": manifest["packages"], **manifest.get("container_packages", {})})
    newer = {}
    for name, version in installed.items():
        candidate = state.candidate(name)
        if candidate and compare_versions(candidate.version, version) > 0:
            newer[name] = candidate.version
    _fetch_security_debs({n: v for n, v in newer.items() if _is_security(state, n, v)}, state, suite)
    return changes.diff_packages({n: installed[n] for n in newer}, newer, state, suite)


def _is_security(state: ArchiveState, name: str, version: str) -> bool:
    return any(a.pocket.security and a.version == version for a in state.available(name))


def _fetch_security_debs(wanted: dict[str, str], state: ArchiveState, suite: str) -> None:
    for name, version in sorted(wanted.items())[:MAX_DOWNLOADS]:
        if lock.cached_deb(suite, name, version):
            continue
        item = next(a for a in state.available(name) if a.version == version)
        data = download(f"{item.pocket.uri}/{item.filename}")
        if hashlib.sha256(data).hexdigest() != item.sha256:
            continue  # not what the signed index names: not kept
        dest = lock.debs_dir(suite) / Path(item.filename).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)


def report_outdated(specs, artifacts: Path, echo=sys.stdout) -> int:
    """Prints each image's pending updates; REBUILD_DUE when any image has
    one or has no tested artifact, else CURRENT."""
    due = False
    for spec in specs:
        artifact = newest_tested(artifacts / spec.name)
        if artifact is None:
            print(f"{spec.name}: no tested artifact: a build is due (./inv build --image {spec.name}, "
                  f"then ./inv test --image {spec.name})", file=echo)
            due = True
            continue
        manifest = read_manifest(artifact / "manifest.json")
        updates = pending_updates(manifest, fetch_state(spec.base), spec.base.suite)
        if not updates:
            print(f"{spec.name} {manifest['version']}: current (every package is what the archives serve)", file=echo)
            continue
        due = True
        security = sum(1 for u in updates if u["security"])
        print(f"{spec.name} {manifest['version']}: {len(updates)} pending updates ({security} security); "
              f"a rebuild is due:", file=echo)
        for update in updates:
            print(f"  {changes.change_line(update)}", file=echo)
    return REBUILD_DUE if due else CURRENT
