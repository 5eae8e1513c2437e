"""Rendered service configurations, checked with the real servers.

Each server runs from the rendered files with only its paths moved into a
temporary directory (socket, data, ACL file) and, where the host lacks the
image's client groups, the socket group swapped for one the server has.
"""
import grp
import hashlib
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from golden.spec import load_spec
from golden.build.templates import render_tree

from conftest import REPO, need

# The test-only specs: each product image plus the fixture apps.
POLICIES = {"infra-apps": "0770", "infra-open-apps": "0777"}


@pytest.fixture(params=sorted(POLICIES))
def rendered(request, tmp_path):
    spec = load_spec(REPO / "tests" / "images" / f"{request.param}.yaml")
    root = tmp_path / "root"
    render_tree(spec, root)
    return spec, root


def test_policy_sets_socket_modes(rendered):
    spec, root = rendered
    mode = POLICIES[spec.name]
    pg = (root / "etc/postgresql/17/main/conf.d/golden.conf").read_text()
    assert f"unix_socket_permissions = {mode}" in pg
    assert "listen_addresses = ''" in pg and "unix_socket_group = 'postgres-clients'" in pg
    valkey = (root / "etc/valkey/valkey.conf").read_text()
    assert f"unixsocketperm {mode[1:]}\n" in valkey
    assert "port 0\n" in valkey and "unixsocketgroup valkey-clients\n" in valkey
    assert "socket-fix" not in " ".join(p.name for p in root.rglob("*"))


def test_pg_hba_has_only_local_lines(rendered):
    spec, root = rendered
    lines = [l.split() for l in (root / "etc/postgresql/17/main/pg_hba.conf").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert all(l[0] == "local" for l in lines)
    assert ["local", "all", "postgres", "peer"] in lines
    for app in spec.apps:
        assert (["local", app.name, app.user, "scram-sha-256"] in lines) == app.postgresql
    assert not any(l[3] in ("trust", "password", "md5") for l in lines)


def test_caddyfile_validates_with_caddy(rendered, tmp_path):
    need("caddy")
    _, root = rendered
    caddyfile = root / "etc/caddy/Caddyfile"
    text = caddyfile.read_text()
    assert "admin unix//run/caddy/admin.sock" in text
    proc = subprocess.run(["caddy", "validate", "--adapter", "caddyfile", "--config", str(caddyfile)],
                          capture_output=True, text=True, env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]})
    assert proc.returncode == 0, proc.stderr
    adapted = subprocess.run(["caddy", "adapt", "--adapter", "caddyfile", "--config", str(caddyfile)],
                             capture_output=True, text=True, env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]})
    assert '"listen":"unix//run/caddy/admin.sock"' in adapted.stdout.replace(" ", "")
    assert '"dial":"unix//run/web/web.sock"' in adapted.stdout.replace(" ", "")


def test_caddy_validate_rejects_a_broken_caddyfile(tmp_path):
    need("caddy")
    bad = tmp_path / "Caddyfile"
    bad.write_text(":80 {\n\treverse_proxy {\n")
    proc = subprocess.run(["caddy", "validate", "--adapter", "caddyfile", "--config", str(bad)],
                          capture_output=True, text=True, env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]})
    assert proc.returncode != 0


def _wait_for(path: Path, proc: subprocess.Popen, log: Path, seconds=30):
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"server did not create {path}:\n{log.read_text()}")
        time.sleep(0.1)


def _tcp_refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        pytest.fail("no PostgreSQL server on this host (./inv installs postgresql-15)")
    return found[-1].parent


