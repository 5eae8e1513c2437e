"""Stage containers: OCI images built from Debian packages at build time.

Each image of the spec's `container_images` is an mmdebstrap tarball (cached
like the rootfs), imported with `podman import` during provisioning, so hosts
made from the image never need a registry.
"""
from __future__ import annotations

from pathlib import Path

from golden.paths import PROVISION_DIR
from golden.rootfs import DPKG_OPTIONS
from golden.runner import BuildLog
from golden.spec import ContainerImage, ImageSpec

CONTAINER_FILES = PROVISION_DIR / "containers"


def image_ref(image: ContainerImage) -> str:
    return f"localhost/golden/{image.name}:latest"


def mmdebstrap_command(spec: ImageSpec, image: ContainerImage, out_tar: Path) -> list[str]:
    cmd = ["mmdebstrap", "--variant=minbase", f"--components={','.join(spec.base.components)}"]
    if image.packages:
        cmd.append(f"--include={','.join(sorted(image.packages))}")
    cmd += [f"--dpkgopt={opt}" for opt in DPKG_OPTIONS]
    # The image's own programs (e.g. golden-probe) go to /usr/local/bin.
    cmd.append(f'--customize-hook=cp {CONTAINER_FILES}/golden-* "$1/usr/local/bin/"')
    cmd.append('--customize-hook=rm -rf "$1/var/lib/apt/lists" "$1/var/cache/apt"')
    cmd += [spec.base.suite, str(out_tar), spec.base.mirror]
    return cmd


def build_container_image(spec: ImageSpec, image: ContainerImage, out_dir: Path, log: BuildLog) -> None:
    log.run(mmdebstrap_command(spec, image, out_dir / f"{image.name}.tar"))
