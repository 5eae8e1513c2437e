"""Caddy 2.6: sites on 80/443 to Unix-socket upstreams, admin API on a Unix socket."""
import json

import pytest

from conftest import main_pid, start_unix_server, wait_until

ADMIN = "/run/caddy/admin.sock"
UNIT = "caddy.service"
UPSTREAM_DIR = "/run/web"
# A tiny backend on the site's Unix-socket upstream, started by the test: it
# names any identity header that reached it.
BACKEND = r"""
import http.server, os, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        seen = sorted(k for k in self.headers if k.lower().replace("_", "-").startswith("remote-"))
        body = ("hello from the unix socket backend%s\n" % "".join(" " + k for k in seen)).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def address_string(self): return "unix"
class S(socketserver.UnixStreamServer):
    pass
path = sys.argv[1]
if os.path.exists(path): os.unlink(path)
srv = S(path, H); os.chmod(path, 0o666); srv.serve_forever()
"""


def test_enabled_and_running(host):
    assert host.service(UNIT).is_enabled
    assert host.service(UNIT).is_running


def test_admin_api_only_on_unix_socket(host):
    with host.sudo():
        sock = host.file(ADMIN)
        assert sock.is_socket
        assert (sock.user, sock.group, sock.mode) == ("caddy", "caddy", 0o770)  # from the unit's UMask
    assert host.run("timeout 5 bash -c 'echo > /dev/tcp/127.0.0.1/2019'").rc != 0
    config = host.check_output(f"sudo curl -sf -H 'Host: ' --unix-socket {ADMIN} http://localhost/config/")
    assert '"listen":"unix//run/caddy/admin.sock"' in config.replace(" ", "")


def test_unprivileged_user_cannot_use_admin_api(host, outsider):
    r = host.run(f"sudo -u {outsider} curl -sS -H 'Host: ' --unix-socket {ADMIN} http://localhost/config/")
    assert r.rc == 7  # curl: could not connect (no access to /run/caddy)


def test_no_site_and_nothing_on_port_80_unless_the_spec_declares_one(host, manifest):
    config = json.loads(host.check_output(f"sudo curl -sf -H 'Host: ' --unix-socket {ADMIN} http://localhost/config/"))
    listening = host.run("curl -s -o /dev/null http://127.0.0.1/").rc != 7  # 7: could not connect
    assert ("http" in config.get("apps", {}), listening) == (bool(manifest["sites"]), bool(manifest["sites"]))


@pytest.fixture
def backend(host):
    start_unix_server(host, "golden-test-backend", BACKEND, f"{UPSTREAM_DIR}/web.sock")
    yield
    host.run("sudo systemctl stop golden-test-backend")


@pytest.mark.fixtures
def test_site_proxies_to_unix_socket_upstream(host, backend):
    r = host.run("curl -s -o /dev/stdout -w '%{http_code}' http://127.0.0.1/")
    assert r.stdout == "hello from the unix socket backend\n200"


@pytest.mark.fixtures
def test_a_site_without_auth_drops_client_identity_headers(host, backend):
    """No backend may take a client's word for who it is, in either spelling."""
    sent = " ".join(f"-H '{h}: admin'" for h in ("Remote-User", "Remote_User", "remote_user", "Remote-Groups",
                                                  "Remote_Groups", "Remote-Email", "Remote-Name"))
    r = host.run(f"curl -s {sent} -H 'X-Other: kept' http://127.0.0.1/")
    assert r.stdout == "hello from the unix socket backend\n"


@pytest.mark.fixtures
def test_upstream_down_is_a_gateway_error(host):
    host.run("sudo systemctl stop golden-test-backend")
    assert host.check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/") == "502"


@pytest.mark.fixtures
@pytest.mark.alone  # the sites other tests use
def test_reload_through_the_unix_admin_socket(host, backend):
    assert host.run("sudo systemctl reload caddy").rc == 0
    assert host.service(UNIT).is_running
    assert host.check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/") == "200"
    log = host.check_output("sudo journalctl -u caddy --since '-1min' --no-pager -o cat")
    assert "load" in log


@pytest.mark.alone  # the other tests use it
def test_comes_back_after_kill(host):
    before = main_pid(host, UNIT)
    assert before > 0
    host.run(f"sudo kill -9 {before}")
    with host.sudo():
        assert wait_until(lambda: main_pid(host, UNIT) not in (0, before) and host.file(ADMIN).is_socket, 15)
