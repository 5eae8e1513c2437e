"""A fresh host: the image's qcow2 booted the way the README tells a user to,
by running the README's own recipe (section "Fresh hosts"), so that the
documented path is the tested one: plain QEMU (no Vagrant, no libvirt),
q35's default NIC (an Intel e1000e), the disk on NVMe, UEFI with Secure Boot
enforced, and a NoCloud seed.

The test fills in the recipe's placeholders (the user's key, the image, the
port) and makes one change: QEMU's user network gets `restrict=on`, the host
rule that test VMs send nothing off this machine. The recipe's last line,
the user's own `ssh`, is replaced by the test's login with its key. The
qcow2 itself is never written: the VM runs on the overlay the recipe makes.
"""
from __future__ import annotations

import shlex
from pathlib import Path

import paramiko

from golden.errors import GoldenError
from golden.paths import REPO
from golden.vm.qemu import free_port, wait_for_login
from golden.vm.runner import BuildLog, alive, stop_pid

README = REPO / "README.md"
RECIPE_INTRO = "Boot it on a new machine with a seed that creates your user:"
USER, HOSTNAME = "ops", "db1"
LOGIN = f"ssh -p 2222 {USER}@127.0.0.1"
SSH_TIMEOUT = 600


def readme_recipe(readme: Path = README) -> str:
    """The shell block that follows RECIPE_INTRO in the README."""
    after = readme.read_text().partition(RECIPE_INTRO)[2]
    parts = after.split("```\n")
    if len(parts) < 3 or parts[0].strip():
        raise GoldenError(f"{readme}: no fresh-host recipe (a ``` block) right after {RECIPE_INTRO!r}")
    return parts[1]


def recipe_script(recipe: str, image: Path, public_key: str, port: int) -> str:
    """The recipe as the test runs it; refused if it no longer has what the test fills in."""
    lines = recipe.rstrip("\n").split("\n")
    if lines[-1] != LOGIN:
        raise GoldenError(f"README.md: the fresh-host recipe no longer ends with {LOGIN!r}")
    script = "\n".join(lines[:-1]) + "\n"
    for placeholder, value in (("ssh-ed25519 AAAA... you@example.org", public_key.strip()),
                               ("infra-<version>.qcow2", shlex.quote(str(image))),
                               ("127.0.0.1:2222", f"127.0.0.1:{port}"),
                               ("-nic user,", "-nic user,restrict=on,")):
        if script.count(placeholder) != 1:
            raise GoldenError(f"README.md: the fresh-host recipe no longer has {placeholder!r} (once)")
        script = script.replace(placeholder, value)
    for needed in (f"- name: {USER}", f"local-hostname: {HOSTNAME}", f"-pidfile {HOSTNAME}.pid",
                   f"-serial file:{HOSTNAME}-console.log"):
        if needed not in script:
            raise GoldenError(f"README.md: the fresh-host recipe no longer has {needed!r}")
    return script


def make_seed(work: Path, public_key: str, instance_id: str, log: BuildLog) -> Path:
    """A NoCloud seed (an ISO labelled cidata) that creates USER with public_key."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "user-data").write_text(f"#cloud-config\nusers:\n  - name: {USER}\n    shell: /bin/bash\n"
                                    f"    sudo: ALL=(ALL) NOPASSWD:ALL\n    ssh_authorized_keys: [{public_key.strip()}]\n")
    (work / "meta-data").write_text(f"instance-id: {instance_id}\nlocal-hostname: {HOSTNAME}\n")
    log.run(["genisoimage", "-quiet", "-output", work / "seed.iso", "-volid", "cidata", "-joliet", "-rock",
             work / "user-data", work / "meta-data"])
    return work / "seed.iso"


class FreshHost:
    def __init__(self, qcow2: Path, work: Path, log: BuildLog):
        self.qcow2, self.work, self.log = qcow2, work, log
        self.key = work / "id_ed25519"
        self.serial = work / f"{HOSTNAME}-console.log"
        self.port = free_port()
        self.pid: int | None = None

    def boot(self) -> None:
        """Runs the README's recipe in the work directory (QEMU daemonizes)."""
        self.work.mkdir(parents=True, exist_ok=True)
        self.log.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{USER}@golden-test", "-f", self.key])
        script = recipe_script(readme_recipe(), self.qcow2.resolve(), self.key.with_suffix(".pub").read_text(),
                               self.port)
        (self.work / "recipe.sh").write_text(script)
        self.log.write("---- the README's fresh-host recipe, as run ----\n" + script)
        try:
            self.log.run(["bash", "-euo", "pipefail", "recipe.sh"], cwd=self.work)
        finally:
            pidfile = self.work / f"{HOSTNAME}.pid"
            self.pid = int(pidfile.read_text()) if pidfile.is_file() else None

    def wait_for_ssh(self) -> None:
        """Until the seed's user logs in by key (cloud-init has run by then)."""
        def gone() -> str | None:
            return None if alive(self.pid) else f"QEMU stopped; see {self.log.path}"
        wait_for_login(self.port, USER, paramiko.PKey.from_path(self.key), SSH_TIMEOUT, self.serial, gone,
                       step=3).close()

    def write_ssh_config(self, path: Path) -> Path:
        path.write_text(f"Host fresh\n  HostName 127.0.0.1\n  Port {self.port}\n  User {USER}\n"
                        f"  IdentityFile {self.key}\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n")
        return path

    def stop(self) -> None:
        """Stops QEMU (by its PID); never raises."""
        if self.pid:
            stop_pid(self.pid, "qemu-system-x86")
        if self.serial.exists():
            self.log.write("---- fresh-host serial console ----\n" + self.serial.read_text(errors="replace"))
