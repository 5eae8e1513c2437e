"""Stage containers: OCI images built from Debian packages at build time.

Each image of the spec's `container_images` is an mmdebstrap tarball (cached
like the rootfs), imported with `podman import` during provisioning, so hosts
made from the image never need a registry.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from golden import lock
from golden.paths import PROVISION_DIR
from golden.rootfs import DPKG_OPTIONS
from golden.runner import BuildLog
from golden.spec import ContainerImage, ImageSpec

CONTAINER_FILES = PROVISION_DIR / "containers"


def image_ref(image: ContainerImage) -> str:
    return f"localhost/golden/{image.name}:latest"


def mmdebstrap_command(spec: ImageSpec, image: ContainerImage, out_tar: Path,
                       package_args: list[str], mirrors: list[str]) -> list[str]:
    cmd = ["mmdebstrap", "--variant=minbase", f"--components={','.join(spec.base.components)}"]
    if image.packages:
        cmd.append(f"--include={','.join(sorted(image.packages))}")
    cmd += [f"--dpkgopt={opt}" for opt in DPKG_OPTIONS]
    cmd += list(package_args)
    packages_tsv = out_tar.with_name(f"{image.name}.packages.tsv")
    cmd.append(f"--customize-hook=chroot \"$1\" dpkg-query -W -f='${{Package}}\\t${{Version}}\\n' > {packages_tsv}")
    # The image's own programs (e.g. golden-probe) go to /usr/local/bin.
    cmd.append(f'--customize-hook=cp {CONTAINER_FILES}/golden-* "$1/usr/local/bin/"')
    cmd.append('--customize-hook=rm -rf "$1/var/lib/apt/lists" "$1/var/cache/apt"')
    cmd += [spec.base.suite, str(out_tar), *mirrors]
    return cmd


def lock_section(image: ContainerImage) -> str:
    return f"container {image.name}"


def build_container_image(spec: ImageSpec, image: ContainerImage, out_dir: Path, log: BuildLog,
                          pins: dict[str, str] | None = None) -> None:
    if pins is not None:
        lock.check_requested(lock.lock_path(spec), lock_section(image), image.packages)
    with tempfile.TemporaryDirectory(prefix="golden-container-") as work:
        args, mirrors = lock.mmdebstrap_args(spec.base, pins, Path(work), image.packages)
        if mirrors[0].startswith("deb [trusted=yes] file:"):
            log.say("    container: the package cache has every locked version: installing offline")
        log.run(mmdebstrap_command(spec, image, out_dir / f"{image.name}.tar", args, mirrors))
    lock.check_installed(read_packages(out_dir, image), pins, f"{lock.lock_path(spec).name} [{lock_section(image)}]")


def read_packages(out_dir: Path, image: ContainerImage) -> dict[str, str]:
    lines = (out_dir / f"{image.name}.packages.tsv").read_text().splitlines()
    return dict(line.split("\t", 1) for line in lines if line)
