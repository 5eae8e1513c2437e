"""Stage disk: a GPT disk image made from the rootfs tar without mounting,
bootable by BIOS and by UEFI (with Secure Boot), as Debian's cloud images are.

Layout: partition 1 is a 1 MiB BIOS boot partition (GRUB's i386-pc core
image), partition 2 a 127 MiB EFI system partition (FAT32: shim, the signed
GRUB), partition 3 the ext4 root filling the rest (last, so it can grow).
mkfs.fat and mke2fs write each file system straight into the disk image at
its partition's offset (`--offset`, `-E offset`, `-d rootfs.tar`): no loop
device, no mount. GRUB goes into both during provisioning (10-bootloader.sh).
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path

from golden.vm.runner import BuildLog, capture

SECTOR = 512
BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
EFI_SYSTEM = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
LINUX_ROOT_X86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
ESP_SECTORS = 127 << 11  # 127 MiB, as Debian's cloud images
SFDISK_SCRIPT = f"""label: gpt
start=2048, size=2048, type={BIOS_BOOT}, name=bios-boot
start=4096, size={ESP_SECTORS}, type={EFI_SYSTEM}, name=esp
start={4096 + ESP_SECTORS}, type={LINUX_ROOT_X86_64}, name=root
"""


def partition_table(raw: Path) -> list[dict]:
    return json.loads(capture(["sfdisk", "--json", raw]))["partitiontable"]["partitions"]


def partition(raw: Path, name: str) -> dict:
    """The partition named name (bios-boot, esp, root) of a golden disk."""
    return next(p for p in partition_table(raw) if p.get("name") == name)


def esp_volume_id(root_uuid: str) -> str:
    """The ESP's FAT volume ID (fstab: UUID=XXXX-XXXX), derived from the root's UUID."""
    return root_uuid.replace("-", "")[:8].upper()


def make_disk(rootfs_tar: Path, size_bytes: int, root_uuid: str, out_qcow2: Path, log: BuildLog) -> None:
    """Writes out_qcow2 (the caller renames it into place)."""
    raw = out_qcow2.with_suffix(".raw")
    raw.unlink(missing_ok=True)
    with raw.open("wb") as f:
        f.truncate(size_bytes)
    try:
        log.run(["sfdisk", "--no-reread", "--no-tell-kernel", raw], input=SFDISK_SCRIPT)
        esp, root = partition(raw, "esp"), partition(raw, "root")
        log.run(["mkfs.fat", "-F", "32", "-S", str(SECTOR), "-s", "1", "-n", "ESP", "-i", esp_volume_id(root_uuid),
                 "--offset", str(esp["start"]), raw, str(esp["size"] * SECTOR // 1024)])
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
