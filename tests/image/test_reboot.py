"""After a reboot every service is back and its data is still there."""
import pytest

from conftest import VALKEY_CLI, as_app, latest_probe_line, reboot, wait_until

pytestmark = [pytest.mark.reboot, pytest.mark.alone]  # the VM restarts: nothing else may run meanwhile

CLI = VALKEY_CLI
PSQL = "sudo -u postgres psql -X -q -v ON_ERROR_STOP=1 -tAc"


def test_services_and_data_survive_reboot(host, manifest, request):
    host.run_test(f'{PSQL} "CREATE TABLE before_reboot (v text); INSERT INTO before_reboot VALUES (\'kept\')"')
    credentials = host.check_output("sudo cat /etc/golden/credentials/gitea.env") if manifest["test_only"] else ""
    if manifest["test_only"]:  # an app's data, through its own credentials
        wrote = as_app(host, "gitea", f"{CLI} SET gitea:before-reboot kept")
        assert wrote.stdout.split() == ["OK"], wrote.stdout + wrote.stderr

    reboot(host, request.config.getoption("golden_restart"))

    for unit in ("postgresql@17-main", "valkey-server", "caddy", "ssh"):
        assert host.service(unit).is_running, unit
    assert host.check_output(f'{PSQL} "SELECT v FROM before_reboot"') == "kept"
    if manifest["test_only"]:
        assert as_app(host, "gitea", f"{CLI} GET gitea:before-reboot").stdout.split() == ["kept"]
        # Credentials are made once per host, not on every boot.
        assert host.check_output("sudo cat /etc/golden/credentials/gitea.env") == credentials


def test_rebooted_by_uefi_with_secure_boot_enforced(host, request):
    """./inv test starts the VM again by UEFI (OVMF, Microsoft's keys) after
    its first boot by BIOS: the same disk boots both ways, Secure Boot on."""
    if not request.config.getoption("golden_restart"):
        pytest.skip("the VM was rebooted in-guest (no --golden-restart): same firmware as before")
    assert host.file("/sys/firmware/efi").is_directory
    state = host.run("mokutil --sb-state")
    assert state.stdout.strip() == "SecureBoot enabled", state.stdout + state.stderr
    # shim checked GRUB and GRUB the kernel; the kernel locks itself down under Secure Boot.
    assert "Secure boot enabled" in host.check_output("sudo dmesg")
    assert "[integrity]" in host.file("/sys/kernel/security/lockdown").content_string


@pytest.mark.fixtures
def test_application_service_back_after_reboot(host):
    # The previous test rebooted this VM.
    assert host.service("probe").is_running
    assert latest_probe_line(host, "probe", "postgresql").startswith("postgresql: ok")
    # The served app's socket directory is made again at boot (tmpfiles.d).
    assert wait_until(lambda: host.run("curl -sf -H 'Host: whoami.infra.test' http://127.0.0.1/health")
                      .stdout.startswith("app=whoami "), 120)
