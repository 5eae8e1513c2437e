"""Stage rootfs: mmdebstrap of the spec's suite with every package installed.

Installing here runs at native speed; the VM boot later only configures and
seals. Cache entry: rootfs.tar, packages.tsv (name, version), and the kernel
and initrd of the first (direct kernel) boot.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from golden.build import mmdebstrap
from golden.build.cache import hash_files
from golden.paths import PROVISION_DIR
from golden.spec import ImageSpec
from golden.vm.runner import BuildLog

CUSTOMIZE_HOOK = PROVISION_DIR / "rootfs" / "customize.sh"
# The spec's container images, imported by the image's own Podman in the chroot.
IMPORT_HOOK = PROVISION_DIR / "rootfs" / "import-images.sh"
# initramfs-tools settings, in place before the kernel's package makes its initramfs.
INITRAMFS_CONFIG = PROVISION_DIR / "rootfs" / "initramfs-tools"
FILES = ["provision/rootfs/customize.sh", "provision/rootfs/import-images.sh", "provision/rootfs/initramfs-tools"]  # read by the code (pipeline.code_digest)
SECTION = "rootfs"  # of the lock
# The base every image needs to boot, log in and be provisioned.
# GRUB for both firmwares: grub-efi-amd64 with Debian's signed GRUB and shim
# (UEFI, Secure Boot), grub-pc-bin for the BIOS core image (grub-pc itself
# conflicts with grub-efi-amd64). cloud-guest-utils: growpart
# (golden-growroot); systemd-timesyncd: the clock; zstd: the initramfs is
# compressed as initramfs.conf says (without it, gzip: slower to unpack).
BASE_PACKAGES = ["systemd-sysv", "udev", "dbus", "e2fsprogs", "dosfstools", "openssh-server", "sudo",
                 "grub-efi-amd64", "grub-efi-amd64-signed", "shim-signed", "grub-pc-bin", "iproute2", "cloud-init",
                 "cloud-guest-utils", "systemd-timesyncd", "nftables", "zstd"]
# spec `kernel`: both signed by Debian. generic has every hypervisor's
# devices (e1000/e1000e, AHCI, LSI SCSI, ...); cloud only virtio, Hyper-V,
# VMware's vmxnet3/pvscsi, NVMe and AHCI, for a third of the size.
KERNEL_PACKAGES = {"generic": "linux-image-amd64", "cloud": "linux-image-cloud-amd64"}
# Kernel modules for hardware a server VM does not use (wireless, Bluetooth,
# sound, cameras and TV cards, sensors, the GPUs of real machines) and
# Podman's own test binary: 41 MB of the generic kernel's 94 MB of modules
# and 36 MB of Podman, 53 MB of the box. A few kept modules that need them
# (laptop and USB-gadget drivers) cannot load; no VM has their hardware. The settings stay in the image's
# /etc/dpkg/dpkg.cfg.d, so kernel updates on a host leave them out too.
UNNEEDED_KERNEL_DIRS = ["drivers/net/wireless", "net/wireless", "net/mac80211", "drivers/bluetooth",
                        "net/bluetooth", "drivers/media", "sound", "drivers/iio", "drivers/staging",
                        "drivers/comedi", "drivers/nfc", "net/nfc", "drivers/isdn", "drivers/net/wwan",
                        "drivers/net/can", "net/can", "drivers/gpu/drm/amd", "drivers/gpu/drm/nouveau",
                        "drivers/gpu/drm/i915", "drivers/gpu/drm/xe", "drivers/gpu/drm/radeon",
                        "drivers/gpu/drm/gma500"]
DPKG_OPTIONS = mmdebstrap.DPKG_OPTIONS + [f"path-exclude=/usr/lib/modules/*/kernel/{d}/*"
                                          for d in UNNEEDED_KERNEL_DIRS] + [
    "path-exclude=/usr/libexec/podman/podman-testing"]


def all_packages(spec: ImageSpec) -> list[str]:
    return sorted(set(BASE_PACKAGES) | {KERNEL_PACKAGES[spec.kernel]} | set(spec.packages))


def mmdebstrap_command(spec: ImageSpec, out_dir: Path, login_pubkey: Path, package_args: list[str],
                       mirrors: list[str], dpkg_options: list[str] = DPKG_OPTIONS,
                       images: dict[str, Path] | None = None) -> list[str]:
    """images: {reference: tarball} of the container images to preload."""
    imports = [f'--customize-hook=sh {IMPORT_HOOK} "$1" ' +
               " ".join(shlex.quote(str(a)) for ref, tar in images.items() for a in (ref, tar))] if images else []
    return mmdebstrap.command(
        spec, variant=spec.base.variant, packages=all_packages(spec), target=out_dir / "rootfs.tar",
        packages_file=out_dir / "packages.tsv", package_args=package_args, mirrors=mirrors,
        dpkg_options=dpkg_options,
        hooks=[f'--setup-hook=mkdir -p "$1/etc/initramfs-tools" && '
               f'cp -R --no-preserve=ownership {INITRAMFS_CONFIG}/. "$1/etc/initramfs-tools/"',
               f'--customize-hook=sh {CUSTOMIZE_HOOK} "$1" {login_pubkey}', *imports,
               f'--customize-hook=cp -L "$1/vmlinuz" {out_dir}/vmlinuz',
               f'--customize-hook=cp -L "$1/initrd.img" {out_dir}/initrd.img'])


def build_rootfs(spec: ImageSpec, out_dir: Path, login_pubkey: Path, log: BuildLog,
                 pins: dict[str, str] | None = None, images: dict[str, Path] | None = None) -> None:
    """pins: the lock's versions (None: the archives' current ones); images:
    {reference: tarball} of the container images to preload."""
    out_dir.mkdir(parents=True, exist_ok=True)
    mmdebstrap.run(spec, SECTION, all_packages(spec), pins, log,
                   lambda args, mirrors: mmdebstrap_command(spec, out_dir, login_pubkey, args, mirrors,
                                                            images=images),
                   out_dir / "packages.tsv")


def read_packages(out_dir: Path) -> dict[str, str]:
    return mmdebstrap.read_packages(out_dir / "packages.tsv")


def entries(ctx) -> dict[str, dict]:
    """The cache entry this stage uses, and everything it reads (the
    container images it preloads: their entries' keys)."""
    inputs = dict(base=ctx.spec.base, packages=all_packages(ctx.spec), tool=mmdebstrap.version(),
                  pins=ctx.pins(SECTION), archive=ctx.archive_digest(), login_key=hash_files([ctx.login_key[1]]))
    if ctx.spec.container_images:
        inputs["container_images"] = sorted(ctx.keys["containers"].items())
    return {SECTION: inputs}


def run(ctx) -> None:
    images = {c["ref"]: c["tar"] for c in ctx.results.get("containers", {}).values()}
    entry = ctx.cached("rootfs", SECTION, lambda d: build_rootfs(ctx.spec, d, ctx.login_key[1], ctx.log,
                                                                  ctx.pins(SECTION), images))
    ctx.require_current(read_packages(entry), SECTION)
    ctx.results["rootfs"] = entry
