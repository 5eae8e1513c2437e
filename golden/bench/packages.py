"""Where the box's bytes come from, package by package: each installed
package's files from the rootfs tar, zstd-compressed on their own with the
box's settings. What no package owns (generated files such as udev's hwdb)
is one more row. The floor of the box size is the sum of what the products
need."""
from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from golden.build.stages.package import BOX_ZSTD_LEVEL

UNOWNED = "(no package: generated files, configuration made at build time)"
MERGED_USR = ("/bin/", "/sbin/", "/lib/", "/lib64/")


def _path(member: tarfile.TarInfo) -> str:
    """The member's absolute path in the image (tar names are ./usr/... or usr/...)."""
    return "/" + member.name.removeprefix("./").lstrip("/")


def _owners(tar: tarfile.TarFile) -> dict[str, str]:
    """Path in the image -> the package whose dpkg file list names it."""
    owners = {}
    for member in tar.getmembers():
        name = _path(member)
        if member.isfile() and name.startswith("/var/lib/dpkg/info/") and name.endswith(".list"):
            package = Path(name).stem.split(":")[0]
            for path in tar.extractfile(member).read().decode(errors="replace").splitlines():
                if path.startswith(MERGED_USR):
                    path = "/usr" + path  # trixie's /bin, /lib are symlinks into /usr
                owners[path] = package
    return owners


def _compressed_size(path: Path, level: int) -> int:
    with path.open("rb") as data:
        out = subprocess.run(["zstd", "-q", f"-{level}", "--long=27", "-c"], stdin=data, capture_output=True,
                             check=True).stdout
    return len(out)


def package_sizes(rootfs_tar: Path, level: int = BOX_ZSTD_LEVEL, workers: int = 2) -> list[dict]:
    """[{package, installed_bytes, compressed_bytes}], largest compressed
    first. Each package's files are gathered in one temporary file, then
    compressed."""
    with tempfile.TemporaryDirectory(prefix="golden-by-package-") as work:
        gathered: dict[str, Path] = {}
        with tarfile.open(rootfs_tar) as tar:
            owners = _owners(tar)
            for member in tar.getmembers():
                if member.isfile():
                    owner = owners.get(_path(member), UNOWNED)
                    path = gathered.setdefault(owner, Path(work) / f"{len(gathered)}.bin")
                    with path.open("ab") as out:
                        shutil.copyfileobj(tar.extractfile(member), out)
        with ThreadPoolExecutor(workers) as pool:
            compressed = dict(zip(gathered, pool.map(lambda p: _compressed_size(p, level), gathered.values())))
        rows = [{"package": name, "installed_bytes": path.stat().st_size, "compressed_bytes": compressed[name]}
                for name, path in gathered.items()]
    return sorted(rows, key=lambda row: row["compressed_bytes"], reverse=True)
