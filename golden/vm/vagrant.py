"""Test VMs from a built box with Vagrant (vagrant/Vagrantfile) on libvirt."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from golden.errors import GoldenError
from golden.paths import VAGRANT_DIR
from golden.vm.libvirt import LibvirtSession, delete_volumes
from golden.vm.runner import BuildLog


def vagrant_env(dotfile_dir: Path, serial_dir: Path, **golden: str) -> dict:
    """The environment of every vagrant command: vagrant/Vagrantfile, libvirt,
    no colour or update checks, the GOLDEN_* settings the Vagrantfile reads."""
    return dict(os.environ, VAGRANT_CWD=str(VAGRANT_DIR), VAGRANT_DOTFILE_PATH=str(dotfile_dir),
                GOLDEN_SERIAL_DIR=str(serial_dir), VAGRANT_NO_COLOR="1", VAGRANT_CHECKPOINT_DISABLE="1",
                VAGRANT_DEFAULT_PROVIDER="libvirt", **golden)


class VagrantVMs:
    def __init__(self, box_file: Path, box_name: str, machines: list[str], work: Path,
                 session: LibvirtSession, log: BuildLog, disk_gb: int | None = None):
        self.box_file, self.box_name, self.machines = box_file, box_name, machines
        self.work, self.session, self.log = work, session, log
        work.mkdir(parents=True, exist_ok=True)
        self.env = vagrant_env(work / ".vagrant", work, GOLDEN_BOX=box_name, GOLDEN_MACHINES=",".join(machines),
                               **({"GOLDEN_DISK_GB": str(disk_gb)} if disk_gb else {}))

    def _vagrant(self, *args: str) -> None:
        self.log.run(self.session.wrap(["vagrant", *args]), cwd=VAGRANT_DIR, env=self.env)

    def add_box(self) -> None:
        self._vagrant("box", "add", "--force", "--name", self.box_name, str(self.box_file))

    def up(self) -> None:
        self._vagrant("up", "--provider", "libvirt")

    def write_ssh_config(self, path: Path) -> Path:
        proc = subprocess.run(self.session.wrap(["vagrant", "ssh-config"]), cwd=VAGRANT_DIR, env=self.env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise GoldenError(f"vagrant ssh-config failed: {proc.stderr.strip().splitlines()[-1:]}")
        path.write_text(proc.stdout)
        return path

    def destroy(self) -> None:
        """Removes the VMs, the box and its image in the libvirt pool; never raises."""
        for step in (lambda: self._vagrant("destroy", "--force"),
                     lambda: self._vagrant("box", "remove", "--force", "--all", self.box_name),
                     self._delete_box_volumes):
            try:
                step()
            except Exception as exc:  # keep cleaning; the error is in the log
                self.log.write(f"cleanup step failed: {exc}")
        for serial in sorted(self.work.glob("*-serial.log")):
            self.log.write(f"---- {serial.name} ----\n" + serial.read_text(errors="replace"))

    def _delete_box_volumes(self) -> None:
        delete_volumes(self.box_name.replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image", self.session, self.log)
