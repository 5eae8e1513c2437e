"""Forward authentication through Caddy (ADR-004), with a small auth endpoint
and backend that the test starts inside the VM on Unix sockets."""
import pytest

from conftest import start_unix_server

pytestmark = pytest.mark.fixtures  # the sites and auth provider of tests/images

SITE = "app.infra.test"
AUTH = r"""
import http.server, os, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if "session=valid" in (self.headers.get("Cookie") or ""):
            self.send_response(200)
            self.send_header("Remote-User", "alice")
            self.send_header("Remote-Groups", "staff")
        else:
            self.send_response(401)
            self.send_header("WWW-Authenticate", "Bearer")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def address_string(self): return "unix"
path = sys.argv[1]
if os.path.exists(path): os.unlink(path)
srv = socketserver.UnixStreamServer(path, H); os.chmod(path, 0o666); srv.serve_forever()
"""
BACKEND = r"""
import http.server, os, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("path=%s remote-user=%s\n" % (self.path, self.headers.get("Remote-User", ""))).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def address_string(self): return "unix"
path = sys.argv[1]
if os.path.exists(path): os.unlink(path)
srv = socketserver.UnixStreamServer(path, H); os.chmod(path, 0o666); srv.serve_forever()
"""


@pytest.fixture
def servers(host):
    start_unix_server(host, "golden-test-auth", AUTH, "/run/golden-auth/auth.sock")
    start_unix_server(host, "golden-test-web", BACKEND, "/run/web/app.sock")
    yield
    host.run("sudo systemctl stop golden-test-auth golden-test-web")


def _get(host, path: str, *headers: str, site: str = SITE):
    args = " ".join(f"-H '{h}'" for h in headers)
    out = host.check_output(f"curl -s -w '\\n%{{http_code}}' -H 'Host: {site}' {args} http://127.0.0.1{path}")
    body, _, code = out.rpartition("\n")
    return int(code), body.strip()


def test_no_session_gets_the_auth_endpoints_answer(host, servers):
    code, body = _get(host, "/private")
    assert code == 401 and "remote-user" not in body


def test_valid_session_reaches_backend_with_identity(host, servers):
    code, body = _get(host, "/private", "Cookie: session=valid")
    assert code == 200
    assert body == "path=/private remote-user=alice"


def test_client_sent_identity_never_reaches_backend(host, servers):
    code, body = _get(host, "/private", "Remote-User: admin")
    assert code == 401 and "admin" not in body
    code, body = _get(host, "/private", "Cookie: session=valid", "Remote-User: admin")
    assert (code, body) == (200, "path=/private remote-user=alice")
    code, body = _get(host, "/health", "Remote-User: admin")
    assert (code, body) == (200, "path=/health remote-user=")


def test_public_paths_skip_auth(host, servers):
    assert _get(host, "/health") == (200, "path=/health remote-user=")
    assert _get(host, "/static/app.css") == (200, "path=/static/app.css remote-user=")


def test_fails_closed_when_auth_endpoint_is_down(host, servers):
    host.run("sudo systemctl stop golden-test-auth")
    for headers in ((), ("Cookie: session=valid",), ("Remote-User: admin",)):
        code, body = _get(host, "/private", *headers)
        assert code >= 500 or code == 401
        assert "remote-user" not in body
    assert _get(host, "/health")[0] == 200


# The whoami application's own site (apps[].site): Caddy proxies it to the
# socket the container listens on, behind the same forward auth.
APP_SITE = "whoami.infra.test"


def test_app_site_reaches_the_container_behind_forward_auth(host, servers):
    uid = host.user("whoami").uid
    code, body = _get(host, "/private", site=APP_SITE)
    assert code == 401 and "app=" not in body
    code, body = _get(host, "/private", "Cookie: session=valid", "Remote-User: admin", site=APP_SITE)
    assert (code, body) == (200, f"app=whoami uid={uid} path=/private remote-user=alice")
    assert _get(host, "/health", "Remote-User: admin", site=APP_SITE) == (
        200, f"app=whoami uid={uid} path=/health remote-user=")
    host.run("sudo systemctl stop golden-test-auth")
    code, body = _get(host, "/private", "Cookie: session=valid", site=APP_SITE)
    assert (code >= 500 or code == 401) and "app=" not in body
