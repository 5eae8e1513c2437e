"""A fresh host: the image's qcow2 booted with plain QEMU and a NoCloud seed,
the way a user runs it on a new machine (no Vagrant, no libvirt).

The seed (an ISO labelled cidata) creates one user with an SSH key that this
run generates. QEMU's user network is restricted and forwards SSH from
127.0.0.1 only. The qcow2 itself is never written: the VM runs on an overlay.
"""
from __future__ import annotations

import os
from pathlib import Path

import paramiko

from golden.vm.qemu import QemuVM
from golden.vm.runner import BuildLog

USER = "ops"
HOSTNAME = "fresh-host"
SSH_TIMEOUT = 600


def user_data(public_key: str) -> str:
    return ("#cloud-config\n"
            "users:\n"
            f"  - name: {USER}\n"
            "    shell: /bin/bash\n"
            "    sudo: ALL=(ALL) NOPASSWD:ALL\n"
            f"    ssh_authorized_keys: [{public_key.strip()}]\n")


def meta_data(instance_id: str) -> str:
    return f"instance-id: {instance_id}\nlocal-hostname: {HOSTNAME}\n"


def make_seed(work: Path, public_key: str, instance_id: str, log: BuildLog) -> Path:
    (work / "user-data").write_text(user_data(public_key))
    (work / "meta-data").write_text(meta_data(instance_id))
    seed = work / "seed.iso"
    log.run(["genisoimage", "-quiet", "-output", seed, "-volid", "cidata", "-joliet", "-rock",
             work / "user-data", work / "meta-data"])
    return seed


class FreshHost:
    def __init__(self, qcow2: Path, work: Path, accelerator: str, log: BuildLog, memory: int = 1024, cpus: int = 2,
                 disk_gb: int = 6):
        self.qcow2, self.work, self.accelerator, self.log = qcow2, work, accelerator, log
        self.disk_gb = disk_gb
        self.memory, self.cpus = memory, cpus
        self.key = work / "id_ed25519"
        self.serial = work / "fresh-serial.log"
        self.vm: QemuVM | None = None

    @property
    def port(self) -> int:
        return self.vm.port

    def boot(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.log.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{USER}@golden-test", "-f", self.key])
        seed = make_seed(self.work, self.key.with_suffix(".pub").read_text(), f"golden-{os.getpid()}", self.log)
        overlay = self.work / "overlay.qcow2"
        # Bigger than the image, as a user's disk would be: the root grows to it.
        self.log.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", self.qcow2.resolve(), overlay,
                      f"{self.disk_gb}G"])
        self.vm = QemuVM([f"file={overlay},format=qcow2", f"file={seed},format=raw,readonly=on"],
                         self.serial, self.accelerator, self.log, self.memory, self.cpus)
        self.vm.start()

    def wait_for_ssh(self) -> None:
        """Until the seed's user logs in by key (cloud-init has run by then)."""
        self.vm.login(USER, paramiko.PKey.from_path(self.key), SSH_TIMEOUT, step=3).close()

    def write_ssh_config(self, path: Path) -> Path:
        path.write_text(f"Host fresh\n  HostName 127.0.0.1\n  Port {self.port}\n  User {USER}\n"
                        f"  IdentityFile {self.key}\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n")
        return path

    def stop(self) -> None:
        """Stops QEMU (by its PID); never raises."""
        if self.vm:
            self.vm.stop()
        if self.serial.exists():
            self.log.write("---- fresh-host serial console ----\n" + self.serial.read_text(errors="replace"))
