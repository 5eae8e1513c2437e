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

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
SIZE_RE = re.compile(r"^([1-9][0-9]*)([MG])$")
SUITE_RE = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
MIRROR_RE = re.compile(r"^(https?|file)://[A-Za-z0-9._~:/@%+-]+$")
RESERVED_USERS = {"root", "postgres", "valkey", "caddy", "vagrant", "nobody"}
APP_RUN_DIR = "/run/golden-apps"


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


_APP_USER = dict(check=lambda v: bool(NAME_RE.match(v)) and v not in RESERVED_USERS,
                 message="expected lowercase letters, digits and '-', not a system user")
_MIRROR = dict(check=lambda v: bool(MIRROR_RE.match(v)), message="expected an http(s):// or file:// URL")
_UNIX_UPSTREAM = dict(check=lambda v: v == "" or v.startswith("unix//"),
                      message="expected a Unix socket upstream (unix//path)")
_PATH = dict(check=lambda v: v.startswith("/"), message="expected a path starting with '/'", items=True)


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
    packages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Container:
    """How an app runs as a rootful Podman Quadlet service (ADR-003, ADR-005)."""
    image: str                        # a name from container_images
    exec: str = ""                    # command; empty: the image's default
    environment: dict[str, str] = field(default_factory=dict)
    network: str = ruled("none", **_one_of("none", "bridge"))  # socket-only apps need no network
    # Start as root and switch to this user inside (as Nextcloud's image does);
    # empty: run as the app's own user from the start.
    switch_to: str = ""


@dataclass(frozen=True)
class Site:
    address: str                      # Caddy site address, e.g. ":80" or "http://infra"
    # unix//path/to.sock. Required under caddy.sites; an app's site defaults to
    # the app's own socket, unix//run/golden-apps/<app>/http.sock.
    upstream: str = ruled("", **_UNIX_UPSTREAM)
    auth: str = ruled("none", **_one_of("none", "forward"))  # ADR-004
    public_paths: list[str] = ruled(default_factory=list, **_PATH)  # skip forward auth



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
    endpoint: str                     # unix//path or host:port of the provider
    uri: str = "/outpost.goauthentik.io/auth/caddy"
    copy_headers: list[str] = field(
        default_factory=lambda: ["Remote-User", "Remote-Name", "Remote-Email", "Remote-Groups"])


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
    packages: list[str] = field(default_factory=list)
    disk: Disk = field(default_factory=Disk)
    vm: Vm = field(default_factory=Vm)
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

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("path"), data.pop("sha256")
        return data

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
