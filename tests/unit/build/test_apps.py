import json
import os
import subprocess

import pytest

from golden.build.stages.containers import image_ref, mmdebstrap_command
from golden.build.stages.provision import PROVISION_STEPS
from golden.spec import SpecError, load_spec
from golden.build.templates import render_steps, render_tree

from conftest import REPO, need


@pytest.fixture(scope="module")
def infra():
    return load_spec(REPO / "tests/images/infra-apps.yaml")


def _unit(step: str, app: str) -> str:
    start = step.index(f"cat >/etc/containers/systemd/{app}.container <<'UNIT'")
    return step[start:step.index("\nUNIT\n", start)]


def test_quadlet_units_rendered_per_app(infra, tmp_path):
    step = (render_steps(infra, PROVISION_STEPS, tmp_path) / "40-apps.sh").read_text()
    probe = _unit(step, "probe")
    for line in ("User=@UID@:@GID@", "GroupAdd=@PG_GID@", "GroupAdd=@VALKEY_GID@", "Network=none",
                 "Volume=/var/run/postgresql:/var/run/postgresql:ro", "Volume=/var/run/valkey:/var/run/valkey:ro",
                 "DropCapability=all", "NoNewPrivileges=true", "ReadOnly=true",
                 "EnvironmentFile=/etc/golden/credentials/probe.env", "Exec=/usr/local/bin/golden-probe",
                 "WantedBy=multi-user.target", "Image=localhost/golden/probe:latest"):
        assert line in probe.splitlines(), line
    switcher = _unit(step, "switcher")
    assert "User=0:0" in switcher.splitlines()
    assert "AddCapability=CAP_SETUID CAP_SETGID" in switcher.splitlines()
    assert "AddCapability" not in probe and "DropCapability=all" in switcher.splitlines()
    assert "Exec=runuser -u nobody -- /usr/local/bin/golden-probe" in switcher.splitlines()
    assert "authentik.container" not in step  # apps without a container get no unit
    assert "podman import" not in step  # the rootfs stage preloaded the images
    assert subprocess.run(["sh", "-n", str(tmp_path / "40-apps.sh")]).returncode == 0


def test_container_image_built_from_debian_packages(infra, tmp_path):
    image = infra.container_images[0]
    cmd = mmdebstrap_command(infra, image, tmp_path / "probe.tar", [], ["deb http://mirror/debian trixie main"])
    assert "--include=postgresql-client,socat,valkey-tools" in cmd
    assert cmd[-3:] == ["trixie", str(tmp_path / "probe.tar"), "deb http://mirror/debian trixie main"]
    assert image_ref(image) == "localhost/golden/probe:latest"


def test_app_container_must_name_a_known_image(write_spec):
    path = write_spec("x", "name: x\nhostname: x\nbase: {suite: trixie}\n"
                      "apps: [{name: web, container: {image: missing}}]\n")
    with pytest.raises(SpecError, match=r"apps\[0\]\.container\.image: no container_images entry named 'missing'"):
        load_spec(path)


def test_bridge_network_needs_nftables(write_spec):
    app = "apps: [{name: web, container: {image: probe, network: bridge}}]\n"
    images = "container_images: [{name: probe, packages: [socat]}]\n"
    path = write_spec("x", "name: x\nhostname: x\nbase: {suite: trixie}\npackages: [podman]\n" + app + images)
    with pytest.raises(SpecError, match=r"apps\[0\]\.container\.network: bridge needs `nftables` in packages"):
        load_spec(path)
    path.write_text(path.read_text().replace("packages: [podman]", "packages: [podman, nftables]"))
    assert load_spec(path).apps[0].container.network == "bridge"


def test_forward_auth_needs_a_provider(write_spec):
    path = write_spec("x", "name: x\nhostname: x\nbase: {suite: trixie}\n"
                      "caddy: {sites: [{address: ':80', upstream: 'unix//run/a.sock', auth: forward}]}\n")
    with pytest.raises(SpecError, match=r"caddy\.sites\[0\]\.auth: forward auth needs a spec-level `auth` provider"):
        load_spec(path)


