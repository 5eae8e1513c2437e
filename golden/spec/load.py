"""Loading an image spec: YAML, `extends:`, each field converted to its type
and checked by its rule (model.ruled). Every refusal is one line naming the
file and the field path, e.g. `images/x.yaml: base.suite: expected a string`."""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
import typing
from pathlib import Path

import yaml

from golden import settings
from golden.paths import REPO, TEST_IMAGES_DIR
from golden.spec.model import NAME_RE, ImageSpec, Site, SpecError

_INTERNAL = {"path", "sha256"}
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


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
    if tp is str and CONTROL_RE.search(value):  # a newline would add lines to a unit, a Caddyfile, a script
        fail("control characters (newline, tab, ...) are not allowed")
    return value


def _checked(value, f: dataclasses.Field, where: str, path: str):
    """value (already of its type) against the field's rule."""
    rule = f.metadata
    if not rule or value is None:
        return value
    for i, item in enumerate(value) if rule["items"] else [(None, value)]:
        if not rule["check"](item):
            raise SpecError(f"{path}: {where}{'' if i is None else f'[{i}]'}: {rule['message']}")
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
        kwargs[name] = _checked(_convert(data[name], hints[name], where, path), f, where, path)
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
    # Beside the spec, else a product image (a test-only spec extends one).
    parent_path = next((d / f"{parent_name}.yaml" for d in (path.parent, settings.images_dir())
                        if (d / f"{parent_name}.yaml").is_file()), path.parent / f"{parent_name}.yaml")
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
    _check_apps(spec, shown)
    _check_sites(spec, shown)
    _check_programs(spec, shown)
    return dataclasses.replace(spec, path=str(path), sha256=hashlib.sha256(raw).hexdigest())


def _check_apps(spec: ImageSpec, shown: str) -> None:
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
        if app.site and not app.site.upstream.startswith(f"unix/{app.run_dir}/"):
            # Only the app itself can create a socket there (its directory is 2750 app:caddy).
            raise SpecError(f"{shown}: apps[{i}].site.upstream: expected a socket under the app's own "
                            f"directory, unix/{app.run_dir}/")


def _check_sites(spec: ImageSpec, shown: str) -> None:
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
    # The same backend behind forward auth on one site and open on another
    # would let anyone around the auth through the open one.
    guarded = {s.upstream for _, s in sites if s.auth == "forward"}
    for where, site in sites:
        if site.auth != "forward" and site.upstream in guarded:
            raise SpecError(f"{shown}: {where}.upstream: {site.upstream} is served with forward auth by "
                            f"another site; serving it without auth here would bypass it")


def _check_programs(spec: ImageSpec, shown: str) -> None:
    for i, image in enumerate(spec.container_images):
        for j, program in enumerate(image.programs):
            path = (REPO / program).resolve()
            if not path.is_relative_to(REPO) or not path.is_file():
                raise SpecError(f"{shown}: container_images[{i}].programs[{j}]: no file {program!r} "
                                f"in the repository")


def _is_local(site: Site) -> bool:
    """Reached only from the host itself (localhost, 127.0.0.0/8)."""
    try:
        return ipaddress.ip_address(site.host).is_loopback
    except ValueError:
        return site.host == "localhost" or site.host.endswith(".localhost")


def spec_warnings(spec: ImageSpec) -> list[str]:
    """What the spec allows but an operator should know (printed by the build)."""
    shown = _shown(Path(spec.path)) if spec.path else spec.name
    return [f"warning: {shown}: site {site.address}: forward auth over plain HTTP: session cookies and "
            f"identities cross the network in clear (use https://, or keep the site behind a TLS proxy)"
            for site in spec.sites if site.auth == "forward" and site.plain_http and not _is_local(site)]


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def spec_names(images_dir: Path | None = None) -> list[str]:
    return sorted(p.stem for p in Path(images_dir or settings.images_dir()).glob("*.yaml"))


DEFAULT_IMAGE = "infra"  # what ./inv build builds without --image or --all


def select_specs(image: str | None, images_dir: Path | None = None, tests: bool = False) -> list[ImageSpec]:
    """All specs when image is None, else the one named; each fully validated
    first. tests: the test-only specs of tests/images too (./inv test)."""
    dirs = [Path(images_dir or settings.images_dir())] + ([TEST_IMAGES_DIR] if tests else [])
    paths = {n: d / f"{n}.yaml" for d in reversed(dirs) for n in spec_names(d)}
    if image is not None:
        if image not in paths:
            known = ", ".join(sorted(paths)) or "none"
            raise SpecError(f"unknown image {image!r} (known: {known})")
        paths = {image: paths[image]}
    if not paths:
        raise SpecError(f"no image specs in {dirs[0]}")
    products = [n for n in paths if paths[n].parent == dirs[0]]
    return [load_spec(paths[n]) for n in sorted(products) + sorted(set(paths) - set(products))]


def is_test_spec(spec: ImageSpec) -> bool:
    """A test-only spec (tests/images): its artifacts are never published."""
    return Path(spec.path).resolve().is_relative_to(TEST_IMAGES_DIR)
