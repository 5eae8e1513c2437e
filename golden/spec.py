"""Image specs: images/<name>.yaml loaded and validated into typed objects.

Every refusal is one line naming the file and the field path, e.g.
`images/x.yaml: base.suite: expected a string`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from typing import Optional
from pathlib import Path

import yaml

from golden.errors import GoldenError
from golden.paths import REPO

import os

IMAGES_DIR = Path(os.environ.get("GOLDEN_IMAGES") or REPO / "images")
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
SIZE_RE = re.compile(r"^([1-9][0-9]*)([MG])$")
SUITE_RE = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
MIRROR_RE = re.compile(r"^(https?|file)://[A-Za-z0-9._~:/@%+-]+$")


def _is_snapshot_time(value: str) -> bool:
    import datetime as dt
    try:
        dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ")
    except ValueError:
        return False
    return len(value) == 16


class SpecError(GoldenError):
    pass


@dataclass(frozen=True)
class Base:
    suite: str
    mirror: str = "http://deb.debian.org/debian"
    # The security archive is its own repository, beside the main one.
    security_mirror: str = "http://deb.debian.org/debian-security"
    components: list[str] = field(default_factory=lambda: ["main"])
    variant: str = "minbase"
    updates: bool = True              # build from (and ship) <suite>-updates
    security: bool = True             # build from (and ship) <suite>-security
    # Build from Debian's snapshot archive at this UTC time (YYYYMMDDTHHMMSSZ)
    # instead of the mirrors, so that an old lock stays buildable.
    snapshot: str = ""


@dataclass(frozen=True)
class Disk:
    size: str = "4G"

    @property
    def size_bytes(self) -> int:
        number, unit = SIZE_RE.match(self.size).groups()
        return int(number) * (1 << (20 if unit == "M" else 30))


@dataclass(frozen=True)
class Vm:
    memory: int = 1024
    cpus: int = 2


@dataclass(frozen=True)
class Sockets:
    # group: sockets 0770, only members of the client groups connect (ADR-005).
    # open: sockets 0777, password authentication is the only gate (socket decision).
    access: str = "group"

    @property
    def mode(self) -> str:
        return "0770" if self.access == "group" else "0777"


@dataclass(frozen=True)
class ContainerImage:
    """An OCI image built from Debian packages at build time (no registry)."""
    name: str
    packages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Container:
    """How an app runs as a rootful Podman Quadlet service (ADR-003, ADR-005)."""
    image: str                        # a name from container_images
    exec: str = ""                    # command; empty: the image's default
    environment: dict[str, str] = field(default_factory=dict)
    network: str = "none"             # socket-only apps need no network
    # Start as root and switch to this user inside (as Nextcloud's image does);
    # empty: run as the app's own user from the start.
    switch_to: str = ""


@dataclass(frozen=True)
class Site:
    address: str                      # Caddy site address, e.g. ":80" or "http://infra"
    # unix//path/to.sock. Required under caddy.sites; an app's site defaults to
    # the app's own socket, unix//run/golden-apps/<app>/http.sock.
    upstream: str = ""
    auth: str = "none"                # none | forward (ADR-004)
    public_paths: list[str] = field(default_factory=list)  # skip forward auth


APP_RUN_DIR = "/run/golden-apps"


@dataclass(frozen=True)
class App:
    name: str
    user: str = ""                    # its system user (and PostgreSQL role); default: name
    postgresql: bool = False          # a database of the app's name, owned by its role
    valkey_db: Optional[int] = None   # Valkey database number, None: no Valkey
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
    name: str
    base: Base
    hostname: str
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


_INTERNAL = {"path", "sha256"}
_CHECKS = {
    "name": (lambda v: bool(NAME_RE.match(v)), "expected lowercase letters, digits and '-'"),
    "hostname": (lambda v: bool(NAME_RE.match(v)), "expected a valid hostname"),
    "disk.size": (lambda v: bool(SIZE_RE.match(v)), "expected a size like '4G' or '512M'"),
    "base.variant": (lambda v: v in ("minbase", "apt", "important", "standard"),
                     "expected one of minbase, apt, important, standard"),
    "base.suite": (lambda v: bool(SUITE_RE.match(v)), "expected a suite name like 'trixie'"),
    "base.mirror": (lambda v: bool(MIRROR_RE.match(v)), "expected an http(s):// or file:// URL"),
    "base.security_mirror": (lambda v: bool(MIRROR_RE.match(v)), "expected an http(s):// or file:// URL"),
    "base.components[]": (lambda v: bool(SUITE_RE.match(v)), "expected a component name like 'main'"),
    "base.snapshot": (lambda v: v == "" or _is_snapshot_time(v),
                      "expected a UTC time like 20261130T000000Z (YYYYMMDDTHHMMSSZ)"),
    "vm.memory": (lambda v: v >= 256, "expected at least 256 (MiB)"),
    "vm.cpus": (lambda v: v >= 1, "expected at least 1"),
    "sockets.access": (lambda v: v in ("group", "open"), "expected one of group, open"),
    "apps[].name": (lambda v: bool(NAME_RE.match(v)) and v not in RESERVED_USERS,
                    "expected lowercase letters, digits and '-', not a system user"),
    "apps[].user": (lambda v: bool(NAME_RE.match(v)) and v not in RESERVED_USERS,
                    "expected lowercase letters, digits and '-', not a system user"),
    "apps[].valkey_db": (lambda v: v is None or 0 <= v <= 15, "expected a number from 0 to 15"),
    "caddy.sites[].upstream": (lambda v: v.startswith("unix//"), "expected a Unix socket upstream (unix//path)"),
    "caddy.sites[].auth": (lambda v: v in ("none", "forward"), "expected one of none, forward"),
    "caddy.sites[].public_paths[]": (lambda v: v.startswith("/"), "expected a path starting with '/'"),
    "apps[].site.upstream": (lambda v: v.startswith("unix//"), "expected a Unix socket upstream (unix//path)"),
    "apps[].site.auth": (lambda v: v in ("none", "forward"), "expected one of none, forward"),
    "apps[].site.public_paths[]": (lambda v: v.startswith("/"), "expected a path starting with '/'"),
    "apps[].container.network": (lambda v: v in ("none", "bridge"), "expected one of none, bridge"),
    "container_images[].name": (lambda v: bool(NAME_RE.match(v)), "expected lowercase letters, digits and '-'"),
}
RESERVED_USERS = {"root", "postgres", "valkey", "caddy", "vagrant", "nobody"}


def _type_name(tp) -> str:
    if tp is str:
        return "a string"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true or false"
    if typing.get_origin(tp) is list:
        return "a list"
    if typing.get_origin(tp) is typing.Union:
        return _type_name(typing.get_args(tp)[0])
    return "a mapping"


def _convert(value, tp, where: str, path: str):
    def fail(msg):
        raise SpecError(f"{path}: {where}: {msg}")

    if typing.get_origin(tp) is typing.Union:  # Optional[X]
        if value is None:
            return None
        tp = typing.get_args(tp)[0]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail("expected a mapping")
        return _build(tp, value, where + ".", path)
    if typing.get_origin(tp) is dict:
        if not isinstance(value, dict):
            fail("expected a mapping")
        return {_convert(k, str, f"{where}.{k}", path): _convert(v, str, f"{where}.{k}", path)
                for k, v in value.items()}
    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            fail("expected a list")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{where}[{i}]", path) for i, v in enumerate(value)]
    # bool is an int in Python; refuse it where an integer is expected.
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        fail(f"expected {_type_name(tp)}")
    check = _CHECKS.get(re.sub(r"\[\d+\]", "[]", where))  # list items too: "a[].b[]"
    if check and not check[0](value):
        fail(check[1])
    return value


def _build(cls, data: dict, prefix: str, path: str):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in _INTERNAL}
    for key in data:
        if key not in fields:
            raise SpecError(f"{path}: {prefix}{key}: unknown key")
    kwargs = {}
    for name, f in fields.items():
        where = prefix + name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SpecError(f"{path}: {where}: missing required field")
            continue
        kwargs[name] = _convert(data[name], hints[name], where, path)
    return cls(**kwargs)


def _read_yaml(path: Path, shown: str) -> tuple[dict, bytes]:
    try:
        raw = path.read_bytes()
        data = yaml.safe_load(raw)
    except OSError as exc:
        raise SpecError(f"{shown}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark else ""
        raise SpecError(f"{shown}: {at}invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{shown}: expected a mapping at the top level")
    return data, raw


def _merge(parent: dict, child: dict) -> dict:
    """Child keys override the parent's; mappings merge, lists are replaced."""
    merged = dict(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resolve(path: Path, seen: tuple = ()) -> tuple[dict, bytes]:
    """The spec's data with `extends:` applied, and the bytes of every file read."""
    shown = _shown(path)
    data, raw = _read_yaml(path, shown)
    parent_name = data.get("extends")
    if parent_name is None:
        return data, raw
    if not isinstance(parent_name, str) or not NAME_RE.match(parent_name):
        raise SpecError(f"{shown}: extends: expected the name of another image spec")
    parent_path = path.parent / f"{parent_name}.yaml"
    if parent_path.resolve() in seen or parent_path.resolve() == path.resolve():
        raise SpecError(f"{shown}: extends: circular chain through {parent_name!r}")
    if not parent_path.is_file():
        raise SpecError(f"{shown}: extends: no image spec {parent_name!r} in {path.parent}")
    parent, parent_raw = _resolve(parent_path, seen + (path.resolve(),))
    _build(ImageSpec, parent, "", _shown(parent_path))  # valid on its own; errors name its file
    parent = {k: v for k, v in parent.items() if k not in ("name", "extends", "description")}
    return _merge(parent, data), parent_raw + b"\0" + raw


def load_spec(path: Path) -> ImageSpec:
    path = Path(path)
    shown = _shown(path)
    data, raw = _resolve(path)
    spec = _build(ImageSpec, data, "", shown)
    if spec.name != path.stem:
        raise SpecError(f"{shown}: name: must match the file name ({path.stem!r})")
    for field_name in ("name", "user"):
        values = [getattr(a, field_name) for a in spec.apps]
        if len(set(values)) != len(values):
            raise SpecError(f"{shown}: apps: application {field_name}s must be unique")
    images = {i.name for i in spec.container_images}
    for i, app in enumerate(spec.apps):
        if app.container and app.container.image not in images:
            raise SpecError(f"{shown}: apps[{i}].container.image: no container_images entry named "
                            f"{app.container.image!r}")
        if app.container and app.container.network == "bridge" and "nftables" not in spec.packages:
            # Debian's netavark sets up a bridge's firewall with nft.
            raise SpecError(f"{shown}: apps[{i}].container.network: bridge needs `nftables` in packages")
    for i, site in enumerate(spec.caddy.sites):
        if not site.upstream:
            raise SpecError(f"{shown}: caddy.sites[{i}].upstream: missing required field")
    sites = [(f"caddy.sites[{i}]", s) for i, s in enumerate(spec.caddy.sites)] + \
            [(f"apps[{i}].site", a.site) for i, a in enumerate(spec.apps) if a.site]
    seen = set()
    for where, site in sites:
        if site.auth == "forward" and spec.auth is None:
            raise SpecError(f"{shown}: {where}.auth: forward auth needs a spec-level `auth` provider")
        if site.address in seen:
            raise SpecError(f"{shown}: {where}.address: {site.address!r} is already a site of this image")
        seen.add(site.address)
    return dataclasses.replace(spec, path=str(path), sha256=hashlib.sha256(raw).hexdigest())


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def spec_names(images_dir: Path = IMAGES_DIR) -> list[str]:
    return sorted(p.stem for p in Path(images_dir).glob("*.yaml"))


DEFAULT_IMAGE = "infra"  # what ./inv build builds without --image or --all


def select_specs(image: str | None, images_dir: Path = IMAGES_DIR) -> list[ImageSpec]:
    """All specs when image is None, else the one named; each fully validated first."""
    names = spec_names(images_dir)
    if image is not None:
        if image not in names:
            known = ", ".join(names) or "none"
            raise SpecError(f"unknown image {image!r} (known: {known})")
        names = [image]
    if not names:
        raise SpecError(f"no image specs in {images_dir}")
    return [load_spec(Path(images_dir) / f"{n}.yaml") for n in names]
