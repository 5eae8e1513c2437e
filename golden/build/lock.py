"""Lock files and the package cache.

images/<name>.lock records the exact package versions of the image's last
successful build, per mmdebstrap run: the root file system and each
container image. When the lock is what the archives serve (freshness.py
decides), a build pins every locked version (apt preferences, only while
building) and then checks that what was installed is exactly the lock: a
package the lock does not list, or another version, is an error naming the
package. Otherwise the build installs the current versions and rewrites the
lock; `./inv lock --update` does that without building.

A pinned run names every locked package, not only those the spec asks for:
apt alone may satisfy a virtual package or an alternative with another
provider when its index lists packages in another order (the mirror's and
the package cache's do), and the lock would not hold. For the same reason the
variant of a pinned run is `essential`: minbase adds Priority: required
packages, and a .deb's own priority can differ from the archive's. What the spec did not
ask for is then marked automatically installed, as an unpinned run leaves
it. The lock flags the packages the spec asked for (`requested`), so a
package added to or removed from the spec is named before anything runs.

The .deb files mmdebstrap downloads are kept in $GOLDEN_CACHE/debs/<suite>/
and handed to the next run, so a rebuild downloads nothing it already has.
When the cache holds every locked version, the run needs no network at all:
it installs from a local repository made of the cache (Packages and Release
written next to hard links of the .deb files) instead of the mirror.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from golden.build import archive
from golden.build.cache import cache_dir, sha256_file
from golden.errors import GoldenError

HEADER = ("# golden lock file: exact package versions of the last successful build.\n"
          "# ./inv build installs exactly these; ./inv lock --update refreshes them.\n")
PREFERENCES = "/etc/apt/preferences.d/golden-lock"
MARK_AUTO_HOOK = Path(__file__).with_name("lock_mark_auto.sh")
FILES = ["golden/build/lock_mark_auto.sh"]  # read by the code (pipeline.code_digest)
REQUESTED = "requested"


class LockError(GoldenError):
    pass


def lock_path(spec) -> Path:
    return Path(spec.path).with_suffix(".lock")


def _parse(path: Path) -> tuple[dict[str, dict[str, str]], dict[str, set[str]]]:
    """({section: {package: version}}, {section: the packages flagged requested})."""
    sections: dict[str, dict[str, str]] = {}
    requested: dict[str, set[str]] = {}
    current = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, {}), requested.setdefault(current, set())
            continue
        fields = line.split()
        if current is None or len(fields) not in (2, 3) or fields[2:] not in ([], [REQUESTED]):
            raise LockError(f"{path.name}: line {number}: expected '[section]' or '<package> <version> [{REQUESTED}]'")
        sections[current][fields[0]] = fields[1]
        if fields[2:]:
            requested[current].add(fields[0])
    return sections, requested


def read_lock(path: Path) -> dict[str, dict[str, str]] | None:
    """{section: {package: version}}, or None when there is no lock file."""
    return _parse(path)[0] if path.is_file() else None


def read_requested(path: Path) -> dict[str, set[str]]:
    """{section: the packages the spec asked for when the lock was made}."""
    return _parse(path)[1] if path.is_file() else {}


def write_lock(path: Path, sections: dict[str, dict[str, str]],
               requested: dict[str, set[str]] | None = None) -> None:
    requested = requested or {}
    text = HEADER + "".join(
        f"\n[{name}]\n" + "".join(f"{pkg} {ver}{' ' + REQUESTED if pkg in requested.get(name, ()) else ''}\n"
                                  for pkg, ver in sorted(pkgs.items()))
        for name, pkgs in sorted(sections.items()))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def debs_dir(suite: str) -> Path:
    return cache_dir() / "debs" / suite


FILE_MIRROR_HOOKS = "/usr/share/mmdebstrap/hooks/file-mirror-automount"
OFFLINE_SOURCE = "deb [trusted=yes] file://"


def mmdebstrap_args(base, pins: dict[str, str] | None, work: Path,
                    requested: list[str] = ()) -> tuple[list[str], list[str]]:
    """Options for one mmdebstrap run, and its sources: the package cache in
    and out, the image's own apt sources (the same archives, deb822), the pins
    (apt preferences present only while building; every locked package named,
    those not in requested then marked automatically installed), and the
    local repository of the cache when it holds every pinned version."""
    debs = debs_dir(base.suite)
    sources = work / "debian.sources"
    sources.write_text(archive.image_sources(base))
    args = ["--skip=essential/unlink",
            f'--setup-hook=mkdir -p {debs} "$1"/var/cache/apt/archives/',
            f"--setup-hook=sync-in {debs} /var/cache/apt/archives/",
            f"--customize-hook=sync-out /var/cache/apt/archives {debs}",
            f'--customize-hook=rm -f "$1"/etc/apt/sources.list "$1"/etc/apt/sources.list.d/*',
            f'--customize-hook=cp {sources} "$1"/etc/apt/sources.list.d/debian.sources']
    mirrors = [pocket.sources_line(base.components) for pocket in archive.pockets(base)]
    if pins:
        prefs = work / "golden-lock.pref"
        prefs.write_text("".join(f"Package: {p}\nPin: version {v}\nPin-Priority: 1001\n\n"
                                 for p, v in sorted(pins.items())))
        (work / "requested.txt").write_text("".join(f"{p}\n" for p in sorted({*requested, "apt"})))
        args += [f'--setup-hook=mkdir -p "$1"/etc/apt/preferences.d && cp {prefs} "$1"{PREFERENCES}',
                 f"--include={','.join(sorted(pins))}",
                 # The lock names every package, so the variant must not add any: minbase would add
                 # what has Priority: required, which the package cache's index (the .deb's own
                 # control) and the mirror's (the archive's overrides) do not always agree on.
                 "--variant=essential",
                 f"--essential-hook=chroot \"$1\" dpkg-query -W -f='${{Package}}\\n' > {work}/essential.txt",
                 f'--customize-hook=sh {MARK_AUTO_HOOK} "$1" {work}',
                 f'--customize-hook=rm -f "$1"{PREFERENCES}']
        repo = local_repository(base.suite, pins, work / "package-cache")
        if repo:
            return args + [f"--hook-dir={FILE_MIRROR_HOOKS}"], [f"{OFFLINE_SOURCE}{repo} ./"]
    return args, mirrors


def is_offline(mirrors: list[str]) -> bool:
    """Whether mmdebstrap_args chose the package cache's local repository."""
    return mirrors[0].startswith(OFFLINE_SOURCE)


