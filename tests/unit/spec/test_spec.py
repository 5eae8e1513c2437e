import subprocess
from pathlib import Path

import pytest

from golden.spec import ImageSpec, SpecError, is_test_spec, load_spec, select_specs, spec_warnings

from conftest import REPO


def test_repository_specs_load():
    specs = select_specs(None)
    assert "infra" in [s.name for s in specs]
    infra = next(s for s in specs if s.name == "infra")
    assert isinstance(infra, ImageSpec)
    assert infra.base.suite == "trixie"
    assert infra.disk.size_bytes >= 2 << 30
    assert len(infra.sha256) == 64


def test_good_spec_gets_defaults(write_spec):
    spec = load_spec(write_spec("web"))
    assert spec.base.mirror == "http://deb.debian.org/debian"
    assert spec.base.security_mirror == "http://deb.debian.org/debian-security"
    assert (spec.base.updates, spec.base.security, spec.base.snapshot) == (True, True, "")
    assert spec.packages == ["curl"]
    assert spec.disk.size_bytes == 2 << 30
    assert spec.vm.memory == 1024


@pytest.mark.parametrize("body, message", [
    ("name: x\nhostname: x\nbase: {suite: 13}\n", "base.suite: expected a string"),
    ("name: x\nhostname: x\n", "base: missing required field"),
    ("name: x\nhostname: x\nbase: {}\n", "base.suite: missing required field"),
    ("name: x\nhostname: x\nbase: {suite: trixie, colour: red}\n", "base.colour: unknown key"),
    ("name: x\nhostname: x\nbase: {suite: trixie}\nextra: 1\n", "extra: unknown key"),
    ("name: x\nhostname: x\nbase: {suite: trixie}\npackages: curl\n", "packages: expected a list"),
    ("name: x\nhostname: x\nbase: {suite: trixie}\npackages: [curl, 3]\n", "packages[1]: expected a string"),
    ("name: x\nhostname: x\nbase: {suite: trixie}\nkernel: rt\n", "kernel: expected one of generic, cloud"),
    ("name: x\nhostname: x\nbase: {suite: trixie}\noutputs: [vmdk]\n", "outputs: expected qcow2 and box, and any of"),
    ("name: x\nhostname: x\nbase: {suite: trixie}\noutputs: [qcow2, box, iso]\n", "outputs: expected qcow2 and box"),
    ("name: x\nhostname: x\nbase: {suite: trixie}\noutputs: [qcow2, box, raw, raw]\n", "outputs: expected qcow2 and"),
    ("name: x\nhostname: x\nbase: {suite: trixie}\noutputs: qcow2\n", "outputs: expected a list"),
    ("name: x\nhostname: x\nbase: {suite: trixie}\ndisk: {size: 4T}\n", "disk.size: expected a size like '4G' or '512M'"),
    ("name: x\nhostname: x\nbase: {suite: trixie}\nvm: {memory: true}\n", "vm.memory: expected an integer"),
    ("name: x\nhostname: x\nbase: {suite: trixie}\nvm: {cpus: 0}\n", "vm.cpus: expected at least 1"),
    ("name: x\nhostname: Bad_Host\nbase: {suite: trixie}\n", "hostname: expected a valid hostname"),
    ("name: x\nhostname: x\nbase: {suite: trixie, mirror: ftp://x}\n", "base.mirror: expected an http(s):// or file:// URL"),
    ("name: x\nhostname: x\nbase: {suite: trixie, security_mirror: 'http://x/a b'}\n",
     "base.security_mirror: expected an http(s):// or file:// URL"),
    ("name: x\nhostname: x\nbase: {suite: 'trixie main'}\n", "base.suite: expected a suite name like 'trixie'"),
    ("name: x\nhostname: x\nbase: {suite: trixie, components: [main, 'contrib\\n']}\n",
     "base.components[1]: expected a component name like 'main'"),
    ("name: x\nhostname: x\nbase: {suite: trixie, updates: 'no'}\n", "base.updates: expected true or false"),
    ("name: x\nhostname: x\nbase: {suite: trixie, snapshot: '2026-11-30'}\n",
     "base.snapshot: expected a UTC time like 20261130T000000Z (YYYYMMDDTHHMMSSZ)"),
    ("name: x\nhostname: x\nbase: {suite: trixie, snapshot: 20261332T000000Z}\n",
     "base.snapshot: expected a UTC time like 20261130T000000Z (YYYYMMDDTHHMMSSZ)"),
    ("name: x\nhostname: x\nbase: {suite: trixie}\ncaddy: {sites: [{address: ':80', upstream: 'unix//run/a.sock', "
     "public_paths: [health]}]}\n", "caddy.sites[0].public_paths[0]: expected a path like /health or /static/*"),
    ("name: y\nhostname: x\nbase: {suite: trixie}\n", "name: must match the file name ('x')"),
    ("- a list\n", "expected a mapping at the top level"),
    ("name: [unclosed\n", "invalid YAML: expected ',' or ']'"),
])
def test_bad_spec_is_refused_naming_file_and_field(write_spec, body, message):
    path = write_spec("x", body)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") or text.startswith("images/x.yaml: ") or str(path) in text
    assert message in text
    assert "\n" not in text


