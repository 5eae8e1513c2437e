"""Stage rootfs: mmdebstrap of the spec's suite with every package installed.

Installing here runs at native speed; the VM boot later only configures and
seals. Output directory: rootfs.tar, packages.tsv (name, version), and the
kernel and initrd used for the first (direct kernel) boot.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from golden import lock
from golden.paths import PROVISION_DIR
from golden.runner import BuildLog
from golden.spec import ImageSpec

CUSTOMIZE_HOOK = PROVISION_DIR / "rootfs" / "customize.sh"
# The base every image needs to boot, log in and be provisioned. The cloud
# kernel has the drivers of virtual machines only (virtio, the clouds' NICs
# and disks): a third of the generic kernel's modules, and a smaller initrd.
BASE_PACKAGES = ["linux-image-cloud-amd64", "systemd-sysv", "udev", "dbus", "e2fsprogs", "openssh-server",
                 "sudo", "grub-pc", "iproute2", "cloud-init"]
# Documentation, man pages and foreign locales are not installed at all.
DPKG_OPTIONS = [
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
]


def all_packages(spec: ImageSpec) -> list[str]:
    return sorted(set(BASE_PACKAGES) | set(spec.packages))


def mmdebstrap_command(spec: ImageSpec, out_dir: Path, login_pubkey: Path,
                       package_args: list[str], mirrors: list[str],
                       dpkg_options: list[str] = DPKG_OPTIONS) -> list[str]:
    cmd = ["mmdebstrap", f"--variant={spec.base.variant}",
           f"--components={','.join(spec.base.components)}",
           f"--include={','.join(all_packages(spec))}"]
    cmd += [f"--dpkgopt={opt}" for opt in dpkg_options]
    cmd += list(package_args)
    cmd += [
        f'--customize-hook=sh {CUSTOMIZE_HOOK} "$1" {login_pubkey}',
        f"--customize-hook=chroot \"$1\" dpkg-query -W -f='${{Package}}\\t${{Version}}\\n' > {out_dir}/packages.tsv",
        f'--customize-hook=cp -L "$1/vmlinuz" {out_dir}/vmlinuz',
        f'--customize-hook=cp -L "$1/initrd.img" {out_dir}/initrd.img',
        spec.base.suite, str(out_dir / "rootfs.tar"), *mirrors,
    ]
    return cmd


def build_rootfs(spec: ImageSpec, out_dir: Path, login_pubkey: Path, log: BuildLog,
                 pins: dict[str, str] | None = None) -> None:
    """pins: the lock's versions (None: the mirror's current ones)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if pins is not None:
        lock.check_requested(lock.lock_path(spec), "rootfs", all_packages(spec))
    with tempfile.TemporaryDirectory(prefix="golden-rootfs-") as work:
        args, mirrors = lock.mmdebstrap_args(spec.base, pins, Path(work), all_packages(spec))
        if mirrors[0].startswith("deb [trusted=yes] file:"):
            log.say("    rootfs: the package cache has every locked version: installing offline")
        log.run(mmdebstrap_command(spec, out_dir, login_pubkey, args, mirrors))
    lock.check_installed(read_packages(out_dir), pins, f"{lock.lock_path(spec).name} [rootfs]")


def read_packages(out_dir: Path) -> dict[str, str]:
    lines = (out_dir / "packages.tsv").read_text().splitlines()
    return dict(line.split("\t", 1) for line in lines if line)
