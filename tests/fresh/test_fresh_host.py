"""A fresh host made from the qcow2 with a NoCloud seed: the seed's user gets
in by key, nobody else gets in, and the host has set itself up."""
import paramiko
import pytest

from golden.verify.fresh_host import HOSTNAME, USER
from golden.vm.keys import insecure_key_pair


def _login(vm, user: str, **auth):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect("127.0.0.1", port=vm.port, username=user, timeout=10, allow_agent=False,
                       look_for_keys=False, **auth)
    finally:
        client.close()


def test_seed_user_logs_in_by_key_with_sudo(fresh):
    assert fresh.check_output("id -un") == USER
    assert fresh.check_output("sudo -n id -u") == "0"


def test_cloud_init_configured_the_host_from_the_nocloud_seed(fresh):
    status = fresh.run("cloud-init status --wait")
    assert "status: done" in status.stdout, status.stdout + status.stderr
    assert fresh.check_output("cloud-init query platform") == "nocloud"
    assert fresh.check_output("hostname") == HOSTNAME


def test_the_hosts_own_name_resolves_and_sudo_does_not_warn(fresh):
    """cloud-init manages /etc/hosts, as on Debian's cloud images."""
    assert HOSTNAME in fresh.check_output(f"getent hosts {HOSTNAME}").split()
    assert fresh.run("sudo -n true").stderr == ""


def test_root_grows_to_the_disk_and_sshd_is_hardened(fresh, manifest):
    """The README's recipe gives the host a 20G disk (the image's is 4G): the root grows to it."""
    root_bytes = int(fresh.check_output("df -B1 --output=size / | tail -1"))
    assert root_bytes > 19 << 30 > manifest["disk_size"]
    config = fresh.check_output("sudo sshd -T")
    for setting in ("passwordauthentication no", "kbdinteractiveauthentication no", "permitrootlogin no",
                    "x11forwarding no"):
        assert setting in config.splitlines(), setting


def test_vagrant_insecure_key_does_not_open_the_image(fresh, fresh_vm):
    private, _ = insecure_key_pair()
    with pytest.raises(paramiko.AuthenticationException):
        _login(fresh_vm, "vagrant", pkey=paramiko.PKey.from_path(private))
    with fresh.sudo():
        assert not fresh.file("/home/vagrant/.ssh/authorized_keys").exists
        assert not fresh.file("/etc/sudoers.d/vagrant").exists


def test_no_password_login(fresh_vm):
    for user in (USER, "root", "vagrant"):
        with pytest.raises(paramiko.AuthenticationException):
            _login(fresh_vm, user, password="golden")


def test_services_run(fresh):
    # SSH comes up before the first boot has made the PostgreSQL cluster.
    assert fresh.run("systemctl is-system-running --wait").stdout.strip() in ("running", "degraded")
    for unit in ("postgresql@17-main", "valkey-server", "caddy", "ssh"):
        assert fresh.service(unit).is_running, unit


def test_host_made_its_own_cluster_and_credentials_and_closed_its_firewall(fresh):
    """A product image: its own PostgreSQL cluster answers, the first-boot
    credentials step ran (for no app), nothing but SSH is let in."""
    with fresh.sudo():
        assert fresh.file("/etc/golden/credentials/.generated").exists
        assert fresh.check_output("find /etc/golden/credentials -name '*.env'") == ""
    assert fresh.check_output("sudo -u postgres psql -X -tAc 'SELECT 1'") == "1"
    assert fresh.service("nftables").is_enabled
    assert "policy drop;" in fresh.check_output("sudo nft list chain inet golden input")


def test_host_made_its_own_identity_on_this_boot(fresh):
    """Host keys (cloud-init's, of the same two kinds as the image's own
    first-boot service), machine-id and credentials are newer than the boot."""
    boot_time = int(fresh.check_output("awk '/^btime/ {print $2}' /proc/stat"))
    with fresh.sudo():
        keys = sorted(k for k in fresh.check_output("ls /etc/ssh").split() if k.startswith("ssh_host_"))
        assert keys == ["ssh_host_ecdsa_key", "ssh_host_ecdsa_key.pub",
                        "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
        for path in ("/etc/machine-id", "/etc/ssh/ssh_host_ed25519_key", "/etc/golden/credentials/.generated",
                     "/etc/ssl/private/ssl-cert-snakeoil.key", "/var/lib/postgresql/17/main/PG_VERSION"):
            assert int(fresh.check_output(f"stat -c %Y {path}")) >= boot_time, path


def test_no_timer_remembers_a_run_from_before_this_boot(fresh):
    """The seal removes the timer stamps: a Persistent timer whose stamp came
    from the build would catch up during a fresh host's first boot."""
    boot_time = int(fresh.check_output("awk '/^btime/ {print $2}' /proc/stat"))
    stamps = fresh.check_output("find /var/lib/systemd/timers -name 'stamp-*' -printf '%T@ %f\\n'")
    older = [line for line in stamps.splitlines() if float(line.split()[0]) < boot_time]
    assert older == []


def test_booted_through_uefi_with_secure_boot_enforced(fresh):
    """The fresh host boots through OVMF with Microsoft's keys and Secure Boot
    on: firmware, shim, Debian's signed GRUB and signed kernel all checked."""
    assert fresh.file("/sys/firmware/efi").is_directory
    state = fresh.run("mokutil --sb-state")
    assert state.stdout.strip() == "SecureBoot enabled", state.stdout + state.stderr
    # The kernel locks itself down when it was booted with Secure Boot on.
    assert "[integrity]" in fresh.file("/sys/kernel/security/lockdown").content_string
    assert "Secure boot enabled" in fresh.check_output("sudo dmesg")
    assert fresh.check_output("sudo cat /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
                              " | od -An -tu1 | awk '{print $NF}'") == "1"


def test_the_boot_chain_shows_no_error_under_secure_boot(fresh_vm):
    """Debian's signed GRUB may load no module from disk under Secure Boot:
    the image's grub.cfg asks it for none. (Debian's 25_bli asks for bli,
    which its signed GRUB lacks: "error: prohibited by secure boot policy"
    at every such boot.)"""
    console = fresh_vm.serial.read_text(errors="replace")
    assert "Linux version" in console, console[-2000:]
    before_linux = console[:console.index("Linux version")]
    assert "Loading Linux" in before_linux, before_linux[-2000:]
    assert "error" not in before_linux.lower(), before_linux[-2000:]


def test_the_readme_recipes_devices_work_an_e1000e_nic_and_an_nvme_disk(fresh):
    """q35's default NIC (which the cloud kernel has no driver for) carries
    the network this test logs in over, and the root is on the NVMe disk."""
    drivers = fresh.check_output("for d in /sys/class/net/*/device/driver; do basename $(readlink $d); done").split()
    assert drivers == ["e1000e"], drivers
    assert fresh.check_output("lsblk -no PKNAME $(findmnt -no SOURCE /)").startswith("nvme")
    assert fresh.check_output("systemctl is-active systemd-networkd-wait-online.service") == "active"