def deb_file_version(version: str) -> str:
    """A version as the package cache's file names write it (apt writes an
    epoch's ':' as %3a)."""
    return version.replace(":", "%3a")


def cached_deb(suite: str, package: str, version: str) -> Path | None:
    """The package cache's .deb of that version."""
    matches = sorted(debs_dir(suite).glob(f"{package}_{deb_file_version(version)}_*.deb"))
    return matches[0] if matches else None


def local_repository(suite: str, pins: dict[str, str], repo: Path) -> Path | None:
    """A flat apt repository of the package cache, made at repo (a run's
    own: parallel builds each make theirs), if the cache has every pinned
    version (else None: the mirror is needed)."""
    debs = debs_dir(suite)
    fields = {}
    for deb in sorted(debs.glob("*.deb")) if debs.is_dir() else []:
        proc = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True)
        if proc.returncode == 0:  # a truncated .deb is skipped, never indexed
            fields[deb] = proc.stdout.rstrip("\n")
    pinned = {deb: f for deb, f in fields.items() if (_field(f, "Package"), _field(f, "Version")) in pins.items()}
    if len({_field(f, "Package") for f in pinned.values()}) < len(pins):
        return None
    repo.mkdir(parents=True)
    entries = []
    for deb, control in pinned.items():  # a locked run installs those alone
        _link_or_copy(deb, repo / deb.name)
        entries.append(f"{control}\nFilename: ./{deb.name}\nSize: {deb.stat().st_size}\n"
                       f"SHA256: {sha256_file(deb)}\n")
    packages = "\n".join(entries).encode()
    (repo / "Packages").write_bytes(packages)
    # mmdebstrap picks the essential packages of the suite named here.
    (repo / "Release").write_text(f"Origin: golden\nLabel: golden package cache\nSuite: {suite}\nCodename: {suite}\n"
                                  f"Architectures: amd64 all\nSHA256:\n {hashlib.sha256(packages).hexdigest()} "
                                  f"{len(packages)} Packages\n")
    return repo


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # another file system (a cache elsewhere than /tmp): a copy
            raise
        shutil.copyfile(src, dest)


def _field(control: str, name: str) -> str:
    return next((line.split(":", 1)[1].strip() for line in control.splitlines() if line.startswith(name + ":")), "")




def requested_changes(path: Path, section: str, requested: list[str]) -> list[str]:
    """How the spec's packages differ from what it asked for when the lock was made."""
    locked = (read_lock(path) or {}).get(section, {})
    was = read_requested(path).get(section, set())
    problems = [f"{p} is in the spec, but not in the lock" for p in sorted(set(requested) - set(locked))]
    return problems + [f"{p} was in the spec when the lock was made, but is no longer"
                       for p in sorted(was - set(requested))]


def check_requested(path: Path, section: str, requested: list[str]) -> None:
    """The spec must ask for what it asked for when the lock was made (a
    locked run would otherwise keep a package the spec dropped)."""
    problems = requested_changes(path, section, requested)
    if problems:
        raise LockError(f"{path.name} [{section}]: " + "; ".join(problems)
                        + ". Run ./inv lock --update to resolve the spec's packages again")


def check_installed(installed: dict[str, str], pins: dict[str, str] | None, where: str) -> None:
    """installed must be exactly the lock (where names lock file and section)."""
    if pins is None:
        return
    problems = [f"{p} {v} is locked, but {installed[p]} was installed "
                f"({v} is in neither the mirror nor the package cache)"
                for p, v in sorted(pins.items()) if p in installed and installed[p] != v]
    problems += [f"{p} {v} is locked, but was not installed" for p, v in sorted(pins.items())
                 if p not in installed]
    problems += [f"{p} {installed[p]} was installed, but the lock does not list it"
                 for p in sorted(set(installed) - set(pins))]
    if problems:
        raise LockError(f"{where}: " + "; ".join(problems[:5])
                        + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
                        + ". Run ./inv lock --update to take the mirror's current versions")
