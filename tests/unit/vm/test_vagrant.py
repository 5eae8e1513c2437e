"""The Vagrantfile's firmware choice, read by the real vagrant (`vagrant
validate` loads it and its libvirt settings; no VM, no daemon), and the
restart script the reboot test runs."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from golden.paths import VAGRANT_DIR
from golden.vm.libvirt import URI, LibvirtSession, libvirt_session
from golden.vm.runner import BuildLog
from golden.vm.vagrant import VagrantVMs, domain_name, vagrant_env, wait_shut_off_shell

OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"


def _validate(tmp_path, **golden):
    env = vagrant_env(tmp_path / ".vagrant", tmp_path, GOLDEN_BOX="golden-web-1", VAGRANT_HOME=str(tmp_path / "home"),
                      **golden)
    return subprocess.run(["vagrant", "validate"], cwd=VAGRANT_DIR, env=env, capture_output=True, text=True)


def test_unknown_firmware_is_refused_by_name(tmp_path):
    proc = _validate(tmp_path, GOLDEN_FIRMWARE="efi")
    assert proc.returncode != 0
    assert 'GOLDEN_FIRMWARE: expected bios or uefi, got "efi"' in proc.stderr


def test_uefi_machines_get_secure_boot_variables_of_their_own(tmp_path):
    nvram = tmp_path / "nvram"
    nvram.mkdir()
    proc = _validate(tmp_path, GOLDEN_FIRMWARE="uefi", GOLDEN_NVRAM_DIR=str(nvram))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # A copy of the template with Microsoft's keys enrolled and Secure Boot on, per machine and box.
    assert (nvram / "golden-a-golden-web-1_VARS.fd").read_bytes() == open(OVMF_VARS, "rb").read()


def test_bios_machines_have_no_variables(tmp_path):
    nvram = tmp_path / "nvram"
    nvram.mkdir()
    proc = _validate(tmp_path, GOLDEN_NVRAM_DIR=str(nvram))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(nvram.iterdir()) == []


def _vms_without_libvirt(tmp_path) -> VagrantVMs:
    """For what needs no daemon: the scripts the harness writes."""
    return VagrantVMs(tmp_path / "x.box", "golden-web-1", ["golden-a"], tmp_path / "work",
                      LibvirtSession(netns=None), BuildLog(tmp_path / "log"))


def test_restart_script_keeps_hostile_values_as_data(tmp_path):
    vms = _vms_without_libvirt(tmp_path)
    vms.env["GOLDEN_MEMORY"] = "1024'; touch pwned; '"
    script = vms.write_restart_script(tmp_path / "restart", "uefi").read_text()
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    exports = "".join(line + "\n" for line in script.splitlines() if line.startswith("export "))
    shown = subprocess.run(["sh", "-c", exports + 'printf %s "$GOLDEN_MEMORY"'], cwd=tmp_path,
                           capture_output=True, text=True)
    assert shown.stdout == "1024'; touch pwned; '"
    assert not (tmp_path / "pwned").exists()
    assert "\nvagrant --no-tty halt || " in script
    assert script.index("vagrant --no-tty halt") < script.index("domstate") \
        < script.index("GOLDEN_FIRMWARE=uefi vagrant --no-tty up --provider libvirt")


def test_restart_script_exports_only_vagrants_and_goldens_settings(tmp_path):
    vms = _vms_without_libvirt(tmp_path)
    vms.env.update({"BASH_FUNC_vagrant%%": "() { touch pwned; }", "GOLDEN_X;touch pwned": "1",
                    "LD_PRELOAD": "/tmp/evil.so", "PATH": "/usr/bin:/bin", "HOME": "/root"})
    script = vms.write_restart_script(tmp_path / "restart", "bios").read_text()
    exported = sorted(line.split("=", 1)[0].removeprefix("export ")
                      for line in script.splitlines() if line.startswith("export "))
    assert "PATH" in exported and "HOME" in exported and "GOLDEN_BOX" in exported
    assert "VAGRANT_DOTFILE_PATH" in exported and "GOLDEN_MACHINES" in exported
    assert not {"BASH_FUNC_vagrant%%", "GOLDEN_X;touch pwned", "LD_PRELOAD"} & set(exported)
    assert "pwned" not in script and "evil" not in script
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0


def test_adding_a_box_writes_no_progress_meter_into_the_log(tmp_path, monkeypatch):
    """vagrant box add (a real, tiny box) logs what it did, not a meter of
    carriage-return lines (an image's box wrote thousands into test.log)."""
    from golden.build.stages.package import make_box
    disk = tmp_path / "box.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "1M"], check=True)
    make_box(disk, 2**20, tmp_path / "x.box")
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path / "home"))
    vms = _vms_without_libvirt(tmp_path)
    vms.add_box()
    log = (tmp_path / "log").read_text()
    assert "Successfully added box 'golden-web-1'" in log
    assert "Progress:" not in log and "\r" not in log


@pytest.fixture
def private_libvirt(tmp_path):
    """A private libvirtd in its own namespace: (session, log, virsh)."""
    log = BuildLog(tmp_path / "log", echo=open(os.devnull, "w"))
    with libvirt_session(tmp_path, say=log.write) as session:
        yield session, log, lambda *a: subprocess.run(session.wrap(["virsh", "-c", URI, *a]),
                                                      capture_output=True, text=True)


