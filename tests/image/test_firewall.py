"""nftables: default-deny input. Connections are made from outside the VM
(this test process, on the VM's network), to ports that ordinary processes
in the VM listen on."""
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import wait_until

# Alone: its listeners would show in test_network's, and it restarts the firewall.
pytestmark = pytest.mark.alone

NOT_OPENED, OPENED_BY_TESTS_SPEC = 8080, 8081  # tests/images/infra-apps.yaml opens 8081/tcp


@pytest.fixture(scope="module")
def vm_address(host):
    return host.check_output("echo $SSH_CONNECTION").split()[2]  # the address this test reaches the VM at


@pytest.fixture(scope="module")
def listeners(host):
    for port in (NOT_OPENED, OPENED_BY_TESTS_SPEC):
        host.run_test(f"sudo systemd-run --unit golden-test-listen-{port} --uid nobody "
                      f"python3 -m http.server --directory /usr/share/doc {port}")
        assert wait_until(lambda: host.run(f"curl -sf -o /dev/null http://127.0.0.1:{port}/").rc == 0, 30)
    yield
    host.run(f"sudo systemctl stop golden-test-listen-{NOT_OPENED} golden-test-listen-{OPENED_BY_TESTS_SPEC}")


def _reachable(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def reachable(vm_address, listeners) -> dict[int, bool]:
    """Each port probed from outside at once: a dropped SYN costs the whole
    timeout, so the probes wait together rather than one after another."""
    ports = (22, NOT_OPENED, OPENED_BY_TESTS_SPEC, 80)
    with ThreadPoolExecutor(len(ports)) as pool:
        return dict(zip(ports, pool.map(lambda port: _reachable(vm_address, port), ports)))


def test_enabled_with_a_default_deny_input_policy(host):
    assert host.service("nftables").is_enabled
    ruleset = host.check_output("sudo nft list chain inet golden input")
    assert "type filter hook input priority filter; policy drop;" in ruleset


def test_a_port_opened_in_the_vm_is_not_reachable_from_outside(host, reachable):
    assert reachable[22]  # the same path works for SSH
    assert not reachable[NOT_OPENED]
    # The listener itself answers inside the VM: only the firewall stands in between.
    assert host.run(f"curl -sf -o /dev/null http://127.0.0.1:{NOT_OPENED}/").rc == 0


def test_the_spec_opens_ports(manifest, reachable):
    opened = f"{OPENED_BY_TESTS_SPEC}/tcp" in manifest["firewall"]["allow"]
    assert reachable[OPENED_BY_TESTS_SPEC] == opened
    assert reachable[80] == bool(manifest["sites"])  # Caddy's sites


def test_restarting_the_firewall_keeps_other_tables(host):
    """Podman's netavark keeps its rules in a table of its own; Debian's unit would flush them all."""
    host.run_test("sudo nft add table inet golden-test-other")
    try:
        host.run_test("sudo systemctl restart nftables")
        tables = host.check_output("sudo nft list tables").splitlines()
        assert "table inet golden-test-other" in tables and "table inet golden" in tables
    finally:
        host.run("sudo nft delete table inet golden-test-other")
