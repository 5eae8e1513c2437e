"""./inv lab.up / lab.down / lab.ssh: a multi-machine lab from a box catalog.

vagrant/lab.yaml declares the machines; vagrant/Vagrantfile reads it (when
GOLDEN_BOX is not set) and takes each image's newest box from
$GOLDEN_CATALOG/<image>/metadata.json: a published repository (URL or
directory; lab.up hands Vagrant the copy of its catalog it checked), by
default the catalog of the tested local artifacts.

When no libvirt daemon answers, lab.up starts one in the network namespace
golden-lab and leaves it running for the lab; lab.down destroys the VMs,
deletes their box volumes, stops that daemon by PID and removes the
namespace. What is running is recorded in .lab/state.json.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from golden.publish.catalog import CATALOG, catalog_versions, version_key, write_local_catalog
from golden.publish.release import verify
from golden import settings
from golden.errors import GoldenError
from golden.vm.libvirt import LibvirtSession, daemon_answers, delete_volumes, open_session, stop_private_libvirt
from golden.vm.vagrant import vagrant_command, vagrant_env
from golden.paths import REPO, VAGRANT_DIR
from golden.publish.repository import open_repository
from golden.vm.runner import BuildLog
from golden.spec import NAME_RE

LAB_FILE = VAGRANT_DIR / "lab.yaml"
STATE_DIR = REPO / ".lab"
NETNS = "golden-lab"


class LabError(GoldenError):
    pass


@dataclass(frozen=True)
class Machine:
    name: str
    image: str


def load_lab(path: Path = LAB_FILE) -> list[Machine]:
    shown = os.path.relpath(path, Path.cwd())
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise LabError(f"{shown}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise LabError(f"{shown}: invalid YAML: {exc}") from None
    machines = data.get("machines") if isinstance(data, dict) else None
    if not isinstance(machines, list) or not machines:
        raise LabError(f"{shown}: machines: expected a non-empty list")
    result = []
    for i, entry in enumerate(machines):
        if not isinstance(entry, dict) or set(entry) - {"name", "image"}:
            raise LabError(f"{shown}: machines[{i}]: expected a mapping with name and image")
        for key in ("name", "image"):
            if not isinstance(entry.get(key), str) or not NAME_RE.match(entry[key]):
                raise LabError(f"{shown}: machines[{i}].{key}: expected lowercase letters, digits and '-'")
        result.append(Machine(entry["name"], entry["image"]))
    if len({m.name for m in result}) != len(result):
        raise LabError(f"{shown}: machines: names must be unique")
    return result


def catalog_base(artifacts: Path) -> str:
    """$GOLDEN_CATALOG, or the local artifacts (whose catalogs list tested versions)."""
    return settings.catalog() or str(artifacts)


def check_catalogs(machines: list[Machine], base: str, artifacts: Path, say=print) -> tuple[str, dict[str, str]]:
    """Checks each image's catalog; returns the catalog base Vagrant is to use
    and the version of each image's box (the newest; Vagrant is held to it, so
    a box of another version installed earlier is never taken instead). A
    published catalog is read once, verified with its newest box when
    GOLDEN_ALLOWED_SIGNERS is set, and copied into .lab/catalog/: Vagrant reads
    exactly the bytes that were checked, and refuses a box whose checksum is
    not the catalog's."""
    local = base == str(artifacts)
    if local:
        for image in {m.image for m in machines}:
            write_local_catalog(artifacts / image)
    elif not settings.allowed_signers():
        say(f"warning: the boxes of {base} are not verified: set GOLDEN_ALLOWED_SIGNERS to the publisher's "
            "allowed-signers file")
    repo = open_repository(base)
    checked, versions = {}, {}
    for image in sorted({m.image for m in machines}):
        raw = repo.read(f"{image}/{CATALOG}")
        try:
            listed = catalog_versions(json.loads(raw), repo.url(f"{image}/{CATALOG}")) if raw else None
        except (ValueError, GoldenError):
            raise LabError(f"{repo.url(image + '/' + CATALOG)}: not a valid box catalog") from None
        if not listed:
            hint = "run ./inv test to build and validate it" if local else "publish it there"
            raise LabError(f"no tested box of {image!r} in the catalog {repo.url(image + '/' + CATALOG)}: {hint}, "
                           f"or set GOLDEN_CATALOG to a published repository")
        if not local and settings.allowed_signers():
            # The box Vagrant will take (the newest), checked against its signed statement first.
            verify(base, image, allowed_signers=settings.allowed_signers(), say=lambda *_: None, catalog_raw=raw)
        checked[image], versions[image] = raw, max(listed, key=version_key)
    if local:
        return base, versions
    copy = STATE_DIR / "catalog"
    shutil.rmtree(copy, ignore_errors=True)
    for image, raw in checked.items():
        (copy / image).mkdir(parents=True)
        (copy / image / CATALOG).write_bytes(raw)
    return str(copy), versions