def test_unknown_image_name_is_refused(images_dir, write_spec):
    write_spec("web")
    with pytest.raises(SpecError, match=r"unknown image 'nope' \(known: web\)"):
        select_specs("nope", images_dir)


def test_selection_validates_every_spec(images_dir, write_spec):
    write_spec("web")
    write_spec("broken", "name: broken\nhostname: b\nbase: {suite: 1}\n")
    with pytest.raises(SpecError, match="broken.yaml: base.suite: expected a string"):
        select_specs(None, images_dir)


def test_cli_refuses_bad_spec_with_one_line_and_builds_nothing(tmp_path, write_spec, images_dir):
    write_spec("x", "name: x\nhostname: x\nbase: {suite: 13}\n")
    artifacts = tmp_path / "artifacts"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "GOLDEN_IMAGES": str(images_dir),
           "GOLDEN_ARTIFACTS": str(artifacts), "GOLDEN_CACHE": str(tmp_path / "cache")}
    for args in (["build", "--all"], ["build", "--image", "x"]):
        proc = subprocess.run([str(REPO / "inv"), *args], cwd=REPO, env=env, capture_output=True, text=True)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert lines == [f"error: {images_dir}/x.yaml: base.suite: expected a string"]
    proc = subprocess.run([str(REPO / "inv"), "build", "--all", "--image", "x"], cwd=REPO, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.strip() == "error: --image and --all: choose one"
    assert not artifacts.exists()


def test_cli_refuses_unknown_image(tmp_path):
    proc = subprocess.run([str(REPO / "inv"), "build", "--image", "nope"], cwd=REPO,
                          capture_output=True, text=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                               "GOLDEN_ARTIFACTS": str(tmp_path / "a")})
    assert proc.returncode != 0
    assert "unknown image 'nope'" in proc.stderr
    assert not (tmp_path / "a").exists()


def test_extends_shares_the_parent_spec(write_spec):
    write_spec("base", "name: base\nhostname: host\nbase: {suite: trixie}\npackages: [curl]\n"
               "apps: [{name: gitea, postgresql: true, valkey_db: 2}]\n")
    child = load_spec(write_spec("child", "name: child\nextends: base\nsockets: {access: open}\n"))
    assert child.name == "child" and child.hostname == "host" and child.packages == ["curl"]
    assert child.sockets.access == "open" and child.sockets.mode == "0777"
    assert child.apps[0].groups == ["postgres-clients", "valkey-clients"]
    parent = load_spec(Path(child.path).with_name("base.yaml"))
    assert parent.sockets.access == "group" and parent.sockets.mode == "0770"
    assert child.sha256 != parent.sha256


