"""Applications as rootful Podman Quadlet services reaching the sockets (ADR-003, ADR-005)."""
import re
import shlex

import pytest

from conftest import as_user, latest_probe_line, wait_until

pytestmark = pytest.mark.fixtures  # the apps of tests/images


def _container_pid(host, name: str) -> int:
    assert wait_until(lambda: host.run(f"sudo podman inspect -f '{{{{.State.Pid}}}}' {name}").stdout.strip()
                      not in ("", "0"), 120)
    return int(host.check_output(f"sudo podman inspect -f '{{{{.State.Pid}}}}' {name}"))


def test_quadlet_unit_is_system_level(host):
    unit = host.file("/etc/containers/systemd/probe.container")
    assert unit.exists
    text = unit.content_string
    assert "WantedBy=multi-user.target" in text and "Network=none" in text
    assert "EnvironmentFile=/etc/golden/credentials/probe.env" in text
    # It starts after the first boot has made the cluster and the credentials.
    assert wait_until(lambda: host.service("probe").is_running, 180)
    assert host.check_output("systemctl show -P ControlGroup probe.service") == "/system.slice/probe.service"


def test_probe_runs_as_its_user_with_client_groups(host, facts):
    pid = _container_pid(host, "probe")
    status = host.check_output(f"sudo cat /proc/{pid}/status")
    uid = re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)
    groups = set(re.search(r"^Groups:\s*(.*)$", status, re.M).group(1).split())
    assert int(uid) == host.user("probe").uid
    assert {str(facts["postgresql_client_group_gid"]), str(facts["valkey_client_group_gid"])} <= groups


def test_probe_reaches_postgresql_and_valkey_through_sockets(host):
    assert latest_probe_line(host, "probe", "postgresql").startswith("postgresql: ok")
    assert latest_probe_line(host, "probe", "valkey") == "valkey: ok"


def test_probe_has_no_network_but_loopback(host):
    pid = _container_pid(host, "probe")
    interfaces = [line.split(":")[0].strip()
                  for line in host.check_output(f"sudo cat /proc/{pid}/net/dev").splitlines()[2:]]
    assert interfaces == ["lo"]


def test_bridge_network_works_for_apps_that_choose_it(host):
    """`network: bridge` (the spec's other choice): netavark sets up the bridge
    and its nftables firewall, and the container gets an interface of its own."""
    run = host.run("sudo podman run --rm --network bridge localhost/golden/probe:latest "
                   "sh -c 'cat /sys/class/net/eth0/operstate; cat /proc/net/route'")
    assert run.rc == 0, run.stderr
    operstate, *routes = run.stdout.splitlines()
    assert operstate == "up"
    assert any(line.split()[:2] == ["eth0", "00000000"] for line in routes[1:])  # a default route via eth0


def test_image_was_preloaded_not_pulled(host):
    images = host.check_output("sudo podman images --format '{{.Repository}}:{{.Tag}} {{.ReadOnly}}'").splitlines()
    # In the read-only store of preloaded images (imported at build time), not in Podman's own.
    assert "localhost/golden/probe:latest true" in images
    assert host.check_output("sudo podman info --format '{{.Store.GraphRoot}}'") == "/var/lib/containers/storage"
    assert host.check_output("sudo podman inspect -f '{{.ImageName}}' probe") == "localhost/golden/probe:latest"
    # The unit never pulls: Quadlet's default pull policy ("missing") found it locally.
    assert "Trying to pull" not in host.check_output("sudo journalctl -u probe -b --no-pager -o cat")


def test_user_switching_container(host, policy):
    """Starts as root with the client groups, drops to nobody: the groups go too."""
    pg = latest_probe_line(host, "switcher", "postgresql")
    valkey = latest_probe_line(host, "switcher", "valkey")
    if policy == "group":
        assert "Permission denied" in pg
        assert "Permission denied" in valkey
    else:  # open: the socket is reachable; its own password lets it in
        assert pg.startswith("postgresql: ok (uid=65534")
        assert valkey == "valkey: ok"


def test_served_app_socket_is_shared_with_caddy_only(host, outsider):
    """apps[].site: the app's socket directory lets in the app and Caddy, no one else."""
    assert host.service("whoami").is_running
    run_dir = "/run/golden-apps/whoami"
    with host.sudo():
        d = host.file(run_dir)
        assert (d.user, d.group, d.mode) == ("whoami", "caddy", 0o2750)
        assert wait_until(lambda: host.file(f"{run_dir}/http.sock").is_socket, 120)
        assert host.file(f"{run_dir}/http.sock").group == "caddy"
    request = f"curl -s --unix-socket {run_dir}/http.sock http://whoami/x"
    uid = host.user("whoami").uid
    assert as_user(host, "caddy", request).stdout.strip() == f"app=whoami uid={uid} path=/x remote-user="
    refused = as_user(host, outsider, request)
    assert refused.rc == 7 and "app=" not in refused.stdout  # curl: could not connect
    assert as_user(host, "probe", request).rc == 7  # another app is refused too