def _url(base: str) -> str:
    return base if "://" in base else Path(base).resolve().as_uri()


def _read_state() -> dict | None:
    path = STATE_DIR / "state.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _vagrant_env(base: str, lab_file: Path, versions: dict[str, str] | None = None) -> dict:
    return vagrant_env(STATE_DIR / "vagrant", STATE_DIR, GOLDEN_CATALOG=_url(base), GOLDEN_LAB=str(lab_file),
                       GOLDEN_BOX_VERSIONS=",".join(f"{image}={v}" for image, v in sorted((versions or {}).items())))


def lab_up(artifacts: Path, lab_file: Path = LAB_FILE, echo=sys.stdout) -> None:
    machines = load_lab(lab_file)
    STATE_DIR.mkdir(exist_ok=True)
    log = BuildLog(STATE_DIR / "lab.log", echo=echo)
    base, versions = check_catalogs(machines, catalog_base(artifacts), artifacts, log.say)
    state = _read_state()
    if state and state["netns"] and not daemon_answers(LibvirtSession(state["netns"])):
        log.say("libvirt: the lab's daemon is gone (a reboot?); starting it again")
        stop_private_libvirt(state["netns"], state["pids"])
        state = None
    if state is None:
        session, pids = open_session(NETNS, STATE_DIR, log.say)
        state = {"netns": session.netns, "pids": pids}
    state["lab"] = str(Path(lab_file).resolve())  # lab.down and lab.ssh act on this lab
    state["catalog"], state["versions"] = base, versions
    (STATE_DIR / "state.json").write_text(json.dumps(state) + "\n")
    session = LibvirtSession(state["netns"])
    with log.stage(f"vagrant up ({', '.join(m.name for m in machines)}; catalog {_url(catalog_base(artifacts))})"):
        try:
            log.run(session.wrap(vagrant_command("up", "--provider", "libvirt")), cwd=VAGRANT_DIR,
                    env=_vagrant_env(base, lab_file, versions))
        except GoldenError as exc:
            raise LabError(f"{exc}\n  the lab is partly up: ./inv lab.down removes it") from None
    log.say(f"lab up: {', '.join(m.name for m in machines)}. Log in with ./inv lab.ssh NAME; "
            f"remove it with ./inv lab.down")


def require_no_lab() -> None:
    """./inv test brings up and takes down a lab of its own in .lab: never
    while a user's lab is up there."""
    if _read_state() is not None:
        raise LabError(f"a lab is up ({STATE_DIR / 'state.json'}): ./inv test brings up and takes down a lab "
                       f"of its own; take yours down first: ./inv lab.down")


def _lab_file(state: dict) -> Path:
    return Path(state.get("lab") or LAB_FILE)


def _catalog(state: dict, artifacts: Path) -> str:
    return state.get("catalog") or catalog_base(artifacts)


def lab_down(artifacts: Path, echo=sys.stdout) -> None:
    state = _read_state()
    if state is None:
        print("no lab is up", file=echo)
        return
    log = BuildLog(STATE_DIR / "lab.log", echo=echo)
    session = LibvirtSession(state["netns"])
    try:
        with log.stage("vagrant destroy"):
            if daemon_answers(session):
                log.run(session.wrap(vagrant_command("destroy", "--force")), cwd=VAGRANT_DIR,
                        env=_vagrant_env(_catalog(state, artifacts), _lab_file(state), state.get("versions")))
                delete_volumes("golden-VAGRANTSLASH-", session, log)
    finally:
        if state["netns"]:
            stop_private_libvirt(state["netns"], state["pids"])
        shutil.rmtree(STATE_DIR / "vagrant", ignore_errors=True)
        shutil.rmtree(STATE_DIR / "catalog", ignore_errors=True)
        (STATE_DIR / "state.json").unlink()
    log.say(f"lab down: VMs and box volumes removed"
            f"{', libvirt daemons stopped, namespace ' + NETNS + ' deleted' if state['netns'] else ''}")


def lab_ssh(machine: str, command: str | None, artifacts: Path) -> int:
    state = _read_state()
    if state is None:
        raise LabError("no lab is up: ./inv lab.up")
    args = ["vagrant", "ssh", machine] + (["-c", command] if command else [])
    return subprocess.run(LibvirtSession(state["netns"]).wrap(args), cwd=VAGRANT_DIR,
                          env=_vagrant_env(_catalog(state, artifacts), _lab_file(state),
                                                           state.get("versions"))).returncode