@pytest.mark.parametrize("files, message", [
    ({"a": "name: a\nextends: b\n", "b": "name: b\nextends: a\n"}, "extends: circular chain through"),
    ({"a": "name: a\nextends: missing\n"}, "a.yaml: extends: no image spec 'missing'"),
    ({"a": "name: a\nextends: b\n", "b": "name: b\nhostname: h\nbase: {suite: 7}\n"},
     "b.yaml: base.suite: expected a string"),
    ({"a": "name: a\nhostname: h\nbase: {suite: t}\nsockets: {access: world}\n"},
     "a.yaml: sockets.access: expected one of group, open"),
    ({"a": "name: a\nhostname: h\nbase: {suite: t}\napps: [{name: x, valkey_db: 16}]\n"},
     "a.yaml: apps[0].valkey_db: expected a number from 0 to 15"),
    ({"a": "name: a\nhostname: h\nbase: {suite: t}\napps: [{name: postgres}]\n"},
     "a.yaml: apps[0].name: expected lowercase"),
    ({"a": "name: a\nhostname: h\nbase: {suite: t}\napps: [{name: x}, {name: x}]\n"},
     "a.yaml: apps: application names must be unique"),
    ({"a": "name: a\nhostname: h\nbase: {suite: t}\napps: [{name: x, user: y}, {name: y}]\n"},
     "a.yaml: apps: application users must be unique"),
    ({"a": "name: a\nhostname: h\nbase: {suite: t}\napps: [{name: x, user: caddy}]\n"},
     "a.yaml: apps[0].user: expected lowercase"),
    ({"a": "name: a\nhostname: h\nbase: {suite: t}\ncaddy: {sites: [{address: ':80', upstream: 'localhost:8080'}]}\n"},
     "a.yaml: caddy.sites[0].upstream: expected a Unix socket upstream"),
    ({"a": "name: a\nhostname: h\nbase: {suite: t}\ncaddy: {sites: [{address: ':80'}]}\n"},
     "a.yaml: caddy.sites[0].upstream: missing required field"),
    ({"a": "name: a\nhostname: h\nbase: {suite: t}\napps: [{name: x, site: {address: ':80', upstream: 'x:1'}}]\n"},
     "a.yaml: apps[0].site.upstream: expected a Unix socket upstream"),
    ({"a": "name: a\nhostname: h\nbase: {suite: t}\napps: [{name: x, site: {address: ':80', auth: forward}}]\n"},
     "a.yaml: apps[0].site.auth: forward auth needs a spec-level `auth` provider"),
    ({"a": "name: a\nhostname: h\nbase: {suite: t}\napps: [{name: x, site: {address: ':80', auth: basic}}]\n"},
     "a.yaml: apps[0].site.auth: expected one of none, forward"),
    ({"a": "name: a\nhostname: h\nbase: {suite: t}\ncaddy: {sites: [{address: ':80', upstream: 'unix//run/a/a.sock'}]}\n"
           "apps: [{name: x, site: {address: ':80'}}]\n"},
     "a.yaml: apps[0].site.address: ':80' is already a site of this image"),
])
def test_bad_extended_or_service_specs(write_spec, files, message):
    for name, body in files.items():
        write_spec(name, body)
    with pytest.raises(SpecError) as err:
        load_spec(write_spec("a", files["a"]))
    assert message in str(err.value)


def test_app_user_defaults_to_its_name_and_can_differ(write_spec, tmp_path):
    spec = load_spec(write_spec("x", "name: x\nhostname: x\nbase: {suite: trixie}\n"
                                "apps: [{name: nextcloud, user: www-app, postgresql: true}, {name: gitea}]\n"))
    assert [(a.name, a.user) for a in spec.apps] == [("nextcloud", "www-app"), ("gitea", "gitea")]
    from golden.build.templates import render_tree
    render_tree(spec, tmp_path / "root")
    hba = (tmp_path / "root/etc/postgresql/17/main/pg_hba.conf").read_text()
    assert "local   nextcloud       www-app         scram-sha-256" in hba


APP = "name: x\nhostname: x\nbase: {suite: trixie}\ncontainer_images: [{name: c}]\n"
AUTH = "auth: {endpoint: 'unix//run/auth/auth.sock'}\n"


