"""The Debian archives an image is built from, and what they serve now.

A spec builds from its suite, `<suite>-updates` and `<suite>-security` (the
security archive is its own repository beside the main one). Each archive's
InRelease is downloaded and verified with the host's Debian keyring (gpgv);
a Packages index is downloaded (by hash) only when its hash is new, and is
kept parsed in the cache under that hash, so checking archives that did not
move costs a few small downloads.
"""
from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from golden.build.cache import cache_dir
from golden.errors import GoldenError

SNAPSHOT_ARCHIVE = "https://snapshot.debian.org/archive"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"  # the host's (Debian 12 has trixie's keys)
IMAGE_KEYRING = "/usr/share/keyrings/debian-archive-keyring.pgp"  # trixie's debian-archive-keyring
ARCH = "amd64"
TIMEOUT = 20  # seconds per request


class ArchiveError(GoldenError):
    pass


class ArchiveUnreachable(ArchiveError):
    pass


@dataclass(frozen=True)
class Pocket:
    """One archive suite: the release, its -updates or its -security."""
    uri: str
    suite: str
    security: bool = False
    snapshot: bool = False

    def sources_line(self, components: list[str]) -> str:
        # A snapshot's Release files are past their Valid-Until.
        options = " [check-valid-until=no]" if self.snapshot else ""
        return f"deb{options} {self.uri} {self.suite} {' '.join(components)}"


def pockets(base) -> list[Pocket]:
    """The archives a spec's base builds from, release first."""
    snapshot = bool(base.snapshot)
    main = f"{SNAPSHOT_ARCHIVE}/debian/{base.snapshot}" if snapshot else base.mirror.rstrip("/")
    security = f"{SNAPSHOT_ARCHIVE}/debian-security/{base.snapshot}" if snapshot else base.security_mirror.rstrip("/")
    found = [Pocket(main, base.suite, snapshot=snapshot)]
    if base.updates:
        found.append(Pocket(main, f"{base.suite}-updates", snapshot=snapshot))
    if base.security:
        found.append(Pocket(security, f"{base.suite}-security", security=True, snapshot=snapshot))
    return found


def image_sources(base) -> str:
    """/etc/apt/sources.list.d/debian.sources of the image (deb822): the
    same archives and components as the build, from base.mirror and
    base.security_mirror (a snapshot is for building only: hosts get updates)."""
    components = " ".join(base.components)
    suites = " ".join([base.suite] + ([f"{base.suite}-updates"] if base.updates else []))
    text = (f"Types: deb\nURIs: {base.mirror.rstrip('/')}\nSuites: {suites}\nComponents: {components}\n"
            f"Signed-By: {IMAGE_KEYRING}\n")
    if base.security:
        text += (f"\nTypes: deb\nURIs: {base.security_mirror.rstrip('/')}\nSuites: {base.suite}-security\n"
                 f"Components: {components}\nSigned-By: {IMAGE_KEYRING}\n")
    return text


# Debian version comparison (deb-version(7)), as dpkg --compare-versions.
def _order(char: str) -> int:
    if char == "~":
        return -1
    if char.isdigit():
        return 0
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    while a or b:
        a_text, a = re.match(r"([^0-9]*)(.*)", a).groups()
        b_text, b = re.match(r"([^0-9]*)(.*)", b).groups()
        for i in range(max(len(a_text), len(b_text))):
            ca = _order(a_text[i]) if i < len(a_text) else 0
            cb = _order(b_text[i]) if i < len(b_text) else 0
            if ca != cb:
                return -1 if ca < cb else 1
        a_num, a = re.match(r"([0-9]*)(.*)", a).groups()
        b_num, b = re.match(r"([0-9]*)(.*)", b).groups()
        if int(a_num or 0) != int(b_num or 0):
            return -1 if int(a_num or 0) < int(b_num or 0) else 1
    return 0


def _split(version: str) -> tuple[int, str, str]:
    epoch, _, rest = version.rpartition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch or 0), upstream, revision


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as Debian orders versions a and b."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


@dataclass(frozen=True)
class Available:
    """A package version an archive serves."""
    version: str
    source: str
    filename: str
    sha256: str
    pocket: Pocket


