import json
import os
import subprocess

import pytest

from golden.containers import image_ref, mmdebstrap_command
from golden.packer import PROVISION_STEPS
from golden.spec import SpecError, load_spec
from golden.templates import render_steps, render_tree

from conftest import REPO, need


@pytest.fixture(scope="module")
def infra():
    return load_spec(REPO / "images" / "infra.yaml")


def _unit(step: str, app: str) -> str:
    start = step.index(f"cat >/etc/containers/systemd/{app}.container <<'UNIT'")
    return step[start:step.index("\nUNIT\n", start)]


def test_quadlet_units_rendered_per_app(infra, tmp_path):
    step = (render_steps(infra, PROVISION_STEPS, tmp_path) / "40-apps.sh").read_text()
    probe = _unit(step, "probe")
    for line in ("User=@UID@:@GID@", "GroupAdd=@PG_GID@", "GroupAdd=@VALKEY_GID@", "Network=none",
                 "Volume=/var/run/postgresql:/var/run/postgresql", "Volume=/var/run/valkey:/var/run/valkey",
                 "EnvironmentFile=/etc/golden/credentials/probe.env", "Exec=/usr/local/bin/golden-probe",
                 "WantedBy=multi-user.target", "Image=localhost/golden/probe:latest"):
        assert line in probe.splitlines(), line
    switcher = _unit(step, "switcher")
    assert "User=0:0" in switcher.splitlines()
    assert "Exec=runuser -u nobody -- /usr/local/bin/golden-probe" in switcher.splitlines()
    assert "authentik.container" not in step  # apps without a container get no unit
    assert "podman import --quiet - localhost/golden/probe:latest \\\n  </dev/disk/by-id/virtio-golden-probe" in step
    assert subprocess.run(["sh", "-n", str(tmp_path / "40-apps.sh")]).returncode == 0


def test_container_image_built_from_debian_packages(infra, tmp_path):
    image = infra.container_images[0]
    cmd = mmdebstrap_command(infra, image, tmp_path / "probe.tar")
    assert "--include=postgresql-client,valkey-tools" in cmd
    assert cmd[-3:] == ["trixie", str(tmp_path / "probe.tar"), infra.base.mirror]
    assert image_ref(image) == "localhost/golden/probe:latest"


def test_app_container_must_name_a_known_image(write_spec):
    path = write_spec("x", "name: x\nhostname: x\nbase: {suite: trixie}\n"
                      "apps: [{name: web, container: {image: missing}}]\n")
    with pytest.raises(SpecError, match=r"apps\[0\]\.container\.image: no container_images entry named 'missing'"):
        load_spec(path)


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
    assert len(auth) == 1 and auth[0]["upstreams"] == [{"dial": "unix//run/golden-auth/auth.sock"}]
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
