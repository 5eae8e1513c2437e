"""Stage containers: OCI images built from Debian packages at build time.

Each image of the spec's `container_images` is an mmdebstrap tarball (a
cache entry like the rootfs). The rootfs stage, which comes after, imports
each into the image's store of preloaded images (`podman import` by the
image's own Podman, at native speed), so hosts made from the image never
need a registry.
"""
from __future__ import annotations

from pathlib import Path

import shlex

from golden.build import mmdebstrap
from golden.build.cache import hash_files
from golden.paths import REPO
from golden.spec import ContainerImage, ImageSpec
from golden.vm.runner import BuildLog


def image_ref(image: ContainerImage) -> str:
    return f"localhost/golden/{image.name}:latest"


def lock_section(image: ContainerImage) -> str:
    return f"container {image.name}"


def _packages_file(out_tar: Path, image: ContainerImage) -> Path:
    return out_tar.with_name(f"{image.name}.packages.tsv")


def mmdebstrap_command(spec: ImageSpec, image: ContainerImage, out_tar: Path,
                       package_args: list[str], mirrors: list[str]) -> list[str]:
    return mmdebstrap.command(
        spec, variant="minbase", packages=image.packages, target=out_tar,
        packages_file=_packages_file(out_tar, image), package_args=package_args, mirrors=mirrors,
        # The image's own programs (the spec's `programs`) go to /usr/local/bin.
        hooks=[f'--customize-hook=install -m 0755 {shlex.quote(str(REPO / p))} "$1/usr/local/bin/"'
               for p in image.programs] + ['--customize-hook=rm -rf "$1/var/lib/apt/lists" "$1/var/cache/apt"'])


def programs_digest(image: ContainerImage) -> str:
    return hash_files([REPO / p for p in image.programs])


def build_container_image(spec: ImageSpec, image: ContainerImage, out_dir: Path, log: BuildLog,
                          pins: dict[str, str] | None = None) -> None:
    tar = out_dir / f"{image.name}.tar"
    mmdebstrap.run(spec, lock_section(image), image.packages, pins, log,
                   lambda args, mirrors: mmdebstrap_command(spec, image, tar, args, mirrors),
                   _packages_file(tar, image))


def read_packages(out_dir: Path, image: ContainerImage) -> dict[str, str]:
    return mmdebstrap.read_packages(_packages_file(out_dir / f"{image.name}.tar", image))


def entries(ctx) -> dict[str, dict]:
    """One cache entry per container image, and everything each reads."""
    return {image.name: dict(base=ctx.spec.base, image=image, programs=programs_digest(image),
                             tool=mmdebstrap.version(), pins=ctx.pins(lock_section(image)), archive=ctx.archive_digest())
            for image in ctx.spec.container_images}


def run(ctx) -> None:
    built = {}
    for image in ctx.spec.container_images:
        section = lock_section(image)
        entry = ctx.cached("containers", image.name, lambda d, image=image: build_container_image(
            ctx.spec, image, d, ctx.log, ctx.pins(lock_section(image))))
        packages = read_packages(entry, image)
        ctx.require_current(packages, f"container image {image.name}")
        built[image.name] = {"tar": entry / f"{image.name}.tar", "ref": image_ref(image), "section": section,
                             "packages": packages}
    ctx.results["containers"] = built