@pytest.mark.parametrize("body, message", [
    # Quadlet: a newline would add any directive to the unit.
    (APP + "apps: [{name: a, container: {image: c, exec: \"/bin/true\\nPodmanArgs=--privileged\"}}]\n",
     "apps[0].container.exec: control characters (newline, tab, ...) are not allowed"),
    (APP + "apps: [{name: a, container: {image: c, exec: '/bin/sh -c \"id; rm -rf /\"'}}]\n",
     "apps[0].container.exec: expected a command of letters"),
    (APP + "apps: [{name: a, container: {image: c, exec: '/bin/echo %h'}}]\n", "apps[0].container.exec: expected"),
    (APP + "apps: [{name: a, container: {image: c, environment: {A: 'two words'}}}]\n",
     "apps[0].container.environment: expected NAME: value pairs"),
    (APP + "apps: [{name: a, container: {image: c, environment: {A: \"x\\nPodmanArgs=--privileged\"}}}]\n",
     "apps[0].container.environment.A: control characters"),
    (APP + "apps: [{name: a, container: {image: c, environment: {'A B': x}}}]\n",
     "apps[0].container.environment: expected NAME: value pairs"),
    (APP + "apps: [{name: a, container: {image: c, switch_to: 'root; id'}}]\n",
     "apps[0].container.switch_to: expected a user name"),
    # The Caddyfile: braces or newlines in an address would add whole sites.
    (APP + "caddy: {sites: [{address: \"http://a.test {\\n}\\n:9000 {\", upstream: 'unix//run/a/a.sock'}]}\n",
     "caddy.sites[0].address: control characters"),
    (APP + "caddy: {sites: [{address: 'http://a.test {', upstream: 'unix//run/a/a.sock'}]}\n",
     "caddy.sites[0].address: expected a site address"),
    (APP + "caddy: {sites: [{address: 'http://', upstream: 'unix//run/a/a.sock'}]}\n",
     "caddy.sites[0].address: expected a site address"),
    (APP + "caddy: {sites: [{address: ':80', upstream: 'unix//run/caddy/admin.sock'}]}\n",
     "caddy.sites[0].upstream: expected a Unix socket upstream (unix//path, not under /run/caddy)"),
    (APP + "caddy: {sites: [{address: ':80', upstream: 'unix//run/a/../caddy/admin.sock'}]}\n",
     "caddy.sites[0].upstream: expected a Unix socket upstream"),
    (APP + "caddy: {sites: [{address: ':80', upstream: 'localhost:2019'}]}\n",
     "caddy.sites[0].upstream: expected a Unix socket upstream"),
    (APP + AUTH + "caddy: {sites: [{address: ':80', upstream: 'unix//run/a/a.sock', auth: forward, "
     "public_paths: ['/*']}]}\n", "caddy.sites[0].public_paths[0]: expected a path like /health"),
    (APP + AUTH + "caddy: {sites: [{address: ':80', upstream: 'unix//run/a/a.sock', auth: forward, "
     "public_paths: ['/a b']}]}\n", "caddy.sites[0].public_paths[0]: expected a path like /health"),
    (APP + "auth: {endpoint: 'unix//run/caddy/admin.sock'}\n", "auth.endpoint: expected unix//path"),
    (APP + "auth: {endpoint: 'unix//run/a.sock', uri: '/auth {'}\n", "auth.uri: expected a path"),
    (APP + "auth: {endpoint: 'unix//run/a.sock', copy_headers: ['Remote-User>X-Admin']}\n",
     "auth.copy_headers[0]: expected a header name"),
    # An app's site is served from its own directory only.
    (APP + "apps: [{name: a, site: {address: 'http://a.test', upstream: 'unix//run/golden-apps/b/http.sock'}}]\n",
     "apps[0].site.upstream: expected a socket under the app's own directory, unix//run/golden-apps/a/"),
    # pg_hba keywords, PostgreSQL's own databases, existing system accounts.
    (APP + "apps: [{name: all, postgresql: true}]\n", "apps[0].name: expected lowercase letters, digits and '-', "
                                                      "not a system account or a PostgreSQL/Valkey keyword"),
    (APP + "apps: [{name: www-data}]\n", "apps[0].name: expected lowercase letters"),
    (APP + "apps: [{name: a, user: template1}]\n", "apps[0].user: expected lowercase letters"),
    (APP + "apps: [{name: systemd-network}]\n", "apps[0].name: expected lowercase letters"),
    (APP + "apps: [{name: default, valkey_db: 1}]\n", "apps[0].name: expected lowercase letters"),
    # Package names reach mmdebstrap's command line.
    (APP + "packages: ['curl,--hook-dir=/tmp']\n", "packages[0]: expected a Debian package name"),
    (APP.replace("[{name: c}]", "[{name: c, packages: ['-x']}]"), "container_images[0].packages[0]: expected"),
    ("name: x\nhostname: x\ndescription: \"two\\nlines\"\nbase: {suite: trixie}\n",
     "description: control characters"),
    # One backend behind forward auth on one site and open on another (the old
    # infra.yaml's `:80` catch-all): any other Host went around the auth.
    (APP + AUTH + "caddy: {sites: [{address: ':80', upstream: 'unix//run/web/web.sock'}, {address: "
     "'http://app.test', upstream: 'unix//run/web/web.sock', auth: forward}]}\n",
     "caddy.sites[0].upstream: unix//run/web/web.sock is served with forward auth by another site; serving "
     "it without auth here would bypass it"),
    (APP + AUTH + "apps: [{name: a, site: {address: 'http://a.test', auth: forward}}]\ncaddy: {sites: [{address: "
     "':80', upstream: 'unix//run/golden-apps/a/http.sock'}]}\n", "caddy.sites[0].upstream: unix//run/golden-apps/a"),
    # ... also when spelled another way.
    (APP + AUTH + "caddy: {sites: [{address: ':80', upstream: 'unix//run/web/./web.sock'}, {address: "
     "'http://app.test', upstream: 'unix//run/web/web.sock', auth: forward}]}\n",
     "caddy.sites[0].upstream: expected a Unix socket upstream"),
    # Container programs: files of the repository only.
    (APP.replace("[{name: c}]", "[{name: c, programs: ['../../etc/shadow']}]"),
     "container_images[0].programs[0]: expected a path inside the repository"),
    (APP.replace("[{name: c}]", "[{name: c, programs: ['/etc/shadow']}]"),
     "container_images[0].programs[0]: expected a path inside the repository"),
    (APP.replace("[{name: c}]", "[{name: c, programs: ['tests/images/containers/nope']}]"),
     "container_images[0].programs[0]: no file 'tests/images/containers/nope' in the repository"),
    (APP.replace("[{name: c}]", "[{name: c, programs: ['tests/images']}]"),
     "container_images[0].programs[0]: no file 'tests/images' in the repository"),
])
def test_spec_text_that_would_inject_is_refused(write_spec, body, message):
    path = write_spec("x", body)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"{path}: ") or str(err.value).startswith("images/x.yaml: ")


