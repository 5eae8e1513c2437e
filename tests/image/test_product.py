"""What the image holds is what its spec declares and nothing else: a
product image (images/) has no application, site, auth provider or container
image; a test-only image (tests/images) exactly its fixtures. Read from what
is installed: units, users, roles, ACL users, credentials, container images."""
import json

FIXTURE_NAMES = ["authentik", "gitea", "probe", "switcher", "whoami"]  # the apps of tests/images


def _names(host, command: str) -> set[str]:
    return set(host.check_output(command).split())


def test_quadlet_units_are_the_specs_apps(host, manifest):
    units = _names(host, "sudo find /etc/containers/systemd -name '*.container' -printf '%f\\n'")
    assert units == {f"{a['name']}.container" for a in manifest["apps"] if a["container"]}
    running = _names(host, "sudo podman ps --format '{{.Names}}'")
    assert running <= {a["name"] for a in manifest["apps"]}


def test_app_users_are_the_specs_apps(host, manifest):
    apps = {a["user"] for a in manifest["apps"]}
    for name in FIXTURE_NAMES:
        assert host.user(name).exists == (name in apps), name
    for user in apps:
        assert host.user(user).shell == "/usr/sbin/nologin"


def test_postgresql_roles_and_databases_are_the_specs_apps(host, manifest):
    pg_apps = [a for a in manifest["apps"] if a["postgresql"]]
    psql = "sudo -u postgres psql -X -tA -c"
    assert _names(host, f"{psql} \"SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_'\"") == \
        {"postgres"} | {a["user"] for a in pg_apps}
    assert _names(host, f'{psql} "SELECT datname FROM pg_database"') == \
        {"postgres", "template0", "template1"} | {a["name"] for a in pg_apps}


def test_valkey_users_are_the_specs_apps(host, manifest):
    acl = host.check_output("sudo cat /etc/valkey/users.acl").splitlines()
    assert {line.split()[1] for line in acl if line.startswith("user ")} == \
        {"default"} | {a["user"] for a in manifest["apps"] if a["valkey_db"] is not None}
    assert "user default off" in acl[0]


def test_credentials_are_the_specs_apps(host, manifest):
    files = _names(host, "sudo find /etc/golden/credentials -name '*.env' -printf '%f\\n'")
    assert files == {f"{a['name']}.env" for a in manifest["apps"] if a["postgresql"] or a["valkey_db"] is not None}


def test_container_images_are_the_specs(host, manifest):
    images = _names(host, "sudo podman images --format '{{.Repository}}'")
    declared = {f"localhost/golden/{section.split()[1]}" for section in manifest["container_packages"]}
    assert images == declared
    assert host.run("ls /usr/local/bin/golden-probe /usr/local/bin/golden-whoami").rc != 0  # fixtures, host side


def test_caddy_serves_the_specs_sites_only(host, manifest):
    config = json.loads(host.check_output(
        "sudo curl -sf -H 'Host: ' --unix-socket /run/caddy/admin.sock http://localhost/config/"))
    routes = [r for server in (config.get("apps", {}).get("http", {}).get("servers") or {}).values()
              for r in server.get("routes", [])]
    hosts = {h for r in routes for m in r.get("match", []) for h in m.get("host", [])}
    declared = {s.split("://")[-1].split(":")[0] for s in manifest["sites"]} - {""}
    assert hosts == declared
    assert bool(routes) == bool(manifest["sites"])
