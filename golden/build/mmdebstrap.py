"""One mmdebstrap run of the pipeline: the root file system or a container
image. Both install the spec's suite with the same dpkg excludes, record
what they installed (name, version) in a packages file, and keep to the lock
when there is one to keep to (lock.mmdebstrap_args)."""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from golden.build import lock
from golden.errors import GoldenError
from golden.spec import ImageSpec
from golden.vm.runner import BuildLog, capture

# Documentation, man pages and foreign locales are not installed at all.
DPKG_OPTIONS = [
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
]


@functools.cache
def version() -> str:
    return capture(["mmdebstrap", "--version"]).strip()


def command(spec: ImageSpec, *, variant: str, packages: list[str], target: Path, packages_file: Path,
            hooks: list[str], package_args: list[str], mirrors: list[str],
            dpkg_options: list[str] = DPKG_OPTIONS) -> list[str]:
    cmd = ["mmdebstrap", f"--variant={variant}", f"--components={','.join(spec.base.components)}"]
    if packages:
        cmd.append(f"--include={','.join(sorted(packages))}")
    cmd += [f"--dpkgopt={opt}" for opt in dpkg_options]
    cmd += list(package_args) + list(hooks)
    cmd.append(f"--customize-hook=chroot \"$1\" dpkg-query -W -f='${{Package}}\\t${{Version}}\\n' > {packages_file}")
    return cmd + [spec.base.suite, str(target), *mirrors]


def run(spec: ImageSpec, section: str, requested: list[str], pins: dict[str, str] | None, log: BuildLog,
        make_command, packages_file: Path) -> None:
    """make_command(package_args, mirrors) -> the mmdebstrap command line, which
    writes packages_file. pins: the lock's versions of this section (None:
    the archives' current ones)."""
    where = f"{lock.lock_path(spec).name} [{section}]"
    if pins is not None:
        lock.check_requested(lock.lock_path(spec), section, requested)
    work = Path(tempfile.mkdtemp(prefix="golden-mmdebstrap-"))
    try:
        package_args, mirrors = lock.mmdebstrap_args(spec.base, pins, work, requested)
        if lock.is_offline(mirrors):
            log.say(f"    {section}: the package cache has every locked version: installing offline")
        # mmdebstrap's chroot (its TMPDIR) goes under work, so whatever it leaves mounted is found there.
        log.run(make_command(package_args, mirrors), env=dict(os.environ, TMPDIR=str(work)))
    finally:
        remove_unmounting(work)
    lock.check_installed(read_packages(packages_file), pins, where)


def read_packages(packages_file: Path) -> dict[str, str]:
    lines = Path(packages_file).read_text().splitlines()
    return dict(line.split("\t", 1) for line in lines if line)


def mounts_under(directory: Path) -> list[Path]:
    """Mount points below directory, deepest first (from /proc/self/mountinfo)."""
    top = os.path.realpath(directory)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if point.startswith(top + "/"):
            points.append(Path(point))
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def remove_unmounting(directory: Path) -> None:
    """Removes an mmdebstrap work directory, unmounting first what its chroot
    left mounted: mmdebstrap 1.3.5 interrupted inside its setup_mounts exits
    without unmounting (its cleanup list is filled only once every mount is
    made), leaving the host's /dev/shm bound into the chroot, which a plain
    recursive delete would empty."""
    for point in mounts_under(directory):
        subprocess.run(["umount", "--lazy", str(point)], capture_output=True)
    if left := mounts_under(directory):
        raise GoldenError(f"{directory}: could not unmount {', '.join(map(str, left))}; left in place")
    shutil.rmtree(directory, ignore_errors=True)
