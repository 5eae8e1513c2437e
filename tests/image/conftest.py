"""testinfra against a VM booted from a built box (run by ./inv test).

The suite runs on --hosts, a VM on its first boot from the box. The built
artifact's manifest from --golden-manifest tells what the image promises.
./inv test runs it in two passes: `-m "not alone"`, on a test-only image two
test files at a time, then `-m alone`: the tests that disturb what others
use (they kill or reload a service, open ports, restart the firewall or the
VM), one after another. Tests marked `settled` run after those (they check
the VM they left), and tests marked `reboot` last: they restart the VM (with
--golden-restart, as ./inv test runs them: halted, then started by UEFI with
Secure Boot, after a first boot by BIOS). Tests marked `fixtures`
need the test-only apps, sites and auth provider of tests/images: they run
on those images only (a product image has none of them, which
test_product.py asserts).
"""
import json
import subprocess
import time
from pathlib import Path

import pytest

from golden.vm.runner import stop_process_group

OUTSIDER = "golden-outsider"  # a local user in no client group


def pytest_addoption(parser):
    parser.addoption("--golden-manifest", required=True, help="manifest.json of the artifact under test")
    parser.addoption("--golden-restart", help="a script that halts the VM and starts it by UEFI with Secure "
                                              "Boot (./inv test passes one); without it the reboot is in-guest")


def pytest_configure(config):
    config.addinivalue_line("markers", "alone: disturbs what other tests use (kills a service, restarts the VM); "
                                       "./inv test runs these after the others, one at a time")
    config.addinivalue_line("markers", "settled: checks the VM after the tests that disturb it; runs after them, "
                                       "before the reboot")
    config.addinivalue_line("markers", "reboot: reboots the VM; runs after every other test")
    config.addinivalue_line("markers", "fixtures: needs the fixtures of a test-only image (tests/images)")


def pytest_collection_modifyitems(config, items):
    with open(config.getoption("golden_manifest")) as f:
        test_only = json.load(f).get("test_only", False)
    if not test_only:
        deselected = [item for item in items if item.get_closest_marker("fixtures")]
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("fixtures")]
    items.sort(key=lambda item: (item.get_closest_marker("reboot") is not None,
                                 item.get_closest_marker("settled") is not None))


_BOOT_FINISHED = []  # once per pytest process (testinfra's host is per module)


@pytest.fixture(scope="module", autouse=True)
def booted(host):
    """Vagrant hands the VM over once SSH answers; the first boot's own units
    (a host's identity and credentials) may still be at work. Every test
    sees the boot finished, whichever test file a worker starts with."""
    if not _BOOT_FINISHED:
        state = host.run("timeout 600 systemctl is-system-running --wait").stdout.strip()
        assert state in ("running", "degraded"), f"the VM's boot did not finish: {state!r}"
        _BOOT_FINISHED.append(state)


@pytest.fixture(scope="session")
def manifest(request):
    with open(request.config.getoption("golden_manifest")) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def facts(manifest):
    return manifest["facts"]


@pytest.fixture(scope="session")
def policy(facts):
    return facts["socket_access"]


@pytest.fixture
def outsider(host):
    """A user outside postgres-clients and valkey-clients."""
    # Under a lock: two test files may ask at once.
    host.run(f"sudo flock /run/golden-outsider.lock sh -c 'id {OUTSIDER} || useradd --system --shell /bin/sh {OUTSIDER}'")
    return OUTSIDER


def as_app(host, app: str, command: str):
    """Runs command as the app's user with its credentials file in the environment."""
    script = f"env $(cat /etc/golden/credentials/{app}.env) sh -c {_quote(command)}"
    return host.run(f"sudo -u {app} sh -c {_quote(script)}")


def as_user(host, user: str, command: str):
    return host.run(f"sudo -u {user} sh -c {_quote(command)}")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


# valkey-cli as an app, with the credentials from its environment file.
VALKEY_CLI = ('valkey-cli -s "$VALKEY_SOCKET" --user "$VALKEY_USERNAME" --pass "$VALKEY_PASSWORD" '
              '--no-auth-warning -n "$VALKEY_DB"')


def latest_probe_line(host, unit: str, service: str) -> str:
    """A probe container's most recent line about one service ("postgresql: ok")."""
    def line():
        return host.check_output(f"sudo journalctl -u {unit} -b --no-pager -o cat | grep '^{service}: ' | tail -n 1")
    assert wait_until(lambda: line() != "", 120), f"{unit} printed nothing about {service}"
    return line()


def main_pid(host, unit: str) -> int:
    return int(host.check_output(f"systemctl show -P MainPID {unit}"))


def wait_until(predicate, seconds: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def start_unix_server(host, unit: str, source: str, sock: str) -> None:
    """Runs a small Python server (source) on the Unix socket sock as a
    transient systemd unit; returns once the new server has bound it."""
    host.run(f"sudo systemctl stop {unit}; sudo systemctl reset-failed {unit}")
    host.run_test(f"sudo rm -f {sock} && sudo install -d -m 0755 {sock.rsplit('/', 1)[0]}")
    host.run(f"sudo tee /tmp/{unit}.py >/dev/null <<'PY'\n{source}\nPY")
    host.run_test(f"sudo systemd-run --unit {unit} python3 /tmp/{unit}.py {sock}")
    with host.sudo():
        assert wait_until(lambda: host.file(sock).is_socket, 20), f"{unit} did not bind {sock}"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(unreadable: {exc})"


# The restart script: Vagrant's graceful halt (60 s), the wait for shut off
# (300 s), then a boot by UEFI (the Vagrantfile's boot_timeout, 900 s).
RESTART_SECONDS = 1500


def _drop_connection(host) -> None:
    client = host.backend.__dict__.pop("client", None)  # testinfra's cached paramiko client
    if client:
        client.close()


def _restart(script: str) -> None:
    """Runs the restart script; on failure or timeout, fails with the end of
    restart.log, which it writes beside itself (the work directory). Timed
    out or interrupted, its whole process group is stopped: no vagrant is
    left holding the machine."""
    proc = subprocess.Popen([script], start_new_session=True)
    try:
        rc = proc.wait(timeout=RESTART_SECONDS)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        if proc.poll() is None:
            stop_process_group(proc, grace=30)
    why = f"did not finish in {RESTART_SECONDS} s" if rc is None else f"failed (exit {rc})"
    assert rc == 0, f"{script} {why}; restart.log ends:\n{_tail(Path(script).parent / 'restart.log')}"


def reboot(host, restart: str | None = None, timeout: float = 300) -> None:
    """Reboots the VM (restart: a script that halts it and starts it again,
    e.g. with other firmware) and reconnects this host's backend."""
    boot_id = host.check_output("cat /proc/sys/kernel/random/boot_id")
    try:
        if restart:
            _restart(restart)
        else:
            host.run("sudo systemd-run --on-active=2 /bin/systemctl reboot")
            time.sleep(5)
    finally:
        # The connection of the last boot: a later test reusing it after a failed
        # restart would wait for TCP to give up on a VM that is gone (15 min).
        _drop_connection(host)

    def back():
        _drop_connection(host)
        try:
            return host.run("cat /proc/sys/kernel/random/boot_id").stdout.strip() not in ("", boot_id)
        except Exception:
            return False
    assert wait_until(back, timeout, step=1), "VM did not come back after reboot"
    assert wait_until(lambda: host.run("systemctl is-system-running --wait").stdout.strip()
                      in ("running", "degraded"), 120)
