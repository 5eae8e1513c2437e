"""PostgreSQL 17: native, Unix socket only, per-app roles by password."""

import pytest

from conftest import as_app, as_user, main_pid, wait_until

SOCKET = "/var/run/postgresql/.s.PGSQL.5432"
UNIT = "postgresql@17-main.service"


def test_enabled_and_running(host):
    assert host.service("postgresql").is_enabled
    assert host.service(UNIT).is_running


def test_socket_owner_group_mode(host, facts):
    sock = host.file(SOCKET)
    assert sock.is_socket
    assert (sock.user, sock.group) == ("postgres", "postgres-clients")
    assert sock.mode == int(facts["socket_mode"], 8)


def test_no_tcp(host):
    assert host.run("timeout 5 bash -c 'echo > /dev/tcp/127.0.0.1/5432'").rc != 0
    assert host.check_output("sudo -u postgres psql -X -tAc 'SHOW listen_addresses'") == ""


@pytest.mark.fixtures
def test_app_reads_and_writes_its_own_database(host, manifest):
    r = as_app(host, "authentik", 'psql -X -q -v ON_ERROR_STOP=1 -tAc "'
               "CREATE TABLE IF NOT EXISTS t (v text); INSERT INTO t VALUES ('hello'); "
               "SELECT count(*) > 0 FROM t WHERE v = 'hello'; SELECT current_user\"")
    assert r.rc == 0, r.stderr
    assert r.stdout.split() == ["t", "authentik"]


@pytest.mark.fixtures
def test_app_cannot_reach_another_apps_database(host):
    r = as_app(host, "authentik", 'psql -X -d gitea -tAc "SELECT 1"')
    assert r.rc != 0
    assert 'no pg_hba.conf entry for host "[local]", user "authentik", database "gitea"' in r.stderr


@pytest.mark.fixtures
def test_wrong_or_no_password_is_refused(host):
    wrong = as_app(host, "authentik", 'PGPASSWORD=wrong psql -X -tAc "SELECT 1"')
    assert wrong.rc != 0 and 'password authentication failed for user "authentik"' in wrong.stderr
    none = as_app(host, "authentik", 'PGPASSWORD= psql -X -w -tAc "SELECT 1"')
    assert none.rc != 0 and "no password supplied" in none.stderr


@pytest.mark.fixtures
def test_outsider(host, outsider, policy):
    for password in ("", "wrong"):
        r = as_user(host, outsider, f'PGPASSWORD={password} psql -X -w -h /var/run/postgresql -U authentik '
                                     '-d authentik -tAc "SELECT 1"')
        assert r.rc != 0
        if policy == "group":
            assert "Permission denied" in r.stderr
        else:  # open: the socket is reached, the password is the gate
            assert "Permission denied" not in r.stderr
            assert "password" in r.stderr


@pytest.mark.alone  # the other tests use it
def test_comes_back_after_kill(host):
    before = main_pid(host, UNIT)
    assert before > 0
    host.run(f"sudo kill -9 {before}")
    assert wait_until(lambda: main_pid(host, UNIT) not in (0, before)
                      and host.run("sudo -u postgres pg_isready -q").rc == 0, 60)  # crash recovery, under TCG
