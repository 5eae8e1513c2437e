"""Nothing host-specific is baked in: each VM makes its own identity on its
first boot. The suite's VM is on its first boot (the reboot tests run last),
so every identity file must be newer than the kernel's boot time: a file
baked into the image would carry the build's time."""
import re

import pytest

IDENTITY_FILES = ["/etc/machine-id", "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ecdsa_key",
                  "/etc/golden/credentials/.generated", "/etc/ssl/private/ssl-cert-snakeoil.key",
                  "/etc/ssl/certs/ssl-cert-snakeoil.pem", "/var/lib/postgresql/17/main/PG_VERSION"] + [
    pytest.param(f"/etc/golden/credentials/{app}.env", marks=pytest.mark.fixtures) for app in ("authentik", "gitea")]


@pytest.fixture(scope="module")
def boot_time(host):
    return int(host.check_output("awk '/^btime/ {print $2}' /proc/stat"))


def test_machine_id_is_fresh(host):
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", machine_id)


@pytest.mark.parametrize("path", IDENTITY_FILES)
def test_identity_was_made_on_this_hosts_first_boot(host, boot_time, path):
    with host.sudo():
        made = int(host.check_output(f"stat -c %Y {path}"))
    assert made >= boot_time, f"{path} is older than this boot: it came with the image"


def test_ssh_host_keys_are_ed25519_and_ecdsa_only(host):
    with host.sudo():
        keys = sorted(host.check_output("ls /etc/ssh").split())
        offered = host.check_output("sshd -T | awk '$1 == \"hostkey\" {print $2}'").split()
    assert [k for k in keys if k.startswith("ssh_host_")] == [
        "ssh_host_ecdsa_key", "ssh_host_ecdsa_key.pub", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
    assert offered == ["/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ecdsa_key"]


def test_postgresql_cluster_was_made_on_this_host(host, boot_time):
    """Its system identifier (which tells clusters apart in WAL and
    replication) begins with its creation time: this boot's, not the build's."""
    control = host.check_output("sudo /usr/lib/postgresql/17/bin/pg_controldata /var/lib/postgresql/17/main")
    identifier = int(re.search(r"^Database system identifier:\s+(\d+)$", control, re.M).group(1))
    assert identifier >> 32 >= boot_time


def test_no_build_time_state_of_caddy_or_valkey(host, boot_time):
    """Caddy's instance UUID and storage, Valkey's dumps: absent, or made on this host."""
    with host.sudo():
        for path in ("/var/lib/caddy/.local/share/caddy/instance.uuid", "/var/lib/caddy/.config/caddy/autosave.json",
                     "/var/lib/valkey/dump.rdb"):
            f = host.file(path)
            assert not f.exists or int(host.check_output(f"stat -c %Y {path}")) >= boot_time, path
