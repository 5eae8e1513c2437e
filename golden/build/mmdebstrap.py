"""One mmdebstrap run of the pipeline: the root file system or a container
image. Both install the spec's suite with the same dpkg excludes, record
what they installed (name, version) in a packages file, and keep to the lock
when there is one to keep to (lock.mmdebstrap_args)."""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from golden.build import lock
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
    with tempfile.TemporaryDirectory(prefix="golden-mmdebstrap-") as work:
        package_args, mirrors = lock.mmdebstrap_args(spec.base, pins, Path(work), requested)
        if lock.is_offline(mirrors):
            log.say(f"    {section}: the package cache has every locked version: installing offline")
        log.run(make_command(package_args, mirrors))
    lock.check_installed(read_packages(packages_file), pins, where)


def read_packages(packages_file: Path) -> dict[str, str]:
    lines = Path(packages_file).read_text().splitlines()
    return dict(line.split("\t", 1) for line in lines if line)