def test_product_images_hold_no_fixture():
    """images/ is what users deploy: the infrastructure host, no app, site or auth provider."""
    products = select_specs(None)
    assert sorted(s.name for s in products) == ["infra", "infra-open"]
    for spec in products:
        assert (spec.apps, spec.sites, spec.auth, spec.container_images) == ([], [], None, [])
        assert not is_test_spec(spec)


def test_test_only_specs_are_products_plus_fixtures():
    specs = {s.name: s for s in select_specs(None, tests=True)}
    assert sorted(specs) == ["infra", "infra-apps", "infra-open", "infra-open-apps"]
    assert [is_test_spec(specs[n]) for n in ("infra-apps", "infra-open-apps")] == [True, True]
    fixtures = ("apps", "caddy", "container_images", "auth", "firewall")
    assert all(specs["infra-apps"].to_dict()[f] for f in fixtures)  # the rules above accept them
    for test_spec, product in (("infra-apps", "infra"), ("infra-open-apps", "infra-open")):
        def own(name):
            data = specs[name].to_dict()
            return {k: v for k, v in data.items() if k not in fixtures + ("name", "hostname", "description",
                                                                           "extends", "kernel", "outputs")}
        assert own(test_spec) == own(product)  # the product itself, plus the fixtures
    # The products boot the generic kernel; the test-only images the cloud one, so that both are validated.
    assert [specs[n].kernel for n in ("infra", "infra-open", "infra-apps", "infra-open-apps")] == \
        ["generic", "generic", "cloud", "cloud"]
    assert {f: specs["infra-open-apps"].to_dict()[f] for f in fixtures} == \
        {f: specs["infra-apps"].to_dict()[f] for f in fixtures}


def test_a_test_only_spec_is_selected_by_name_only_with_tests():
    with pytest.raises(SpecError, match="unknown image 'infra-apps' \\(known: infra, infra-open\\)"):
        select_specs("infra-apps")
    assert [s.name for s in select_specs("infra-apps", tests=True)] == ["infra-apps"]


@pytest.mark.parametrize("address, warned", [
    ("http://app.example.org", True), (":80", True), ("app.example.org:80", True), (":8080", True),
    ("http://127.evil.example:80", True),
    ("https://app.example.org", False), ("app.example.org", False), ("app.example.org:8443", False),
    ("http://localhost", False), ("http://app.localhost:8080", False), ("127.0.0.1:80", False),
])
def test_forward_auth_over_plain_http_is_warned_unless_local(write_spec, address, warned):
    spec = load_spec(write_spec("x", APP + AUTH + f"caddy: {{sites: [{{address: '{address}', "
                                "upstream: 'unix//run/a/a.sock', auth: forward}]}\n"))
    warnings = spec_warnings(spec)
    assert len(warnings) == warned
    if warned:
        assert warnings[0].startswith("warning: ") and f"site {address}: forward auth over plain HTTP" in warnings[0]
    unauthenticated = load_spec(write_spec("x", APP + f"caddy: {{sites: [{{address: '{address}', "
                                                  "upstream: 'unix//run/a/a.sock'}]}\n"))
    assert spec_warnings(unauthenticated) == []
