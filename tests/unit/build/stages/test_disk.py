import subprocess
import tarfile
import io

import pytest

from golden.build.stages.disk import (BIOS_BOOT, EFI_SYSTEM, LINUX_ROOT_X86_64, SECTOR, esp_volume_id,
                                      make_disk, partition, partition_table)
from golden.vm.runner import BuildLog

from conftest import need


@pytest.fixture
def tiny_rootfs(tmp_path):
    tar_path = tmp_path / "rootfs.tar"
    with tarfile.open(tar_path, "w") as tar:
        etc = tarfile.TarInfo("etc")
        etc.type, etc.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(etc)
        for name, data in (("etc/hostname", b"tiny\n"), ("hello.txt", b"hello from the tar\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return tar_path


def test_gpt_disk_from_tar_without_mounting(tmp_path, tiny_rootfs):
    for tool in ("sfdisk", "mke2fs", "mkfs.fat", "mdir", "qemu-img", "debugfs"):
        need(tool)
    out = tmp_path / "disk.qcow2"
    uuid = "2b0e4d0c-93a8-4b59-8a0e-4f6a0b3c1d2e"
    make_disk(tiny_rootfs, 256 << 20, uuid, out, BuildLog(tmp_path / "build.log"))
    assert out.is_file() and not out.with_suffix(".raw").exists()

    raw = tmp_path / "check.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(out), str(raw)], check=True)
    assert raw.stat().st_size == 256 << 20
    bios, esp, root = partition_table(raw)
    assert (bios["type"], bios["name"]) == (BIOS_BOOT, "bios-boot") and bios["size"] * SECTOR == 1 << 20
    assert (esp["type"], esp["name"]) == (EFI_SYSTEM, "esp") and esp["size"] * SECTOR == 127 << 20
    assert (root["type"], root["name"]) == (LINUX_ROOT_X86_64, "root")
    assert (root["start"] + root["size"]) * SECTOR >= 255 << 20  # the root fills the rest (aligned; GPT backup)
    assert partition(raw, "root") == root
    # The ESP is FAT32 with the volume ID fstab names; mtools reads it in place, no mount.
    probe = subprocess.run(["blkid", "-p", "-O", str(esp["start"] * SECTOR), "-o", "export", str(raw)],
                           capture_output=True, text=True).stdout
    assert "TYPE=vfat" in probe and "VERSION=FAT32" in probe and "LABEL=ESP" in probe
    assert f"UUID={esp_volume_id(uuid)[:4]}-{esp_volume_id(uuid)[4:]}" in probe
    listing = subprocess.run(["mdir", "-i", f"{raw}@@{esp['start'] * SECTOR}", "::/"], capture_output=True, text=True)
    assert listing.returncode == 0 and "No files" in listing.stdout, listing.stdout + listing.stderr
    # Cut the root partition out and read the file system with debugfs: no mount needed.
    part = tmp_path / "root.ext4"
    with raw.open("rb") as src, part.open("wb") as dst:
        src.seek(root["start"] * SECTOR)
        dst.write(src.read(root["size"] * SECTOR))
    content = subprocess.run(["debugfs", "-R", "cat /hello.txt", str(part)], capture_output=True, text=True)
    assert content.stdout == "hello from the tar\n"
    fs_uuid = subprocess.run(["blkid", "-o", "value", "-s", "UUID", str(part)], capture_output=True, text=True)
    assert fs_uuid.stdout.strip() == uuid


def test_failure_leaves_no_disk(tmp_path):
    out = tmp_path / "disk.qcow2"
    with pytest.raises(Exception, match="mke2fs failed"):
        make_disk(tmp_path / "missing.tar", 256 << 20, "2b0e4d0c-93a8-4b59-8a0e-4f6a0b3c1d2e", out,
                  BuildLog(tmp_path / "build.log"))
    assert not out.exists() and not out.with_suffix(".raw").exists()
