"""Valkey 8.1: native, Unix socket only, ACL user per app, no default user."""
import pytest

from conftest import VALKEY_CLI, as_app, as_user, main_pid, wait_until

SOCKET = "/var/run/valkey/valkey.sock"
UNIT = "valkey-server.service"
CLI = VALKEY_CLI


def test_enabled_and_running(host):
    assert host.service(UNIT).is_enabled
    assert host.service(UNIT).is_running


def test_socket_owner_group_mode_without_socket_fix(host, facts):
    sock = host.file(SOCKET)
    assert sock.is_socket
    assert (sock.user, sock.group) == ("valkey", "valkey-clients")
    assert sock.mode == int(facts["socket_mode"], 8)
    assert not host.file("/etc/systemd/system/valkey-socket-fix.service").exists


def test_no_tcp(host):
    assert host.run("timeout 5 bash -c 'echo > /dev/tcp/127.0.0.1/6379'").rc != 0


@pytest.mark.fixtures
def test_app_talks_to_valkey_with_its_password_under_its_prefix(host):
    r = as_app(host, "authentik", f'{CLI} SET "${{VALKEY_KEY_PREFIX}}golden-key" hello && '
                                  f'{CLI} GET "${{VALKEY_KEY_PREFIX}}golden-key" && {CLI} ACL WHOAMI && '
                                  f'{CLI} CLIENT SETNAME authentik-web && echo "$VALKEY_KEY_PREFIX"')
    assert r.rc == 0, r.stderr
    assert r.stdout.split() == ["OK", "hello", "authentik", "OK", "authentik:"]


@pytest.mark.fixtures
def test_one_app_cannot_touch_another_apps_keys(host):
    assert as_app(host, "gitea", f"{CLI} SET gitea:secret s3").stdout.strip() == "OK"
    for command in ("GET gitea:secret", "SET gitea:secret x", "DEL gitea:secret", "SET unprefixed x",
                    "SUBSCRIBE gitea:events"):
        r = as_app(host, "authentik", f"timeout 5 {CLI} {command}")
        assert "NOPERM" in r.stdout + r.stderr, (command, r.stdout, r.stderr)
    assert as_app(host, "gitea", f"{CLI} GET gitea:secret").stdout.strip() == "s3"


@pytest.mark.fixtures
def test_no_app_reaches_past_its_keys(host):
    for command in ("FLUSHALL", "FLUSHDB", "SWAPDB 1 2", "KEYS '*'", "MIGRATE 127.0.0.1 6379 gitea:secret 0 100",
                    "CONFIG GET port", "DEBUG SLEEP 0", "FUNCTION FLUSH", "SCRIPT FLUSH", "SHUTDOWN"):
        r = as_app(host, "authentik", f"{CLI} {command}")
        # DEBUG is also off server-wide (enable-debug-command), which Valkey checks first.
        assert "NOPERM" in r.stdout + r.stderr or "DEBUG command not allowed" in r.stdout, (command, r.stdout)
    assert as_app(host, "gitea", f"{CLI} GET gitea:secret").stdout.strip() == "s3"


@pytest.mark.fixtures
def test_app_is_not_admin(host):
    r = as_app(host, "authentik", f"{CLI} CONFIG GET port")
    assert "NOPERM" in r.stdout


@pytest.mark.fixtures
def test_wrong_password_and_default_user_refused(host):
    wrong = as_app(host, "authentik", 'valkey-cli -s "$VALKEY_SOCKET" --user "$VALKEY_USERNAME" --pass wrong '
                                      "--no-auth-warning PING")
    assert "WRONGPASS" in wrong.stderr and "PONG" not in wrong.stdout
    anonymous = as_app(host, "authentik", 'valkey-cli -s "$VALKEY_SOCKET" PING')
    assert "NOAUTH" in anonymous.stdout


@pytest.mark.fixtures
def test_outsider(host, outsider, policy):
    for auth in ("", "--user authentik --pass wrong --no-auth-warning"):
        r = as_user(host, outsider, f"valkey-cli -s {SOCKET} {auth} PING")
        assert "PONG" not in r.stdout
        if policy == "group":
            assert "Permission denied" in r.stdout + r.stderr
        else:
            assert "Permission denied" not in r.stdout + r.stderr
            assert "NOAUTH" in r.stdout or "WRONGPASS" in r.stderr


@pytest.mark.alone  # the other tests use it
def test_comes_back_after_kill(host):
    before = main_pid(host, UNIT)
    assert before > 0
    host.run(f"sudo kill -9 {before}")
    assert wait_until(lambda: main_pid(host, UNIT) not in (0, before) and host.file(SOCKET).is_socket, 15)