class ArchiveState:
    """What the archives serve now: per pocket, {package: [version, source, filename, sha256]}."""

    def __init__(self, pockets: list[Pocket], indexes: list[dict], digest: str):
        self.pockets = pockets
        self.indexes = indexes
        self.digest = digest  # changes whenever any Packages index does

    def available(self, package: str) -> list[Available]:
        return [Available(*index[package], pocket) for pocket, index in zip(self.pockets, self.indexes)
                if package in index]

    def candidate(self, package: str) -> Available | None:
        """The version apt installs: the highest any pocket serves."""
        best = None
        for item in self.available(package):
            if best is None or compare_versions(item.version, best.version) > 0:
                best = item
        return best

    def serves(self, package: str, version: str) -> bool:
        return any(item.version == version for item in self.available(package))


def download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise ArchiveError(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ArchiveUnreachable(f"{url}: {reason}") from None


def _verified_release(pocket: Pocket) -> str:
    url = f"{pocket.uri}/dists/{pocket.suite}/InRelease"
    signed = download(url)
    proc = subprocess.run(["gpgv", "--keyring", KEYRING, "--output", "-", "-"], input=signed,
                          capture_output=True)
    if proc.returncode != 0:
        raise ArchiveError(f"{url}: signature not valid with {KEYRING}: "
                           f"{proc.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
    return proc.stdout.decode()


def _index_files(release: str, components: list[str]) -> list[tuple[str, str]]:
    """(path, sha256) of each Packages.xz to read, from a Release's SHA256 list."""
    sums = {}
    in_sha256 = False
    for line in release.splitlines():
        if not line.startswith(" "):
            in_sha256 = line.startswith("SHA256:")
            continue
        if in_sha256:
            digest, _, path = line.split()
            sums[path] = digest
    # As apt: binary-all is read only where the Release lists architecture "all"
    # without saying that the per-architecture indexes list those packages too.
    listed = re.search(r"^Architectures: (.*)$", release, re.M)
    separate_all = ("all" in (listed.group(1).split() if listed else [])
                    and "No-Support-for-Architecture-all: Packages" not in release)
    arches = [ARCH] + (["all"] if separate_all else [])
    wanted = []
    for component in components:
        for arch in arches:
            path = f"{component}/binary-{arch}/Packages.xz"
            if path in sums:
                wanted.append((path, sums[path]))
            elif arch == ARCH:
                raise ArchiveError(f"the archive's Release lists no {path}")
    return wanted


_FIELDS = re.compile(r"^(Package|Version|Source|Filename|SHA256): (.*)$", re.M)


def parse_packages(text: str) -> dict[str, list[str]]:
    """{package: [version, source package, filename, sha256]}, the highest version of each."""
    found: dict[str, list[str]] = {}
    for paragraph in text.split("\n\n"):
        fields = dict(_FIELDS.findall(paragraph))
        name = fields.get("Package")
        if not name:
            continue
        source = fields.get("Source", name).split(" ")[0]
        entry = [fields["Version"], source, fields.get("Filename", ""), fields.get("SHA256", "")]
        if name not in found or compare_versions(entry[0], found[name][0]) > 0:
            found[name] = entry
    return found


def _index(pocket: Pocket, path: str, digest: str) -> dict[str, list[str]]:
    cached = cache_dir() / "archive" / f"{digest}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    directory = path.rsplit("/", 1)[0]
    url = f"{pocket.uri}/dists/{pocket.suite}/{directory}/by-hash/SHA256/{digest}"
    try:
        data = download(url)
    except ArchiveError:  # a mirror without by-hash
        url = f"{pocket.uri}/dists/{pocket.suite}/{path}"
        data = download(url)
    if hashlib.sha256(data).hexdigest() != digest:
        raise ArchiveError(f"{url}: checksum differs from the signed Release")
    index = parse_packages(lzma.decompress(data).decode())
    cached.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=f".{digest}.tmp-")  # parallel builds may race here
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(index))
    os.replace(tmp, cached)
    return index


def fetch_state(base) -> ArchiveState:
    """What base's archives serve now (raises ArchiveUnreachable when a
    mirror cannot be reached, ArchiveError when it answers wrongly)."""
    found = pockets(base)
    indexes, digests = [], []
    for pocket in found:
        merged: dict[str, list[str]] = {}
        for path, digest in _index_files(_verified_release(pocket), base.components):
            for name, entry in _index(pocket, path, digest).items():
                if name not in merged or compare_versions(entry[0], merged[name][0]) > 0:
                    merged[name] = entry
            digests.append(digest)
        indexes.append(merged)
    return ArchiveState(found, indexes, hashlib.sha256(" ".join(digests).encode()).hexdigest()[:20])
