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
from pathlib import Path

import yaml

from golden.errors import GoldenError

import os

IMAGES_DIR = Path(os.environ.get("GOLDEN_IMAGES") or Path(__file__).resolve().parent.parent / "images")
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
SIZE_RE = re.compile(r"^([1-9][0-9]*)([MG])$")


class SpecError(GoldenError):
    pass


@dataclass(frozen=True)
class Base:
    suite: str
    mirror: str = "http://deb.debian.org/debian"
    components: list[str] = field(default_factory=lambda: ["main"])
    variant: str = "minbase"


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
class ImageSpec:
    name: str
    base: Base
    hostname: str
    description: str = ""
    packages: list[str] = field(default_factory=list)
    disk: Disk = field(default_factory=Disk)
    vm: Vm = field(default_factory=Vm)
    path: str = ""        # where the spec was read from; not a YAML key
    sha256: str = ""      # hash of the spec file; not a YAML key

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
    "base.mirror": (lambda v: v.startswith(("http://", "https://", "file://")),
                    "expected an http(s):// or file:// URL"),
    "vm.memory": (lambda v: v >= 256, "expected at least 256 (MiB)"),
    "vm.cpus": (lambda v: v >= 1, "expected at least 1"),
}


def _type_name(tp) -> str:
    if tp is str:
        return "a string"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true or false"
    if typing.get_origin(tp) is list:
        return "a list"
    return "a mapping"


def _convert(value, tp, where: str, path: str):
    def fail(msg):
        raise SpecError(f"{path}: {where}: {msg}")

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail("expected a mapping")
        return _build(tp, value, where + ".", path)
    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            fail("expected a list")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{where}[{i}]", path) for i, v in enumerate(value)]
    # bool is an int in Python; refuse it where an integer is expected.
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        fail(f"expected {_type_name(tp)}")
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
        value = _convert(data[name], hints[name], where, path)
        check = _CHECKS.get(where)
        if check and not check[0](value):
            raise SpecError(f"{path}: {where}: {check[1]}")
        kwargs[name] = value
    return cls(**kwargs)


def load_spec(path: Path) -> ImageSpec:
    path = Path(path)
    shown = _shown(path)
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
    spec = _build(ImageSpec, data, "", shown)
    if spec.name != path.stem:
        raise SpecError(f"{shown}: name: must match the file name ({path.stem!r})")
    return dataclasses.replace(spec, path=str(path), sha256=hashlib.sha256(raw).hexdigest())


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def spec_names(images_dir: Path = IMAGES_DIR) -> list[str]:
    return sorted(p.stem for p in Path(images_dir).glob("*.yaml"))


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
