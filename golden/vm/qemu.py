"""A VM under plain QEMU (no libvirt): restricted user network, SSH forwarded
from 127.0.0.1 only, serial console to a file. Used for fresh hosts and the
benchmark's throwaway VMs."""
from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path

import paramiko

from golden.errors import GoldenError
from golden.vm.runner import BuildLog, stop_process_group

# paramiko's transport thread logs each failed banner read with a traceback;
# while a guest boots, failed attempts are expected.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QemuVM:
    def __init__(self, disks: list[str], serial: Path, accelerator: str, log: BuildLog,
                 memory: int = 1024, cpus: int = 2, disk_bus: str = "virtio", nic: str = "virtio-net-pci"):
        """disks: QEMU -drive specs without if= (e.g. "file=x.qcow2,format=qcow2,snapshot=on").
        disk_bus: virtio, or ide (SATA through q35's AHCI controller); nic: a QEMU NIC model (e.g. e1000)."""
        self.disks, self.serial, self.accelerator, self.log = disks, serial, accelerator, log
        self.memory, self.cpus, self.disk_bus, self.nic = memory, cpus, disk_bus, nic
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = ["qemu-system-x86_64", "-machine", f"q35,accel={self.accelerator}", "-cpu", "max",
               "-m", str(self.memory), "-smp", str(self.cpus)]
        for disk in self.disks:
            cmd += ["-drive", f"{disk},if={self.disk_bus}"]
        cmd += ["-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{self.port}-:22",
                "-device", f"{self.nic},netdev=net0", "-display", "none", "-serial", f"file:{self.serial}"]
        self.log.write("$ " + " ".join(cmd))
        with self.log.path.open("a") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def login(self, user: str, pkey: paramiko.PKey, timeout: float, step: float = 1) -> paramiko.SSHClient:
        def gone() -> str | None:
            code = self.proc.poll()
            return None if code is None else f"QEMU exited with {code}; see {self.log.path}"
        return wait_for_login(self.port, user, pkey, timeout, self.serial, gone, step)

    def stop(self) -> None:
        """Stops QEMU by its process group; never raises."""
        if self.proc:
            stop_process_group(self.proc)


def wait_for_login(port: int, user: str, pkey: paramiko.PKey, timeout: float, console: Path,
                   gone=lambda: None, step: float = 1) -> paramiko.SSHClient:
    """Polls 127.0.0.1:port until user logs in with pkey; returns the connected
    client. gone() says why the VM stopped (None while it runs).

    Until the guest's network is up, QEMU's user network accepts the
    connection and then sends nothing, so an attempt waits out its banner
    timeout. That timeout starts short, so the poll notices sshd within
    seconds, and grows with the wait, so a slow sshd still gets through."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if gone():
            raise GoldenError(gone())
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            banner_timeout = min(2 + (time.monotonic() - start) / 10, 20)
            client.connect("127.0.0.1", port=port, username=user, pkey=pkey, timeout=10,
                           banner_timeout=banner_timeout, auth_timeout=20, allow_agent=False, look_for_keys=False)
            return client
        except (paramiko.SSHException, OSError, EOFError):
            client.close()
            if time.monotonic() > deadline:
                raise GoldenError(f"{user} could not log in by SSH within {timeout:.0f} s; "
                                  f"serial console: {console}") from None
            time.sleep(step)
