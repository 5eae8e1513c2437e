"""No baked secrets: each host makes its own credentials on first boot; facts exported."""
import json

import pytest

APPS = ["authentik", "gitea"]


@pytest.mark.fixtures
@pytest.mark.parametrize("app", APPS)
def test_credentials_file(host, app, facts):
    env = host.file(f"/etc/golden/credentials/{app}.env")
    assert (env.user, env.group, env.mode) == ("root", app, 0o640)
    values = dict(line.split("=", 1) for line in host.check_output(f"sudo cat {env.path}").splitlines())
    assert values["DATABASE_URL"] == f"postgresql://{app}@/{app}?host=/var/run/postgresql"
    db = {"authentik": 1, "gitea": 2}[app]
    assert values["CACHE_URL"].startswith(f"unix:///var/run/valkey/valkey.sock?db={db}&password=")
    assert len(values["PGPASSWORD"]) == 32 and len(values["VALKEY_PASSWORD"]) == 32
    assert values["VALKEY_KEY_PREFIX"] == f"{app}:"  # the only keys its ACL user may touch
    assert values["PGREQUIREAUTH"] == "scram-sha-256"  # libpq sends no password to a server that asks otherwise


@pytest.mark.fixtures
def test_app_users_and_groups(host, facts):
    for app in APPS:
        user = host.user(app)
        assert user.shell == "/usr/sbin/nologin"
        assert {"postgres-clients", "valkey-clients"} <= set(user.groups)


@pytest.mark.fixtures
def test_outsider_cannot_read_credentials(host, outsider):
    assert host.run(f"sudo -u {outsider} cat /etc/golden/credentials/authentik.env").rc != 0
    assert host.run("sudo -u gitea cat /etc/golden/credentials/authentik.env").rc != 0


@pytest.mark.fixtures
def test_each_app_has_its_own_passwords(host):
    # That they are made per host is in test_first_boot.
    values = [dict(line.split("=", 1) for line in host.check_output(f"sudo cat /etc/golden/credentials/{app}.env")
                   .splitlines()) for app in APPS]
    passwords = [v[key] for v in values for key in ("PGPASSWORD", "VALKEY_PASSWORD")]
    assert len(set(passwords)) == len(passwords)


def test_facts_file_matches_host(host, facts):
    fact = json.loads(host.check_output("cat /etc/ansible/facts.d/golden.fact"))
    assert fact == facts  # the manifest exports the same facts
    assert fact["postgresql_client_group_gid"] == host.group("postgres-clients").gid
    assert fact["valkey_client_group_gid"] == host.group("valkey-clients").gid
    assert fact["postgresql_socket"] == "/var/run/postgresql/.s.PGSQL.5432"
    assert fact["valkey_socket"] == "/var/run/valkey/valkey.sock"
    assert fact["socket_access"] in ("group", "open")
