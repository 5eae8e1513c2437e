"""The only TCP listeners are sshd (22) and, when the spec has sites, Caddy (80, 443)."""


def _ports(host, proto: str) -> set[str]:
    lines = host.check_output(f"sudo ss -Hn{proto}l").splitlines()
    return {line.split()[3].rsplit(":", 1)[1] for line in lines if line.strip()}


def test_tcp_listeners(host, manifest):
    ports = _ports(host, "t")
    caddy = {"80", "443"} if manifest["sites"] else set()
    assert ports <= {"22"} | caddy
    assert {"22"} | (caddy & {"80"}) <= ports


def test_udp_listeners_only_dhcp_client(host):
    assert _ports(host, "u") <= {"68", "546"}


def test_database_ports_refused_on_loopback(host):
    for port in (5432, 6379, 2019):
        assert host.run(f"timeout 5 bash -c 'echo > /dev/tcp/127.0.0.1/{port}'").rc != 0
