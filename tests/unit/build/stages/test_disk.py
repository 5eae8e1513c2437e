import subprocess
import tarfile
import io

import pytest

from golden.build.stages.disk import BIOS_BOOT, LINUX_ROOT_X86_64, SECTOR, make_disk, partition_table
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
    for tool in ("sfdisk", "mke2fs", "qemu-img", "debugfs"):
        need(tool)
    out = tmp_path / "disk.qcow2"
    uuid = "2b0e4d0c-93a8-4b59-8a0e-4f6a0b3c1d2e"
    make_disk(tiny_rootfs, 64 << 20, uuid, out, BuildLog(tmp_path / "build.log"))
    assert out.is_file() and not out.with_suffix(".raw").exists()

    raw = tmp_path / "check.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(out), str(raw)], check=True)
    assert raw.stat().st_size == 64 << 20
    bios, root = partition_table(raw)
    assert bios["type"] == BIOS_BOOT and bios["size"] * SECTOR == 1 << 20
    assert root["type"] == LINUX_ROOT_X86_64
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
        make_disk(tmp_path / "missing.tar", 64 << 20, "2b0e4d0c-93a8-4b59-8a0e-4f6a0b3c1d2e", out,
                  BuildLog(tmp_path / "build.log"))
    assert not out.exists() and not out.with_suffix(".raw").exists()
