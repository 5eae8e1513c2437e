"""The image spec's model: one frozen dataclass per section, each field with
its default and, where its text reaches a shell, a unit file, a Caddyfile,
SQL or an ACL, its rule (`ruled`): a check and the message a refusal gives."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Optional

from golden.errors import GoldenError

OUTPUTS = ("qcow2", "box", "raw", "vmdk", "vhdx")
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
SIZE_RE = re.compile(r"^([1-9][0-9]*)([MG])$")
SUITE_RE = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
MIRROR_RE = re.compile(r"^(https?|file)://[A-Za-z0-9._~:/@%+-]+$")
# Names an application (its system user, PostgreSQL role and database, Valkey
# user) must not take: Debian's system accounts and those of the image's
# packages (an existing account would be silently reused and put in the
# client groups), pg_hba and role keywords, PostgreSQL's own databases, and
# Valkey's default user.
RESERVED_USERS = {
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data",
    "backup", "list", "irc", "nobody", "messagebus", "sshd", "polkitd", "tss", "uuidd", "dnsmasq", "statd",
    "tcpdump", "postgres", "valkey", "caddy", "vagrant", "ops",
    "all", "sameuser", "samerole", "samegroup", "replication", "public", "none", "current-user", "session-user",
    "current-role", "template0", "template1", "default",
}
APP_RUN_DIR = "/run/golden-apps"
CADDY_RUN_DIR = "/run/caddy"  # its admin socket: never an upstream
SOCKET_PATH_RE = re.compile(r"^unix//[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)+$")
SITE_ADDRESS_RE = re.compile(r"^(https?://)?((\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)?"
                             r"(:[0-9]{1,5})?$")
URL_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/-]*\*?$")
HEADER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
COMMAND_RE = re.compile(r"^[A-Za-z0-9 ._/=:,@+-]*$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_VALUE_RE = re.compile(r"^[A-Za-z0-9._:/@+=,-]*$")
REPO_FILE_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
# Identity headers a forward-auth provider sets: every site drops them (and
# their underscore forms, which CGI/WSGI backends read as the same variable)
# from what clients send. The first four are copied by default; the others
# are what common providers and backends also trust (oauth2-proxy, Authentik,
# Apache-style REMOTE_USER proxies). A trailing * deletes by prefix.
IDENTITY_HEADERS = ["Remote-User", "Remote-Name", "Remote-Email", "Remote-Groups"]
TRUSTED_HEADERS = IDENTITY_HEADERS + ["X-Remote-User", "X-Forwarded-User", "X-Forwarded-Email",
                                      "X-Forwarded-Groups", "X-Forwarded-Preferred-Username", "X-Authentik-*"]


class SpecError(GoldenError):
    pass


def ruled(default=dataclasses.MISSING, *, check, message, items: bool = False, **kwargs):
    """A field with its rule. items: the rule applies to each item of a list."""
    return field(default=default, metadata={"check": check, "message": message, "items": items}, **kwargs)


def _is_snapshot_time(value: str) -> bool:
    try:
        dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ")
    except ValueError:
        return False
    return len(value) == 16


def _one_of(*choices):
    return dict(check=lambda v: v in choices, message=f"expected one of {', '.join(choices)}")


def _name(message="expected lowercase letters, digits and '-'"):
    return dict(check=lambda v: bool(NAME_RE.match(v)), message=message)


_APP_USER = dict(check=lambda v: bool(NAME_RE.match(v)) and v not in RESERVED_USERS and not v.startswith(
    ("systemd-", "pg-")), message="expected lowercase letters, digits and '-', not a system account or a "
                                   "PostgreSQL/Valkey keyword")
_MIRROR = dict(check=lambda v: bool(MIRROR_RE.match(v)), message="expected an http(s):// or file:// URL")


def _socket(value: str) -> bool:
    path = value.removeprefix("unix/")
    # No "." or ".." segments: two spellings of one socket would pass as two upstreams.
    return bool(SOCKET_PATH_RE.match(value)) and not {".", ".."} & set(path.split("/")) and \
        not (path + "/").startswith(CADDY_RUN_DIR + "/")


_UNIX_UPSTREAM = dict(check=lambda v: v == "" or _socket(v),
                      message=f"expected a Unix socket upstream (unix//path, not under {CADDY_RUN_DIR})")
_PATH = dict(check=lambda v: bool(URL_PATH_RE.match(v)) and v not in ("/", "/*"), items=True,
             message="expected a path like /health or /static/* (not / or /*: that is the whole site)")
_PACKAGES = dict(check=lambda v: bool(PACKAGE_RE.match(v)), items=True, message="expected a Debian package name")


@dataclass(frozen=True)
class Base:
    suite: str = ruled(check=lambda v: bool(SUITE_RE.match(v)), message="expected a suite name like 'trixie'")
    mirror: str = ruled("http://deb.debian.org/debian", **_MIRROR)
    # The security archive is its own repository, beside the main one.
    security_mirror: str = ruled("http://deb.debian.org/debian-security", **_MIRROR)
    components: list[str] = ruled(default_factory=lambda: ["main"], items=True, check=lambda v: bool(SUITE_RE.match(v)),
                                  message="expected a component name like 'main'")
    variant: str = ruled("minbase", **_one_of("minbase", "apt", "important", "standard"))
    updates: bool = True              # build from (and ship) <suite>-updates
    security: bool = True             # build from (and ship) <suite>-security
    # Build from Debian's snapshot archive at this UTC time (YYYYMMDDTHHMMSSZ)
    # instead of the mirrors, so that an old lock stays buildable.
    snapshot: str = ruled("", check=lambda v: v == "" or _is_snapshot_time(v),
                          message="expected a UTC time like 20261130T000000Z (YYYYMMDDTHHMMSSZ)")


@dataclass(frozen=True)
class Disk:
    size: str = ruled("4G", check=lambda v: bool(SIZE_RE.match(v)), message="expected a size like '4G' or '512M'")

    @property
    def size_bytes(self) -> int:
        number, unit = SIZE_RE.match(self.size).groups()
        return int(number) * (1 << (20 if unit == "M" else 30))


@dataclass(frozen=True)
class Vm:
    memory: int = ruled(1024, check=lambda v: v >= 256, message="expected at least 256 (MiB)")
    cpus: int = ruled(2, check=lambda v: v >= 1, message="expected at least 1")


@dataclass(frozen=True)
class Time:
    # NTP servers for systemd-timesyncd; empty: its default (Debian's pool).
    servers: list[str] = ruled(default_factory=list, items=True, message="expected a host name",
                               check=lambda v: bool(re.match(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$", v)))


def _port_rule(value: str) -> bool:
    match = re.match(r"^([0-9]{1,5})/(tcp|udp)$", value)
    return bool(match) and 1 <= int(match.group(1)) <= 65535


@dataclass(frozen=True)
class Firewall:
    # Inbound ports opened beyond SSH (and 80/443 when there are sites),
    # e.g. ["8443/tcp", "5353/udp"]. Everything else is dropped.
    allow: list[str] = ruled(default_factory=list, items=True, check=_port_rule,
                             message="expected PORT/tcp or PORT/udp, PORT from 1 to 65535")


@dataclass(frozen=True)
class Sockets:
    # group: sockets 0770, only members of the client groups connect (ADR-005).
    # open: sockets 0777, password authentication is the only gate (socket decision).
    access: str = ruled("group", **_one_of("group", "open"))

    @property
    def mode(self) -> str:
        return "0770" if self.access == "group" else "0777"


@dataclass(frozen=True)
class ContainerImage:
    """An OCI image built from Debian packages at build time (no registry)."""
    name: str = ruled(**_name())
    packages: list[str] = ruled(default_factory=list, **_PACKAGES)
    # Files of this repository (paths from its top) copied to /usr/local/bin.
    programs: list[str] = ruled(default_factory=list, items=True, check=lambda v: bool(REPO_FILE_RE.match(v)),
                                message="expected a path inside the repository, like tests/images/containers/x")


@dataclass(frozen=True)
class Container:
    """How an app runs as a rootful Podman Quadlet service (ADR-003, ADR-005)."""
    image: str                        # a name from container_images
    # command; empty: the image's default. It becomes Quadlet's Exec= line.
    exec: str = ruled("", check=lambda v: bool(COMMAND_RE.match(v)),
                      message="expected a command of letters, digits, spaces and ._/=:,@+- (no quotes, $, % or \\)")
    environment: dict[str, str] = ruled(
        default_factory=dict, check=lambda env: all(ENV_NAME_RE.match(k) and ENV_VALUE_RE.match(v)
                                                    for k, v in env.items()),
        message="expected NAME: value pairs (names of letters, digits and _; values without spaces, quotes, "
                "$, % or \\)")
    network: str = ruled("none", **_one_of("none", "bridge"))  # socket-only apps need no network
    # Start as root and switch to this user inside (as Nextcloud's image does);
    # empty: run as the app's own user from the start.
    switch_to: str = ruled("", check=lambda v: v == "" or bool(re.match(r"^[a-z_][a-z0-9_-]{0,31}$", v)),
                           message="expected a user name")
    # A read-only root file system (writable /tmp and /run); false for apps
    # that write into their image.
    read_only: bool = True


@dataclass(frozen=True)
class Site:
    # Caddy site address, e.g. ":80" or "http://infra.example.org".
    address: str = ruled(check=lambda v: v not in ("", "http://", "https://") and bool(SITE_ADDRESS_RE.match(v)),
                         message="expected a site address like http://app.example.org or :80")
    # unix//path/to.sock. Required under caddy.sites; an app's site defaults to
    # the app's own socket, unix//run/golden-apps/<app>/http.sock.
    upstream: str = ruled("", **_UNIX_UPSTREAM)
    auth: str = ruled("none", **_one_of("none", "forward"))  # ADR-004
    public_paths: list[str] = ruled(default_factory=list, **_PATH)  # skip forward auth

    @property
    def _authority(self) -> str:
        """The address without its scheme: host[:port]."""
        return re.sub(r"^https?://", "", self.address)

    @property
    def host(self) -> str:
        return self._authority.rpartition(":")[0] if ":" in self._authority else self._authority

    @property
    def plain_http(self) -> bool:
        """Caddy serves it without TLS: http://, or no host to get a certificate for, or port 80."""
        if self.address.startswith(("http://", "https://")):
            return self.address.startswith("http://")
        return not self.host or self.port == 80

    @property
    def port(self) -> int:
        if ":" in self._authority:
            return int(self._authority.rpartition(":")[2])
        return 80 if self.address.startswith("http://") else 443



