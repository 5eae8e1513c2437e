"""Where the box's bytes come from, package by package: each installed
package's files from the rootfs tar, zstd-compressed on their own at the
box's level. What no package owns (generated files such as udev's hwdb) is
one more row. The floor of the box size is the sum of what the products
need."""
from __future__ import annotations

import shutil
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from golden.build.stages.package import BOX_ZSTD_LEVEL

UNOWNED = "(no package: generated files, configuration made at build time)"
MERGED_USR = ("/bin/", "/sbin/", "/lib/", "/lib64/")


def _owners(tar: tarfile.TarFile) -> dict[str, str]:
    """Path (as in the tar, without its leading '.') -> the package whose
    dpkg file list names it."""
    owners = {}
    for member in tar.getmembers():
        name = member.name.removeprefix(".")
        if member.isfile() and name.startswith("/var/lib/dpkg/info/") and name.endswith(".list"):
            package = Path(name).stem.split(":")[0]
            for path in tar.extractfile(member).read().decode(errors="replace").splitlines():
                if path.startswith(MERGED_USR):
                    path = "/usr" + path  # trixie's /bin, /lib are symlinks into /usr
                owners[path] = package
    return owners


def _compressed_size(path: Path, level: int) -> int:
    with path.open("rb") as data:
        out = subprocess.run(["zstd", "-q", f"-{level}", "-c"], stdin=data, capture_output=True, check=True).stdout
    return len(out)


def package_sizes(rootfs_tar: Path, work: Path, level: int = BOX_ZSTD_LEVEL, workers: int = 2) -> list[dict]:
    """[{package, installed_mb, compressed_mb}], largest compressed first.
    Each package's files are gathered in one file under work, then compressed."""
    work.mkdir(parents=True, exist_ok=True)
    gathered: dict[str, Path] = {}
    with tarfile.open(rootfs_tar) as tar:
        owners = _owners(tar)
        for member in tar.getmembers():
            if member.isfile():
                owner = owners.get(member.name.removeprefix("."), UNOWNED)
                path = gathered.setdefault(owner, work / f"{len(gathered)}.bin")
                with path.open("ab") as out:
                    shutil.copyfileobj(tar.extractfile(member), out)
    with ThreadPoolExecutor(workers) as pool:
        compressed = dict(zip(gathered, pool.map(lambda path: _compressed_size(path, level), gathered.values())))
    rows = [{"package": name, "installed_mb": round(path.stat().st_size / 1e6, 1),
             "compressed_mb": round(compressed[name] / 1e6, 1)} for name, path in gathered.items()]
    shutil.rmtree(work)
    return sorted(rows, key=lambda row: row["compressed_mb"], reverse=True)
