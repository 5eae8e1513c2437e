"""The rendered nftables ruleset, loaded by the real nft into a network
namespace that stands for the VM, and probed over a veth pair from a second
namespace that stands for the outside."""
import subprocess
import textwrap

import pytest

from golden.build.templates import render_tree
from golden.spec import load_spec

from conftest import need

SPEC = "name: x\nhostname: x\nbase: {suite: trixie}\n"
SITE = "caddy: {sites: [{address: ':80', upstream: 'unix//run/web/web.sock'}]}\n"

# Run in the "VM" namespace: lo and the veth up, the ruleset loaded twice (a
# reload), listeners on the probed ports, then the outside connects to each.
PROBE = textwrap.dedent("""\
    set -eu
    ip link add out0 type veth peer name vm0
    ip link set lo up
    ip addr add 10.213.0.2/24 dev vm0 && ip link set vm0 up
    unshare --net sleep 30 >/dev/null 2>&1 & outside=$!
    while [ "$(readlink /proc/$outside/ns/net)" = "$(readlink /proc/self/ns/net)" ]; do sleep 0.05; done
    ip link set out0 netns $outside
    nsenter --net=/proc/$outside/ns/net sh -c 'ip link set lo up; ip addr add 10.213.0.1/24 dev out0; ip link set out0 up'
    nft -f "$1" && nft -f "$1"
    pids=$outside
    for port in 22 80 443 8080 8081; do
      timeout 30 python3 -c "import socket; s = socket.socket(); s.bind(('0.0.0.0', $port)); s.listen()
    while True: s.accept()[0].close()" >/dev/null 2>&1 & pids="$pids $!"
    done
    for port in 22 80 443 8080 8081; do
      until ss -Hltn "sport = :$port" | grep -q .; do sleep 0.05; done
    done
    for port in 22 80 443 8080 8081; do
      if nsenter --net=/proc/$outside/ns/net python3 -c "import socket; socket.create_connection(('10.213.0.2', $port), timeout=1)" 2>/dev/null
      then echo "$port open"; else echo "$port closed"; fi
    done
    kill $pids
    """)


def _reachable_ports(spec_text: str, write_spec, tmp_path) -> dict[str, str]:
    need("nft")
    render_tree(load_spec(write_spec("x", spec_text)), tmp_path / "root")
    proc = subprocess.run(["unshare", "--net", "sh", "-c", PROBE, "probe", str(tmp_path / "root/etc/nftables.conf")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split() for line in proc.stdout.splitlines())


CLOSED = {"22": "open", "80": "closed", "443": "closed", "8080": "closed", "8081": "closed"}


@pytest.mark.parametrize("extra, opened", [
    ("", {}),
    (SITE, {"80": "open"}),
    (SITE.replace("':80'", "'https://a.example.org'"), {"80": "open", "443": "open"}),
    (SITE.replace("':80'", "'http://a.example.org:8080'"), {"8080": "open"}),
    ("firewall: {allow: [8081/tcp]}\n", {"8081": "open"}),
])
def test_only_ssh_sites_and_the_specs_ports_are_reachable(write_spec, tmp_path, extra, opened):
    assert _reachable_ports(SPEC + extra, write_spec, tmp_path) == CLOSED | opened


@pytest.mark.parametrize("rule", ["80", "0/tcp", "65536/tcp", "22/sctp", "8080/tcp; flush ruleset"])
def test_bad_firewall_rules_are_refused(write_spec, rule):
    from golden.spec import SpecError
    with pytest.raises(SpecError, match=r"firewall\.allow\[0\]: expected PORT/tcp or PORT/udp"):
        load_spec(write_spec("x", SPEC + f"firewall: {{allow: ['{rule}']}}\n"))