@dataclass(frozen=True)
class App:
    name: str = ruled(**_APP_USER)
    user: str = ruled("", **_APP_USER)  # its system user (and PostgreSQL role); default: name
    postgresql: bool = False          # a database of the app's name, owned by its role
    valkey_db: Optional[int] = ruled(None, check=lambda v: 0 <= v <= 15, message="expected a number from 0 to 15")
    container: Optional[Container] = None
    site: Optional[Site] = None       # a Caddy site in front of the app

    def __post_init__(self):
        if not self.user:
            object.__setattr__(self, "user", self.name)
        if self.site and not self.site.upstream:
            object.__setattr__(self, "site", dataclasses.replace(
                self.site, upstream=f"unix/{self.http_socket}"))

    @property
    def groups(self) -> list[str]:
        return (["postgres-clients"] if self.postgresql else []) + \
               (["valkey-clients"] if self.valkey_db is not None else [])

    @property
    def run_dir(self) -> str:
        """Shared by the app (owner) and Caddy (group); the gate to its socket."""
        return f"{APP_RUN_DIR}/{self.name}"

    @property
    def http_socket(self) -> str:
        return f"{self.run_dir}/http.sock"


@dataclass(frozen=True)
class Auth:
    """The forward-auth provider; defaults match an Authentik outpost."""
    # unix//path or host:port of the provider
    endpoint: str = ruled(check=lambda v: _socket(v) or bool(re.match(r"^[a-z0-9.-]+:[0-9]{1,5}$", v)),
                          message=f"expected unix//path (not under {CADDY_RUN_DIR}) or host:port")
    uri: str = ruled("/outpost.goauthentik.io/auth/caddy", check=lambda v: bool(URL_PATH_RE.match(v)),
                     message="expected a path")
    # Header names only: Caddy's "A>B" form would let the provider's answer set any header.
    copy_headers: list[str] = ruled(default_factory=lambda: list(IDENTITY_HEADERS), items=True,
                                    check=lambda v: bool(HEADER_RE.match(v)), message="expected a header name")