@pytest.fixture
def pg_cluster(rendered, tmp_path):
    """A throwaway cluster run as the postgres user from the rendered files."""
    spec, root = rendered
    bindir = _pg_bin()
    base = Path(tempfile.mkdtemp(prefix="golden-pg-"))  # pytest's tmp is root-only
    base.chmod(0o755)
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    pw = pwd.getpwnam("postgres")
    os.chown(base, pw.pw_uid, pw.pw_gid)
    os.chown(sock, pw.pw_uid, pw.pw_gid)
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_pg + [bindir / "initdb", "-D", data, "-A", "peer", "--no-sync"],
                   check=True, capture_output=True)
    shutil.copy(root / "etc/postgresql/17/main/conf.d/golden.conf", data / "golden.conf")
    shutil.copy(root / "etc/postgresql/17/main/pg_hba.conf", data / "pg_hba.conf")
    with (data / "postgresql.conf").open("a") as f:
        # The rendered file, then only the socket's place and group moved.
        f.write(f"include 'golden.conf'\nunix_socket_directories = '{sock}'\nunix_socket_group = 'postgres'\n")
    shutil.chown(data / "golden.conf", "postgres")
    shutil.chown(data / "pg_hba.conf", "postgres")
    log = base / "server.log"
    proc = subprocess.Popen(as_pg + [bindir / "postgres", "-D", data, "-k", sock],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    _wait_for(sock / ".s.PGSQL.5432", proc, log)
    time.sleep(0.5)
    yield spec, sock, as_pg, root
    proc.terminate()
    proc.wait(timeout=30)
    shutil.rmtree(base)


def _psql(as_user, sock, user, db, sql, password=None):
    env = {"PATH": os.environ["PATH"]}
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run(as_user + ["psql", "-X", "-h", str(sock), "-U", user, "-d", db, "-tAc", sql],
                          capture_output=True, text=True, env=env, cwd="/")


def _roles_and_databases_sql(credentials_script: Path, user: str) -> str:
    """The script's own SQL that makes user's role and database on first boot."""
    text = credentials_script.read_text()
    start = text.index(f"SELECT 'CREATE ROLE \"{user}\" LOGIN'")
    return text[start:text.index("\nSQL\n", start)]


def test_postgresql_runs_from_rendered_config(pg_cluster):
    spec, sock, as_pg, root = pg_cluster
    mode = stat.S_IMODE(os.stat(sock / ".s.PGSQL.5432").st_mode)
    assert mode == int(POLICIES[spec.name], 8)
    assert _tcp_refused(5432)
    for app in (a for a in spec.apps if a.postgresql):
        sql = _roles_and_databases_sql(root / "usr/local/sbin/golden-credentials", app.user)
        for _ in range(2):  # a first boot interrupted and run again
            setup = subprocess.run(as_pg + ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(sock), "-d",
                                            "postgres"], input=sql, capture_output=True, text=True, cwd="/")
            assert setup.returncode == 0, setup.stderr
        assert _psql(as_pg, sock, "postgres", "postgres",
                     f"ALTER ROLE \"{app.user}\" PASSWORD 'pw-{app.name}'").returncode == 0
    first, second = spec.apps[0], spec.apps[1]
    ok = _psql(as_pg, sock, first.user, first.name, "SELECT current_user", password=f"pw-{first.name}")
    assert ok.returncode == 0 and ok.stdout.strip() == first.user, ok.stderr
    wrong = _psql(as_pg, sock, first.user, first.name, "SELECT 1", password="wrong")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
    other_db = _psql(as_pg, sock, first.user, second.name, "SELECT 1", password=f"pw-{first.name}")
    assert other_db.returncode != 0 and "no pg_hba.conf entry" in other_db.stderr
    no_password = _psql(as_pg, sock, first.user, first.name, "SELECT 1", password="")
    assert no_password.returncode != 0