def _uefi_domain(name: str, nvram: Path) -> str:
    return f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>
    <nvram template='{OVMF_VARS}'>{nvram}</nvram></os>
  <features><acpi/><smm state='on'/></features></domain>"""


def test_a_domain_destroy_left_behind_is_undefined_with_its_variables(tmp_path, private_libvirt):
    """After a failed `vagrant destroy`, the harness undefines the machines'
    domains (a private libvirtd in its own namespace; the domain never runs)
    and leaves other domains alone."""
    machine, other = f"golden-unit-{os.getpid()}", f"vagrant_golden-other-{os.getpid()}"
    session, log, virsh = private_libvirt
    try:
        for name in (f"vagrant_{machine}", other):
            nvram = tmp_path / f"{name}_VARS.fd"
            shutil.copy(OVMF_VARS, nvram)
            (tmp_path / f"{name}.xml").write_text(_uefi_domain(name, nvram))
            assert virsh("define", str(tmp_path / f"{name}.xml")).returncode == 0
        vms = VagrantVMs(tmp_path / "x.box", "golden-web-1", [machine], tmp_path / "work", session, log)
        vms._undefine_leftovers()
        assert virsh("dominfo", f"vagrant_{machine}").returncode != 0
        assert not (tmp_path / f"vagrant_{machine}_VARS.fd").exists()
        assert virsh("dominfo", other).returncode == 0
        assert f"vagrant destroy left domain vagrant_{machine} defined; undefined it" in log.path.read_text()
        vms._undefine_leftovers()  # nothing left: says nothing more
        assert log.path.read_text().count("undefined it") == 1
    finally:
        virsh("undefine", "--nvram", other)


def test_the_restart_goes_on_only_once_every_domain_is_shut_off(tmp_path, private_libvirt):
    """The restart script's wait after `vagrant halt` (which can fail though
    the guest stops): a shut-off domain passes at once; a running one or one
    that does not exist fails within the limit, naming its state."""
    suffix = os.getpid()
    stopped, running = domain_name(f"golden-off-{suffix}"), domain_name(f"golden-on-{suffix}")
    session, log, virsh = private_libvirt
    wait = lambda domains: subprocess.run(session.wrap(["sh", "-c", wait_shut_off_shell(domains, 2)]),
                                          capture_output=True, text=True)
    try:
        for name in (stopped, running):
            assert virsh("define", str(_bare_domain(tmp_path, name))).returncode == 0
        started = virsh("start", running)
        assert started.returncode == 0, started.stderr

        assert wait(stopped).returncode == 0
        on = wait(f"{stopped} {running}")
        assert on.returncode == 1
        assert on.stdout.strip() == f"restart: {running} is not shut off after 2 s: running"
        missing = wait(domain_name(f"golden-none-{suffix}"))
        assert missing.returncode == 1 and "is not shut off after 2 s: error:" in missing.stdout
    finally:
        virsh("destroy", running)
        for name in (stopped, running):
            virsh("undefine", name)


def _bare_domain(tmp_path, name: str) -> Path:
    """A domain with no disk and no firmware files: SeaBIOS finds nothing to boot and waits."""
    xml = tmp_path / f"{name}.xml"
    xml.write_text(f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory>"
                   "<os><type arch='x86_64'>hvm</type></os></domain>")
    return xml


def test_a_running_leftover_domain_is_stopped_then_undefined(tmp_path, private_libvirt):
    machine = f"golden-run-{os.getpid()}"
    session, log, virsh = private_libvirt
    try:
        assert virsh("define", str(_bare_domain(tmp_path, domain_name(machine)))).returncode == 0
        assert virsh("start", domain_name(machine)).returncode == 0
        VagrantVMs(tmp_path / "x.box", "golden-web-1", [machine], tmp_path / "work", session, log) \
            ._undefine_leftovers()
        assert virsh("dominfo", domain_name(machine)).returncode != 0  # neither running nor defined
        assert "undefined it" in log.path.read_text()
    finally:
        virsh("destroy", domain_name(machine))
        virsh("undefine", domain_name(machine))


def test_destroy_runs_every_cleanup_step_after_an_interrupt_then_raises_it(tmp_path, monkeypatch, private_libvirt):
    """A second Ctrl-C during `vagrant destroy`: the leftover domain is still
    undefined and the UEFI variables removed, and the interrupt goes on up."""
    machine = f"golden-int-{os.getpid()}"
    session, log, virsh = private_libvirt
    monkeypatch.setattr("golden.vm.vagrant.NVRAM_ROOT", tmp_path / "nvram")
    vms = VagrantVMs(tmp_path / "x.box", "golden-web-1", [machine], tmp_path / "work", session, log)
    vms.env["VAGRANT_HOME"] = str(tmp_path / "vagrant-home")
    vms.nvram_dir.mkdir(parents=True)
    (vms.nvram_dir / f"{machine}-golden-web-1_VARS.fd").write_bytes(b"vars")
    real_vagrant = vms._vagrant

    def interrupted_destroy(*args, **kwargs):
        if args[0] == "destroy":
            raise KeyboardInterrupt
        return real_vagrant(*args, **kwargs)
    monkeypatch.setattr(vms, "_vagrant", interrupted_destroy)
    try:
        assert virsh("define", str(_bare_domain(tmp_path, domain_name(machine)))).returncode == 0
        with pytest.raises(KeyboardInterrupt):
            vms.destroy()
        assert virsh("dominfo", domain_name(machine)).returncode != 0
        assert not vms.nvram_dir.exists()
        text = log.path.read_text()
        assert "cleanup step interrupted: KeyboardInterrupt()" in text
        assert f"vagrant destroy left domain {domain_name(machine)} defined; undefined it" in text
    finally:
        virsh("undefine", domain_name(machine))