@dataclass(frozen=True)
class Caddy:
    sites: list[Site] = field(default_factory=list)


@dataclass(frozen=True)
class ImageSpec:
    name: str = ruled(**_name())
    base: Base
    hostname: str = ruled(**_name("expected a valid hostname"))
    description: str = ""
    extends: Optional[str] = None
    packages: list[str] = ruled(default_factory=list, **_PACKAGES)
    # generic: the devices of every hypervisor; cloud: virtio, Hyper-V, NVMe, vmxnet3 (see the README)
    kernel: str = ruled("generic", **_one_of("generic", "cloud"))
    # What the build makes from the disk: qcow2 and box always (the validation
    # boots them), raw (zstd), vmdk and vhdx on request.
    outputs: list[str] = ruled(default_factory=lambda: ["qcow2", "box"],
                               check=lambda v: {"qcow2", "box"} <= set(v) <= set(OUTPUTS) and len(set(v)) == len(v),
                               message=f"expected qcow2 and box, and any of {', '.join(OUTPUTS[2:])}, each once")
    disk: Disk = field(default_factory=Disk)
    vm: Vm = field(default_factory=Vm)
    time: Time = field(default_factory=Time)
    firewall: Firewall = field(default_factory=Firewall)
    sockets: Sockets = field(default_factory=Sockets)
    apps: list[App] = field(default_factory=list)
    caddy: Caddy = field(default_factory=Caddy)
    container_images: list[ContainerImage] = field(default_factory=list)
    auth: Optional[Auth] = None
    path: str = ""        # where the spec was read from; not a YAML key
    sha256: str = ""      # hash of the spec file; not a YAML key

    @property
    def sites(self) -> list[Site]:
        """Every Caddy site: the spec-level ones, then the apps' own."""
        return list(self.caddy.sites) + [app.site for app in self.apps if app.site]

    @property
    def site_ports(self) -> dict[str, list[int]]:
        """What Caddy listens on for the sites: each site's port, 80 too for
        HTTPS sites (Caddy redirects from it), and UDP for HTTP/3."""
        https = {s.port for s in self.sites if not s.plain_http}
        tcp = {s.port for s in self.sites} | ({80} if https else set())
        return {"tcp": sorted(tcp), "udp": sorted(https)}

    @property
    def identity_headers(self) -> list[str]:
        """What every site drops from client requests, in both spellings."""
        names = dict.fromkeys(TRUSTED_HEADERS + (self.auth.copy_headers if self.auth else []))
        return list(dict.fromkeys([n for name in names for n in (name, name.replace("-", "_"))]))

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("path"), data.pop("sha256")
        return data

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