def _status(host, pid: int) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in host.check_output(f"sudo cat /proc/{pid}/status").splitlines()
                if ":\t" in line)


def test_containers_keep_no_capability_but_what_switching_users_needs(host):
    probe = _status(host, _container_pid(host, "probe"))
    assert int(probe["CapBnd"], 16) == 0 and int(probe["CapEff"], 16) == 0
    # The switcher's PID 1 is runuser's parent (root); the app is its child, as nobody.
    runuser = _container_pid(host, "switcher")
    app = _status(host, int(host.check_output(f"sudo cat /proc/{runuser}/task/{runuser}/children").split()[0]))
    for status in (_status(host, runuser), app):
        assert int(status["CapBnd"], 16) == (1 << 6) | (1 << 7)  # CAP_SETGID, CAP_SETUID only
        assert status["NoNewPrivs"].strip() == "1"
    assert app["Uid"].split()[0] == "65534" and int(app["CapEff"], 16) == 0
    assert probe["NoNewPrivs"].strip() == "1"


def test_root_in_a_container_cannot_touch_the_socket_directories(host):
    """The switcher's root (before it switches) is the strongest process an app runs."""
    mounts = host.check_output("sudo podman inspect -f '{{range .Mounts}}{{.Destination}}={{.RW}} {{end}}' switcher")
    assert {"/var/run/postgresql=false", "/var/run/valkey=false"} <= set(mounts.split()), mounts
    for directory, sock in (("/var/run/postgresql", ".s.PGSQL.5432"), ("/var/run/valkey", "valkey.sock")):
        for attempt in (f"touch {directory}/planted", f"rm -f {directory}/{sock}",
                        f"mv {directory}/{sock} {directory}/moved"):
            r = host.run(f"sudo podman exec -u 0 switcher {attempt}")
            assert r.rc != 0 and "Read-only file system" in r.stderr, (attempt, r.stderr)
        with host.sudo():
            assert not host.file(f"{directory}/planted").exists
            assert host.file(f"{directory}/{sock}").is_socket
    root_fs = host.run("sudo podman exec -u 0 switcher touch /usr/planted")
    assert root_fs.rc != 0 and "Read-only file system" in root_fs.stderr  # ReadOnly=true


def test_probe_passes_no_password_on_its_command_line(host):
    """What valkey-cli gets from the probe, seen by a stand-in valkey-cli."""
    shim = ("mkdir -p /tmp/shim && printf '%s\\n' '#!/bin/sh' 'echo \"argv: $*\"' 'echo \"env: $REDISCLI_AUTH\"' "
            ">/tmp/shim/valkey-cli && chmod +x /tmp/shim/valkey-cli && PATH=/tmp/shim:$PATH PROBE_ONCE=1 golden-probe")
    out = host.check_output(f"sudo podman exec probe sh -c {shlex.quote(shim)}")
    password = dict(line.split("=", 1) for line in host.check_output(
        "sudo cat /etc/golden/credentials/probe.env").splitlines())["VALKEY_PASSWORD"]
    assert "argv: -s /var/run/valkey/valkey.sock --user probe" in out
    assert password not in out.split("argv:")[1].split("env:")[0]
    assert f"env: {password}" in out  # REDISCLI_AUTH, readable by its own user only


def test_a_stopped_app_ends_inactive_not_failed(host):
    """`systemctl stop` ends the container with SIGTERM; switcher's runuser
    then exits 143, which Podman passes on. The unit ends clean, as a native
    service that dies of SIGTERM does, not failed."""
    assert wait_until(lambda: host.service("switcher").is_running, 180)
    try:
        host.run("sudo systemctl stop switcher")
        shown = host.check_output("systemctl show -p ActiveState -p Result -p ExecMainStatus switcher")
        assert dict(line.split("=", 1) for line in shown.splitlines()) == {
            "ActiveState": "inactive", "Result": "success", "ExecMainStatus": "143"}
    finally:
        host.run("sudo systemctl reset-failed switcher; sudo systemctl start switcher")
    assert wait_until(lambda: host.service("switcher").is_running, 120)
