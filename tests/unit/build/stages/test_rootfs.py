"""The rootfs stage preloads the spec's container images: its command runs
the import hook, and its cache key follows the images' entries."""
import dataclasses
import subprocess

from golden.build.pipeline import stage_keys
from golden.build.stages.rootfs import CUSTOMIZE_HOOK, IMPORT_HOOK, mmdebstrap_command
from golden.spec import load_spec

from conftest import REPO

MIRROR = ["deb http://mirror/debian trixie main"]


def _hooks(cmd):
    return [a for a in cmd if a.startswith("--customize-hook=")]


def test_container_images_are_imported_after_the_customize_hook(tmp_path):
    spec = load_spec(REPO / "tests/images/infra-apps.yaml")
    tar = tmp_path / "a dir" / "probe.tar"
    cmd = mmdebstrap_command(spec, tmp_path, tmp_path / "key.pub", [], MIRROR,
                             images={"localhost/golden/probe:latest": tar})
    hooks = _hooks(cmd)
    assert hooks[0] == f'--customize-hook=sh {CUSTOMIZE_HOOK} "$1" {tmp_path / "key.pub"}'
    assert hooks[1] == f"--customize-hook=sh {IMPORT_HOOK} \"$1\" localhost/golden/probe:latest '{tar}'"
    without = mmdebstrap_command(spec, tmp_path, tmp_path / "key.pub", [], MIRROR)
    assert not any(str(IMPORT_HOOK) in h for h in _hooks(without))
    assert subprocess.run(["sh", "-n", str(IMPORT_HOOK)]).returncode == 0


def test_the_rootfs_key_follows_the_container_images():
    spec = load_spec(REPO / "tests/images/infra-apps.yaml")
    keys = stage_keys(spec)
    image = spec.container_images[0]
    more = dataclasses.replace(image, packages=[*image.packages, "jq"])
    changed = stage_keys(dataclasses.replace(spec, container_images=[more, *spec.container_images[1:]]))
    assert changed["container"][image.name] != keys["container"][image.name]
    assert changed["rootfs"] != keys["rootfs"] and changed["disk"] != keys["disk"]
