"""Nothing host-specific is baked in: each VM makes its own identity."""
import re


def test_machine_id_is_fresh(host):
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", machine_id)


def test_ssh_host_keys_exist(host):
    for kind in ("ed25519", "rsa", "ecdsa"):
        assert host.file(f"/etc/ssh/ssh_host_{kind}_key").exists


def test_two_vms_from_one_box_differ(all_hosts):
    machine_ids = {h.file("/etc/machine-id").content_string.strip() for h in all_hosts}
    host_keys = {h.check_output("cat /etc/ssh/ssh_host_ed25519_key.pub") for h in all_hosts}
    assert len(machine_ids) == len(all_hosts)
    assert len(host_keys) == len(all_hosts)