def _adapt(caddyfile, tmp_path) -> dict:
    need("caddy")
    proc = subprocess.run(["caddy", "adapt", "--adapter", "caddyfile", "--config", str(caddyfile)],
                          capture_output=True, text=True, env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def test_forward_auth_site_strips_client_identity_before_the_provider(infra, tmp_path):
    render_tree(infra, tmp_path / "root")
    config = _adapt(tmp_path / "root/etc/caddy/Caddyfile", tmp_path)
    handlers = [n for n in _walk(config) if "handler" in n]
    auth = [h for h in handlers if h["handler"] == "reverse_proxy"
            and h.get("rewrite", {}).get("uri") == "/outpost.goauthentik.io/auth/caddy"]
    assert len(auth) == 2  # app.infra.test and the whoami app's site
    assert all(a["upstreams"] == [{"dial": "unix//run/golden-auth/auth.sock"}] for a in auth)
    copied = auth[0]["handle_response"][0]["routes"][0]["handle"][0]["request"]["set"]
    assert set(copied) == {"Remote-User", "Remote-Name", "Remote-Email", "Remote-Groups"}
    # Within every subroute that calls the provider, the deletes come first.
    for node in _walk(config):
        routes = node.get("routes") if isinstance(node, dict) else None
        if not routes:
            continue
        names = [h.get("handler") for r in routes for h in r.get("handle", [])]
        kinds = ["delete" if h.get("handler") == "headers" and "delete" in h.get("request", {}) else
                 "auth" if h in auth else h.get("handler") for r in routes for h in r.get("handle", [])]
        if "auth" in kinds:
            assert kinds.index("auth") > max(i for i, k in enumerate(kinds) if k == "delete"), names
    public = [n for n in _walk(config) if n.get("path") == ["/health", "/static/*"]]
    assert public, "public paths matcher missing"


def test_every_site_drops_client_identity_headers_in_both_spellings(infra, tmp_path):
    render_tree(infra, tmp_path / "root")
    config = _adapt(tmp_path / "root/etc/caddy/Caddyfile", tmp_path)
    wanted = {spelling for name in ("Remote-User", "Remote-Name", "Remote-Email", "Remote-Groups", "X-Remote-User",
                                    "X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups",
                                    "X-Forwarded-Preferred-Username", "X-Authentik-*")
              for spelling in (name, name.replace("-", "_"))}
    routes = [r for srv in config["apps"]["http"]["servers"].values() for r in srv["routes"]]
    assert len(routes) == len(infra.sites) == 3
    for route in routes:
        # Every path to a backend (the site's subroutes) deletes them all first.
        to_backend = [n for n in _walk(route) if isinstance(n.get("routes"), list) and any(
            h.get("handler") == "reverse_proxy" and "rewrite" not in h
            for r in n["routes"] for h in r.get("handle", []))]
        assert to_backend, route
        for subroute in to_backend:
            handlers = [h for r in subroute["routes"] for h in r.get("handle", [])]
            deleted = {d for h in handlers if h.get("handler") == "headers" for d in h["request"].get("delete", [])}
            assert deleted == wanted, (route.get("match"), deleted)


def test_app_site_is_proxied_to_the_apps_own_socket(infra, tmp_path):
    whoami = next(a for a in infra.apps if a.name == "whoami")
    assert whoami.site.upstream == "unix//run/golden-apps/whoami/http.sock"
    step = (render_steps(infra, PROVISION_STEPS, tmp_path) / "40-apps.sh").read_text()
    unit = _unit(step, "whoami").splitlines()
    assert "Volume=/run/golden-apps/whoami:/run/golden-apps/whoami" in unit
    assert "Environment=GOLDEN_HTTP_SOCKET=/run/golden-apps/whoami/http.sock" in unit
    assert "EnvironmentFile=/etc/golden/credentials/whoami.env" not in unit  # no database, no credentials
    assert "d /run/golden-apps/whoami 2750 whoami caddy -" in step.splitlines()
    assert "golden-apps/probe" not in step  # apps without a site get no socket directory

    render_tree(infra, tmp_path / "root")
    config = _adapt(tmp_path / "root/etc/caddy/Caddyfile", tmp_path)
    servers = config["apps"]["http"]["servers"]
    site = [r for srv in servers.values() for r in srv["routes"]
            if r.get("match", [{}])[0].get("host") == ["whoami.infra.test"]]
    assert len(site) == 1
    dials = [u["dial"] for n in _walk(site) for u in n.get("upstreams", [])]
    assert sorted(set(dials)) == ["unix//run/golden-apps/whoami/http.sock", "unix//run/golden-auth/auth.sock"]
    assert [n["path"] for n in _walk(site) if "path" in n and isinstance(n["path"], list)] == [["/health"]]


def test_whoami_answers_with_the_identity_caddy_passed(tmp_path):
    request = b"GET /private?x=1 HTTP/1.1\r\nHost: whoami\r\nremote-user: alice\r\nAccept: */*\r\n\r\n"
    proc = subprocess.run(["sh", str(REPO / "tests/images/containers/golden-whoami"), "reply"], input=request,
                          capture_output=True, env={"GOLDEN_APP": "whoami", "PATH": os.environ["PATH"]})
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert f"Content-Length: {len(body)}".encode() in head.split(b"\r\n")
    assert body == f"app=whoami uid={os.getuid()} path=/private?x=1 remote-user=alice\n".encode()


def test_an_app_that_writes_into_its_image_opts_out_of_read_only(write_spec, tmp_path):
    spec = load_spec(write_spec("x", "name: x\nhostname: x\nbase: {suite: trixie}\ncontainer_images: [{name: c}]\n"
                                     "apps: [{name: a, container: {image: c, read_only: false}}, "
                                     "{name: b, container: {image: c}}]\n"))
    step = (render_steps(spec, PROVISION_STEPS, tmp_path) / "40-apps.sh").read_text()
    assert "ReadOnly=true" not in _unit(step, "a") and "ReadOnly=true" in _unit(step, "b").splitlines()
    assert "DropCapability=all" in _unit(step, "a").splitlines()  # the rest holds either way
