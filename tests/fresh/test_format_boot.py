"""An extra format boots by itself: the vmdk (VMware's format), as QEMU
reads it, booted by BIOS on the devices VMware and VirtualBox present by
default (an Intel e1000 NIC, a SATA disk on AHCI), reaches SSH with a
NoCloud seed. (The fresh host boots the qcow2 by UEFI; every other format
is compared with that disk in test_artifact.)"""
import tempfile
from pathlib import Path

import paramiko
import pytest

from golden.verify.fresh_host import USER, make_seed
from golden.vm.accel import probe_accelerator
from golden.vm.qemu import QemuVM
from golden.vm.runner import BuildLog


@pytest.fixture(scope="module")
def vmdk_host(request, manifest):
    """Booted and torn down within this module, before the fresh host boots (never two VMs at once)."""
    if "vmdk" not in manifest["outputs"]:
        pytest.skip(f"{manifest['name']} makes no vmdk (spec outputs)")
    qcow2 = Path(request.config.getoption("golden_qcow2"))
    vmdk = qcow2.with_name(f"{manifest['name']}-{manifest['version']}.vmdk")
    log = BuildLog(Path(request.config.getoption("golden_log")), echo=open("/dev/null", "w"))
    with tempfile.TemporaryDirectory(prefix="golden-vmdk-") as work:
        work = Path(work)
        key = work / "id_ed25519"
        log.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
        seed = make_seed(work, key.with_suffix(".pub").read_text(), "golden-vmdk", log)
        vm = QemuVM([f"file={vmdk},format=vmdk,snapshot=on", f"file={seed},format=raw,readonly=on,media=cdrom"],
                    work / "vmdk-serial.log", probe_accelerator(), log, disk_bus="ide", nic="e1000")
        try:
            vm.start()
            client = vm.login(USER, paramiko.PKey.from_path(key), 600, step=3)
            yield client
            client.close()
        finally:
            vm.stop()
            if vm.serial.exists():
                log.write("---- vmdk boot serial console ----\n" + vm.serial.read_text(errors="replace"))


def _run(client: paramiko.SSHClient, command: str) -> str:
    _, out, err = client.exec_command(command, timeout=60)
    assert out.channel.recv_exit_status() == 0, err.read().decode()
    return out.read().decode().strip()


def test_the_vmdk_boots_on_e1000_and_sata_to_ssh(vmdk_host):
    assert _run(vmdk_host, "id -un") == USER
    drivers = _run(vmdk_host, "for d in /sys/class/net/*/device/driver; do basename $(readlink $d); done").split()
    assert drivers == ["e1000"]
    root_disk = _run(vmdk_host, "lsblk -no PKNAME $(findmnt -no SOURCE /)")
    ahci = _run(vmdk_host, "ls /sys/bus/pci/drivers/ahci | grep :").split()
    assert root_disk.startswith("sd") and len(ahci) == 1
    assert f"/{ahci[0]}/" in _run(vmdk_host, f"readlink -f /sys/block/{root_disk}")  # behind the AHCI controller
    assert not _run(vmdk_host, "test -d /sys/firmware/efi && echo uefi || true")  # by BIOS
