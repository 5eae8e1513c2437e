"""Test VMs from a built box with Vagrant (vagrant/Vagrantfile) on libvirt."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from golden.errors import GoldenError
from golden.paths import VAGRANT_DIR
from golden.vm.libvirt import URI, LibvirtSession, delete_volumes
from golden.vm.runner import BuildLog


NVRAM_ROOT = Path("/var/lib/libvirt/qemu/nvram")
HALT_SECONDS = 300  # a halted guest's poweroff, under TCG on a busy host


def domain_name(machine: str) -> str:
    """vagrant-libvirt's name for a machine's domain: the Vagrantfile's directory, then the machine."""
    return f"vagrant_{machine}"


def wait_shut_off_shell(domains: str, seconds: int) -> str:
    """Shell that waits until each of domains (shell words) is shut off, or
    fails after seconds saying which is not."""
    return (f"for domain in {domains}; do\n"
            f"  waited=0\n"
            f'  until [ "$(LC_ALL=C virsh -c {URI} domstate "$domain" 2>/dev/null)" = "shut off" ]; do\n'
            f'    [ "$waited" -lt {seconds} ] || {{ echo "restart: $domain is not shut off after {seconds} s:'
            f' $(virsh -c {URI} domstate "$domain" 2>&1)"; exit 1; }}\n'
            f"    sleep 1; waited=$((waited + 1))\n"
            f"  done\n"
            f"done")


def vagrant_command(*args: str) -> list[str]:
    """A vagrant command whose output goes to a log: --no-tty drops the
    progress meters (thousands of carriage-return lines per box upload)."""
    return ["vagrant", "--no-tty", *args]


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
        # UEFI variables of these VMs (libvirt's directory: its QEMU user reaches it); removed with them.
        self.nvram_dir = NVRAM_ROOT / work.name
        self.env = vagrant_env(work / ".vagrant", work, GOLDEN_BOX=box_name, GOLDEN_MACHINES=",".join(machines),
                               GOLDEN_NVRAM_DIR=str(self.nvram_dir),
                               **({"GOLDEN_DISK_GB": str(disk_gb)} if disk_gb else {}))

    def _vagrant(self, *args: str, firmware: str = "bios") -> None:
        env = dict(self.env, GOLDEN_FIRMWARE=firmware)
        self.log.run(self.session.wrap(vagrant_command(*args)), cwd=VAGRANT_DIR, env=env)

    def add_box(self) -> None:
        self._vagrant("box", "add", "--force", "--name", self.box_name, str(self.box_file))

    def up(self) -> None:
        self._vagrant("up", "--provider", "libvirt")

    def write_restart_script(self, path: Path, firmware: str) -> Path:
        """A script that halts the VMs and starts them again with firmware
        (bios|uefi); tests/image runs it as its reboot. Its output goes to
        restart.log in the work directory."""
        keys = sorted(k for k in self.env if re.fullmatch(r"(VAGRANT|GOLDEN)_[A-Za-z0-9_]*|PATH|HOME", k))
        domains = " ".join(shlex.quote(domain_name(m)) for m in self.machines)
        lines = ["#!/bin/sh", f"exec >>{shlex.quote(str(self.work / 'restart.log'))} 2>&1", "set -e",
                 *(f"export {k}={shlex.quote(self.env[k])}" for k in keys),
                 f"cd {shlex.quote(str(VAGRANT_DIR))}", 'echo "$(date -u +%T) restart: vagrant halt"',
                 # The guest's sshd can go before the exit status of its poweroff
                 # reaches Vagrant, which then fails (SSHNoExitStatus) though the
                 # machine stops: what counts is that every domain is shut off.
                 f'{shlex.join(vagrant_command("halt"))} || echo "$(date -u +%T) restart: vagrant halt failed; '
                 'the machines must stop all the same"',
                 wait_shut_off_shell(domains, HALT_SECONDS),
                 f'echo "$(date -u +%T) restart: vagrant up by "{shlex.quote(firmware)}',
                 f"GOLDEN_FIRMWARE={shlex.quote(firmware)} {shlex.join(vagrant_command('up', '--provider', 'libvirt'))}",
                 'echo "$(date -u +%T) restart: up"']
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o700)
        return path

    def write_ssh_config(self, path: Path) -> Path:
        proc = subprocess.run(self.session.wrap(["vagrant", "ssh-config"]), cwd=VAGRANT_DIR, env=self.env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise GoldenError(f"vagrant ssh-config failed: {proc.stderr.strip().splitlines()[-1:]}")
        path.write_text(proc.stdout)
        return path

    def destroy(self) -> None:
        """Removes the VMs, the box and its image in the libvirt pool. Raises
        only an interrupt, and only after every step ran."""
        # A VM the reboot test started by UEFI has variables: libvirt undefines it
        # only when told to keep them (vagrant-libvirt does, for UEFI machines).
        uefi = any(self.nvram_dir.glob("*_VARS.fd"))
        interrupted: BaseException | None = None
        for step in (lambda: self._vagrant("destroy", "--force", firmware="uefi" if uefi else "bios"),
                     lambda: self._vagrant("box", "remove", "--force", "--all", self.box_name),
                     self._undefine_leftovers, self._delete_box_volumes,
                     lambda: shutil.rmtree(self.nvram_dir, ignore_errors=True)):
            try:
                step()
            except Exception as exc:  # keep cleaning; the error is in the log
                self.log.write(f"cleanup step failed: {exc}")
            except BaseException as exc:  # an interrupt (e.g. a second Ctrl-C): the next steps still run
                interrupted = interrupted or exc
                self.log.write(f"cleanup step interrupted: {exc!r}; the next steps still run")
        for serial in sorted(self.work.glob("*-serial.log")):
            self.log.write(f"---- {serial.name} ----\n" + serial.read_text(errors="replace"))
        if interrupted:
            raise interrupted

    def _undefine_leftovers(self) -> None:
        """A domain vagrant destroy left defined would block the next run's
        `vagrant up` (same name): stop it if it runs (a core it would take
        from the next validations), undefine it with its disk, and say so."""
        for machine in self.machines:
            domain = domain_name(machine)
            subprocess.run(self.session.wrap(["virsh", "-c", URI, "destroy", domain]), capture_output=True)
            undefine = ["virsh", "-c", URI, "undefine", "--nvram", "--remove-all-storage", domain]
            proc = subprocess.run(self.session.wrap(undefine), capture_output=True, text=True)
            if proc.returncode == 0:
                self.log.write(f"cleanup: vagrant destroy left domain {domain} defined; undefined it")

    def _delete_box_volumes(self) -> None:
        delete_volumes(self.box_name.replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image", self.session, self.log)