def test_valkey_runs_from_rendered_config(rendered, tmp_path):
    need("valkey-server")
    spec, root = rendered
    base = tmp_path / "valkey"
    base.mkdir()
    acl = base / "users.acl"
    shutil.copy(root / "etc/valkey/users.acl", acl)
    for app in spec.apps[:2]:  # their ACL users exactly as the image's first boot writes them
        _append_acl_user(root / "usr/local/sbin/golden-credentials", app.user, f"pw-{app.name}", acl)
    sock = base / "valkey.sock"
    log = base / "server.log"
    group = grp.getgrgid(os.getgid()).gr_name
    proc = subprocess.Popen(["valkey-server", str(root / "etc/valkey/valkey.conf"),
                             "--unixsocket", str(sock), "--unixsocketgroup", group, "--aclfile", str(acl),
                             "--dir", str(base), "--pidfile", str(base / "pid"), "--supervised", "no",
                             "--logfile", str(log)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_for(sock, proc, log)
        assert stat.S_IMODE(os.stat(sock).st_mode) == int(POLICIES[spec.name], 8)
        assert _tcp_refused(6379)

        def cli(*args):
            return subprocess.run(["valkey-cli", "-s", str(sock), *args], capture_output=True, text=True)

        assert "NOAUTH" in cli("PING").stdout
        for user, password in ((spec.apps[0].user, "nope"), ("default", "")):
            refused = cli("--user", user, "--pass", password, "--no-auth-warning", "PING")
            assert "WRONGPASS" in refused.stderr and "NOAUTH" in refused.stdout
        first, second = spec.apps[:2]

        def as_app(app, *args):
            return cli("--user", app.user, "--pass", f"pw-{app.name}", "--no-auth-warning", "-n",
                       str(app.valkey_db), *args).stdout.strip()

        assert as_app(first, "SET", f"{first.name}:k", "v") == "OK"
        assert as_app(second, "SET", f"{second.name}:k", "w") == "OK"
        assert as_app(first, "CLIENT", "SETNAME", "web") == "OK"
        assert as_app(first, "EVAL", "return redis.call('GET', KEYS[1])", "1", f"{first.name}:k") == "v"
        for command in (["GET", f"{second.name}:k"], ["SET", f"{second.name}:k", "x"], ["SET", "k", "x"],
                        ["EVAL", "return redis.call('GET', KEYS[1])", "1", f"{second.name}:k"],
                        ["SELECT", str(second.valkey_db)], ["FLUSHALL"], ["FLUSHDB"], ["SWAPDB", "1", "2"],
                        ["KEYS", "*"], ["CONFIG", "GET", "port"], ["DEBUG", "SLEEP", "0"], ["FUNCTION", "FLUSH"],
                        ["SCRIPT", "FLUSH"], ["MIGRATE", "127.0.0.1", "6379", f"{first.name}:k", "0", "100"],
                        ["PUBLISH", f"{second.name}:events", "x"]):
            if command[0] == "SELECT":  # allowed, but the other app's keys stay out of reach there too
                assert cli("--user", first.user, "--pass", f"pw-{first.name}", "--no-auth-warning", "-n",
                           str(second.valkey_db), "GET", f"{second.name}:k").stdout.startswith("NOPERM")
                continue
            # DEBUG is also off server-wide (enable-debug-command), which Valkey checks first.
            assert as_app(first, *command).startswith(("NOPERM", "ERR DEBUG command not allowed")), command
        assert as_app(second, "GET", f"{second.name}:k") == "w"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _append_acl_user(credentials_script: Path, user: str, password: str, acl: Path) -> None:
    """Runs the script's own lines that write user's ACL entry."""
    lines = credentials_script.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f'echo "user {user} on '))
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith('>>"$acl"'))
    snippet = "\n".join(lines[start:end + 1])
    subprocess.run(["sh", "-euc", "sha256() { printf '%s' \"$1\" | sha256sum | cut -d' ' -f1; }\n"
                    f"valkey_password={password}\nacl={acl}\n{snippet}"], check=True)


def test_time_servers_come_from_the_spec(write_spec, tmp_path):
    """systemd-timesyncd's drop-in: the spec's servers, or none (timesyncd's default)."""
    default = render_tree(load_spec(write_spec("a")), tmp_path / "a")
    chosen = render_tree(load_spec(write_spec("b", "name: b\nhostname: b\nbase: {suite: trixie}\n"
                                                   "time: {servers: [ntp1.example.org, 192.0.2.1]}\n")), tmp_path / "b")
    conf = "etc/systemd/timesyncd.conf.d/golden.conf"
    assert tmp_path / "a" / conf in default and tmp_path / "b" / conf in chosen
    assert "NTP=" not in (tmp_path / "a" / conf).read_text()  # timesyncd's default servers
    assert "\nNTP=ntp1.example.org 192.0.2.1\n" in (tmp_path / "b" / conf).read_text()
    with pytest.raises(Exception, match=r"time.servers\[0\]: expected a host name"):
        load_spec(write_spec("c", "name: c\nhostname: c\nbase: {suite: trixie}\ntime: {servers: ['a b']}\n"))
