import json
import subprocess
from pathlib import Path

import pytest

from golden.build.stages.provision import FACTS_PATH, PROVISION_STEPS, packer_template, write_template
from golden.spec import load_spec
from golden.build.templates import render_steps

from conftest import need


@pytest.fixture
def template(tmp_path, write_spec):
    spec = load_spec(write_spec("web"))
    for name in ("disk.qcow2", "vmlinuz", "initrd.img"):
        (tmp_path / name).write_text("x")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True)
    (tmp_path / "files").mkdir()
    render_steps(spec, PROVISION_STEPS, tmp_path / "steps")

    def make(accelerator="tcg"):
        return packer_template(spec, disk=tmp_path / "disk.qcow2", kernel=tmp_path / "vmlinuz",
                               initrd=tmp_path / "initrd.img", root_uuid="0c8e3f5e-5d3a-4e0e-9a3b-1f2e3d4c5b6a",
                               accelerator=accelerator, output_dir=tmp_path / "out",
                               files_dir=tmp_path / "files", steps_dir=tmp_path / "steps",
                               ssh_key=tmp_path / "key", serial_log=tmp_path / "serial.log",
                               facts_out=tmp_path / "facts.json")
    return make


def packer_validate(path: Path) -> subprocess.CompletedProcess:
    need("packer")
    return subprocess.run(["packer", "validate", str(path)], capture_output=True, text=True,
                          env={"CHECKPOINT_DISABLE": "1", "PATH": "/usr/bin:/bin"})


def test_generated_template_passes_packer_validate(template, tmp_path):
    path = write_template(template(), tmp_path / "packer.json")
    proc = packer_validate(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_packer_validate_catches_a_broken_template(template, tmp_path):
    t = template()
    t["builders"][0]["format"] = "vmdk-please"
    proc = packer_validate(write_template(t, tmp_path / "packer.json"))
    assert proc.returncode != 0
    assert "format" in (proc.stdout + proc.stderr)


def qemuargs(t) -> dict:
    return {a[0]: a[1] for a in t["builders"][0]["qemuargs"]}


def test_provisioning_network_is_hermetic_and_loopback_only(template):
    t = template()
    args = qemuargs(t)
    netdev = args["-netdev"]
    assert netdev.startswith("user,")
    assert "restrict=on" in netdev.split(",")
    assert "hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22" in netdev
    assert t["builders"][0]["disable_vnc"] is True and args["-display"] == "none"  # no VNC port, no boot sleep


def test_first_boot_is_direct_kernel_boot_of_the_root_uuid(template, tmp_path):
    args = qemuargs(template())
    assert args["-kernel"] == str(tmp_path / "vmlinuz")
    assert args["-initrd"] == str(tmp_path / "initrd.img")
    assert "root=UUID=0c8e3f5e-5d3a-4e0e-9a3b-1f2e3d4c5b6a" in args["-append"].split()


def test_accelerator_is_passed_through(template):
    assert template("tcg")["builders"][0]["accelerator"] == "tcg"
    assert template("kvm")["builders"][0]["accelerator"] == "kvm"


def test_provision_steps_rendered_and_seal_last_after_facts(template):
    provisioners = template()["provisioners"]
    scripts = [s for p in provisioners if p["type"] == "shell" for s in p.get("scripts", [])]
    assert [Path(s).name for s in scripts] == PROVISION_STEPS
    assert all(Path(s).is_file() and "{%" not in Path(s).read_text() for s in scripts)
    download = provisioners[-2]
    assert download["direction"] == "download" and download["source"] == FACTS_PATH
    assert [Path(s).name for s in provisioners[-1]["scripts"]] == ["90-seal.sh"]
    json.dumps(template())  # serialisable as Packer JSON


def test_services_step_renders_apps_and_policy(tmp_path):
    from conftest import REPO
    spec = load_spec(REPO / "tests/images/infra-open-apps.yaml")
    step = (render_steps(spec, PROVISION_STEPS, tmp_path) / "30-services.sh").read_text()
    for app in spec.apps:
        assert f"--shell /usr/sbin/nologin {app.user}" in step
    # Roles and databases are each host's own, made on first boot with its cluster.
    assert "CREATE ROLE" not in step and "CREATE DATABASE" not in step
    assert "golden-host-identity.service" in step and "nftables.service" in step
    assert '"socket_access": "open"' in step and '"socket_mode": "0777"' in step
    shellcheck = subprocess.run(["sh", "-n", str(tmp_path / "30-services.sh")], capture_output=True)
    assert shellcheck.returncode == 0


def test_packer_lines_in_the_build_log_carry_their_time(tmp_path):
    """The bench's provisioning breakdown (bench.provision_step_seconds) reads
    these stamps: a real Packer run, with the null builder, through run_packer."""
    import re
    from golden.build.stages.provision import run_packer
    from conftest import quiet_log
    need("packer")
    work = tmp_path / "work"
    work.mkdir()
    path = write_template({"builders": [{"type": "null", "communicator": "none"}],
                           "provisioners": [{"type": "shell-local", "inline": ["echo step output"]}]},
                          work / "packer.json")
    log = quiet_log(tmp_path / "build.log")
    run_packer(path, log)
    text = (tmp_path / "build.log").read_text()
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ:\s+null: step output$", text, re.M), text
