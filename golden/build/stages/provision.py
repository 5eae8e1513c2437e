"""Stage provision: Packer's qemu builder boots the disk and runs provision/.

The first boot is a direct kernel boot (-kernel/-initrd from the rootfs)
because the disk has no bootloader yet; the first provisioning step installs
GRUB so that the image boots by itself afterwards. Networking is QEMU user
mode with `restrict=on` (no route out) and the SSH forward bound to
127.0.0.1 only: provisioning is hermetic.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from golden.build.stages.package import VAGRANT_LOGIN_FILES
from golden.build.templates import render_steps, render_tree
from golden.vm.runner import BuildLog
from golden.spec import ImageSpec

UPLOAD_DIR = "/tmp/golden"
# Run in this order inside the guest, as root; a step may be a jinja2
# template (<step>.j2) rendered with the spec. The facts are fetched before
# the last step seals the image.
PROVISION_STEPS = ["10-bootloader.sh", "20-configure.sh", "30-services.sh", "40-apps.sh", "90-seal.sh"]
FACTS_PATH = "/etc/ansible/facts.d/golden.fact"


def _qemu_args(kernel: Path, initrd: Path, root_uuid: str, serial_log: Path) -> list[list[str]]:
    return [
        ["-kernel", str(kernel)],
        ["-initrd", str(initrd)],
        ["-append", f"root=UUID={root_uuid} rw console=ttyS0,115200"],
        ["-netdev", "user,id=user.0,restrict=on,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"],
        ["-device", "virtio-net,netdev=user.0"],
        ["-serial", f"file:{serial_log}"],
        ["-display", "none"],
    ]


def packer_template(spec: ImageSpec, *, disk: Path, kernel: Path, initrd: Path, root_uuid: str,
                    accelerator: str, output_dir: Path, files_dir: Path, steps_dir: Path, ssh_key: Path,
                    serial_log: Path, facts_out: Path) -> dict:
    qemuargs = _qemu_args(kernel, initrd, root_uuid, serial_log)
    return {
        "builders": [{
            "type": "qemu",
            "accelerator": accelerator,
            "disk_image": True,
            "iso_url": str(disk),
            "iso_checksum": "none",
            "use_backing_file": False,
            "skip_resize_disk": True,
            "format": "qcow2",
            "disk_interface": "virtio",
            "disk_discard": "unmap",
            "disk_detect_zeroes": "unmap",
            "output_directory": str(output_dir),
            "vm_name": f"{spec.name}.qcow2",
            "memory": spec.vm.memory,
            "cpus": spec.vm.cpus,
            "headless": True,
            # No VNC: nothing is typed at boot, and Packer would first sleep 10 s
            # (its boot_wait, which "0s" does not turn off).
            "disable_vnc": True,
            "qemuargs": qemuargs,
            "communicator": "ssh",
            "ssh_host": "127.0.0.1",
            "ssh_username": "vagrant",
            "ssh_private_key_file": str(ssh_key),
            "ssh_timeout": "15m",
            # The last act of sealing: the image keeps no way in for Vagrant's
            # well-known key (the box gets it back offline, package.make_box_disk).
            "shutdown_command": f"sudo sh -c 'rm -f {' '.join(VAGRANT_LOGIN_FILES)} && systemctl poweroff'",
            "shutdown_timeout": "10m",
        }],
        "provisioners": [
            {"type": "shell", "inline": [f"rm -rf {UPLOAD_DIR}", f"mkdir -p {UPLOAD_DIR}"]},
            {"type": "file", "source": f"{files_dir}/", "destination": UPLOAD_DIR},
            _shell_steps([steps_dir / s for s in PROVISION_STEPS[:-1]], root_uuid),
            {"type": "file", "direction": "download", "source": FACTS_PATH, "destination": str(facts_out)},
            _shell_steps([steps_dir / PROVISION_STEPS[-1]], root_uuid),
        ],
    }


def _shell_steps(scripts: list[Path], root_uuid: str) -> dict:
    return {
        "type": "shell",
        "execute_command": "chmod +x {{ .Path }}; sudo -E {{ .Vars }} {{ .Path }}",
        "environment_vars": [f"GOLDEN_FILES={UPLOAD_DIR}", f"GOLDEN_ROOT_UUID={root_uuid}"],
        "scripts": [str(s) for s in scripts],
    }


def write_template(template: dict, path: Path) -> Path:
    path.write_text(json.dumps(template, indent=2) + "\n")
    return path


def packer_env(work_dir: Path) -> dict:
    env = dict(os.environ)
    env.update({"PACKER_CACHE_DIR": str(work_dir / "packer_cache"),
                "CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1",
                "PACKER_LOG": "1", "PACKER_LOG_PATH": str(work_dir / "packer-debug.log")})
    return env


def run_packer(template_path: Path, log: BuildLog) -> None:
    # -timestamp-ui: each line stamped (to the second), so the log shows where the VM's time goes.
    log.run(["packer", "build", "-color=false", "-timestamp-ui", "-on-error=cleanup", template_path],
            cwd=template_path.parent, env=packer_env(template_path.parent))


def run(ctx) -> None:
    """Boots the disk with Packer and runs the provisioning steps; leaves the
    sealed disk and the facts in the build's work directory."""
    work = ctx.out / "work"
    rootfs_dir, disk_dir = ctx.results["rootfs"], ctx.results["disk"]
    render_tree(ctx.spec, work / "files" / "root")
    serial_log = work / "serial.log"
    template = packer_template(
        ctx.spec, disk=disk_dir / "disk.qcow2", kernel=rootfs_dir / "vmlinuz", initrd=rootfs_dir / "initrd.img",
        root_uuid=(disk_dir / "root-uuid").read_text().strip(), accelerator=ctx.accelerator,
        output_dir=work / "out", files_dir=work / "files", steps_dir=render_steps(ctx.spec, PROVISION_STEPS,
                                                                                   work / "steps"),
        ssh_key=ctx.login_key[0], serial_log=serial_log, facts_out=work / "facts.json")
    try:
        run_packer(write_template(template, work / "packer.json"), ctx.log)
    finally:
        if serial_log.exists():
            ctx.log.write("---- guest serial console ----\n" + serial_log.read_text(errors="replace"))
    ctx.results["provision"] = {"sealed": work / "out" / f"{ctx.spec.name}.qcow2", "facts": work / "facts.json"}
