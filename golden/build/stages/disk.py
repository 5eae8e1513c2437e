"""Stage disk: a GPT disk image made from the rootfs tar without mounting.

Layout: partition 1 is a 1 MiB BIOS boot partition (GRUB's core image goes
there during provisioning), partition 2 the ext4 root filling the rest.
mke2fs writes the root file system straight into the disk image at the
partition's offset (`-E offset`, `-d rootfs.tar`): no loop device, no mount.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path

from golden.vm.runner import BuildLog, capture

SECTOR = 512
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
LINUX_ROOT_X86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
SFDISK_SCRIPT = f"""label: gpt
start=2048, size=2048, type={BIOS_BOOT}, name=bios-boot
start=4096, type={LINUX_ROOT_X86_64}, name=root
"""


def partition_table(raw: Path) -> list[dict]:
    return json.loads(capture(["sfdisk", "--json", raw]))["partitiontable"]["partitions"]


def make_disk(rootfs_tar: Path, size_bytes: int, root_uuid: str, out_qcow2: Path, log: BuildLog) -> None:
    """Writes out_qcow2 (the caller renames it into place)."""
    raw = out_qcow2.with_suffix(".raw")
    raw.unlink(missing_ok=True)
    with raw.open("wb") as f:
        f.truncate(size_bytes)
    try:
        log.run(["sfdisk", "--no-reread", "--no-tell-kernel", raw], input=SFDISK_SCRIPT)
        root = partition_table(raw)[1]
        log.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "root", "-U", root_uuid,
                 "-E", f"offset={root['start'] * SECTOR}", "-d", rootfs_tar,
                 raw, f"{root['size'] * SECTOR // 1024}k"])
        log.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out_qcow2])
    finally:
        raw.unlink(missing_ok=True)


def entries(ctx) -> dict[str, dict]:
    return {"disk": dict(rootfs=ctx.keys["rootfs"]["rootfs"], size=ctx.spec.disk.size_bytes)}


def run(ctx) -> None:
    key = ctx.keys["disk"]["disk"]

    def build(entry: Path) -> None:
        root_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"golden-root:{key}"))
        make_disk(ctx.results["rootfs"] / "rootfs.tar", ctx.spec.disk.size_bytes, root_uuid,
                  entry / "disk.qcow2", ctx.log)
        (entry / "root-uuid").write_text(root_uuid + "\n")  # the entry may be filed under other keys too
    ctx.results["disk"] = ctx.cached("disk", "disk", build)
