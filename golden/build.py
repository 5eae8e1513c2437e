"""./inv build: runs the stages of design.md for one image spec.

artifacts/<name>/.<version>.partial/ holds a build in progress; it is renamed
to artifacts/<name>/<version>/ only when every stage has succeeded, then
`latest` is pointed at it. A failed build keeps only its build.log there.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

from golden import archive, changes, containers, disk, lock, package, packer, rootfs
from golden.accel import probe_accelerator
from golden.cache import alias, cached_stage, hash_files, sha256_file, stage_key
from golden.errors import GoldenError
from golden.freshness import Plan, check_current, plan_build
from golden.manifest import read_manifest, write_manifest
from golden.runner import BuildLog, capture, stop_all_running
from golden.spec import ImageSpec
from golden.templates import render_steps, render_tree
from golden.vagrant_keys import insecure_key_pair

from golden.paths import REPO
ARTIFACTS = Path(os.environ.get("GOLDEN_ARTIFACTS") or REPO / "artifacts")
STAGE_CODE = [Path(m.__file__) for m in (rootfs, disk, containers, packer, package, lock, archive)] + [Path(__file__)]


def build_key(spec: ImageSpec) -> str:
    """Everything that shapes the artifact: spec, lock, provisioning files, stage code."""
    provision_files = [p for p in (REPO / "provision").rglob("*") if p.is_file()]
    provision_files += [lock.lock_path(spec)] if lock.lock_path(spec).is_file() else []
    return stage_key(spec=spec.canonical_json(), provision=hash_files(provision_files),
                     code=hash_files(STAGE_CODE))


def version_dirs(image_dir: Path) -> list[Path]:
    """Completed versions, newest first."""
    if not image_dir.is_dir():
        return []
    dirs = [d for d in image_dir.iterdir()
            if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")
            and (d / "manifest.json").is_file()]
    return sorted(dirs, key=lambda d: d.name, reverse=True)


def find_artifact(spec: ImageSpec, artifacts: Path = ARTIFACTS) -> Path | None:
    """The newest completed version built from exactly the current inputs."""
    key = build_key(spec)
    for d in version_dirs(artifacts / spec.name):
        if read_manifest(d / "manifest.json").get("build_key") == key:
            return d
    return None


def new_version(now: dt.datetime | None = None) -> str:
    """Build time as a version Vagrant accepts and sorts: YYYYMMDD.HHMMSS."""
    return (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%d.%H%M%S")


def build_images(specs: list[ImageSpec], jobs: int = 1, force: bool = False, echo=sys.stdout,
                 artifacts: Path = ARTIFACTS, locked: bool = False) -> list[Path]:
    """Builds specs, up to `jobs` at once. Stages they share (same cache key)
    are built once: the others wait for it and reuse it."""
    if jobs <= 1 or len(specs) <= 1:
        return [build_image(spec, artifacts, force=force, echo=echo, locked=locked) for spec in specs]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {spec.name: pool.submit(build_image, spec, artifacts, force=force, echo=echo,
                                          label=f"{spec.name}: ", locked=locked) for spec in specs}
        try:
            wait(futures.values())
        except BaseException:  # interrupted: stop every tool of every build, then let them fail
            stop_all_running()
            raise
    failed = [name for name, f in futures.items() if f.exception()]
    if failed:
        raise GoldenError(f"build failed: {', '.join(failed)}: "
                          + "; ".join(str(futures[n].exception()).splitlines()[0] for n in failed))
    return [f.result() for f in futures.values()]


def requested_packages(spec: ImageSpec) -> dict[str, list[str]]:
    """{lock section: the packages the spec asks for in it}."""
    return {"rootfs": rootfs.all_packages(spec),
            **{containers.lock_section(image): sorted(image.packages) for image in spec.container_images}}


def build_image(spec: ImageSpec, artifacts: Path = ARTIFACTS, force: bool = False, echo=sys.stdout,
                label: str = "", locked: bool = False) -> Path:
    plan = plan_build(spec, requested_packages(spec), locked)  # before anything: fails in seconds
    if not force and not plan.refresh and (existing := find_artifact(spec, artifacts)):
        shown = existing.relative_to(REPO) if existing.is_relative_to(REPO) else existing
        print(f"{spec.name}: up to date: {shown} ({plan.summary})", file=echo)
        return existing
    key = build_key(spec)  # before any stage runs: edits made during the build can't mislabel it
    accelerator = probe_accelerator()
    version = new_version()
    image_dir = artifacts / spec.name
    partial = image_dir / f".{version}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    log = BuildLog(partial / "build.log", echo=echo, label=label)
    log.say(f"building {spec.name} {version} (accelerator: {accelerator}); log: {log.path}")
    log.say(f"packages: {plan.reason}")
    try:
        manifest = _run_stages(spec, version, accelerator, partial, log, force, plan)
        if plan.refresh:  # what this build installed becomes the lock
            manifest["changes"], note = _refresh_lock(spec, manifest, plan, log)
            key = build_key(spec)  # same artifact as a pinned build would make
        else:
            manifest["changes"], note = [], f"Built exactly {lock.lock_path(spec).name}: no package changed."
        manifest["build_key"] = key
        manifest["lock_sha256"] = sha256_file(lock.lock_path(spec))
        (partial / "CHANGES.md").write_text(changes.changes_markdown(spec.name, version, manifest["changes"], note))
        write_manifest(partial / "manifest.json", manifest)
        final = image_dir / version
        partial.rename(final)
        _point_latest(image_dir, version)
        print(f"{spec.name}: built {final}", file=echo)
        return final
    except BaseException:
        for item in partial.iterdir() if partial.is_dir() else []:
            if item.name != "build.log":
                shutil.rmtree(item) if item.is_dir() else item.unlink()
        print(f"{spec.name}: build failed; log: {log.path}", file=sys.stderr)
        raise


def stage_keys(spec: ImageSpec, locked: dict | None = None, archive_digest: str | None = None) -> dict:
    """The cache key of each cached stage of spec: everything the stage reads:
    the versions the lock pins, or for an unpinned run the state of the
    archives (their index digest) it resolves against."""
    locked = locked or {}
    archive_digest = None if locked else archive_digest
    _, public_key = insecure_key_pair()
    mmdebstrap_version = capture(["mmdebstrap", "--version"]).strip()
    rootfs_key = stage_key(base=spec.base, packages=rootfs.all_packages(spec), tool=mmdebstrap_version,
                           pins=locked.get("rootfs"), archive=archive_digest,
                           code=hash_files([Path(rootfs.__file__), rootfs.CUSTOMIZE_HOOK, public_key,
                                            Path(lock.__file__), lock.MARK_AUTO_HOOK, Path(archive.__file__)]))
    container_code = hash_files([Path(containers.__file__), Path(lock.__file__), lock.MARK_AUTO_HOOK, Path(archive.__file__),
                                 *containers.CONTAINER_FILES.iterdir()])
    return {
        "rootfs": rootfs_key,
        "disk": stage_key(rootfs=rootfs_key, size=spec.disk.size_bytes, code=hash_files([Path(disk.__file__)])),
        "container": {image.name: stage_key(base=spec.base, image=image, tool=mmdebstrap_version,
                                            pins=locked.get(containers.lock_section(image)), archive=archive_digest,
                                            code=container_code)
                      for image in spec.container_images},
    }


def _refresh_lock(spec: ImageSpec, manifest: dict, plan: Plan, log: BuildLog) -> tuple[list[dict], str]:
    """Rewrites the lock from what this build installed; names each change."""
    old = lock.read_lock(lock.lock_path(spec))
    new = {"rootfs": manifest["packages"], **manifest["container_packages"]}
    found = changes.diff_packages(changes.merged_sections(old or {}), changes.merged_sections(new),
                                  plan.state, spec.base.suite) if old else []
    _adopt_lock(spec, new, log, plan.state.digest)
    if old is None:
        return found, f"First build: {lock.lock_path(spec).name} written ({len(changes.merged_sections(new))} packages)."
    security = sum(1 for c in found if c["security"])
    log.say(f"    {len(found)} packages changed since the last lock ({security} security updates):")
    for change in found:
        log.say(f"      {changes.change_line(change)}")
    return found, (f"{lock.lock_path(spec).name} refreshed: {len(found)} packages changed "
                   f"({security} security updates).")


def _adopt_lock(spec: ImageSpec, sections: dict, log: BuildLog, archive_digest: str) -> None:
    """Writes the lock from what an unpinned run installed, and files its
    cache entries under the pinned keys too: a pinned build installs the
    same, so the next build reuses them."""
    unpinned = stage_keys(spec, archive_digest=archive_digest)
    requested = {section: set(packages) for section, packages in requested_packages(spec).items()}
    lock.write_lock(lock.lock_path(spec), sections, requested)
    pinned = stage_keys(spec, sections)
    for kind in ("rootfs", "disk"):
        alias(kind, unpinned[kind], pinned[kind])
    for name, key in unpinned["container"].items():
        alias("container", key, pinned["container"][name])
    log.say(f"    wrote {lock.lock_path(spec).name} (the versions this build installed)")


def update_lock(spec: ImageSpec, echo=sys.stdout) -> Path:
    """Resolves the spec's packages against the archives now (the root file
    system and each container image, without pins) and rewrites
    images/<name>.lock. The runs are cache entries of the archives' state, so
    images that share a package set resolve it once."""
    _, public_key = insecure_key_pair()
    state = archive.fetch_state(spec.base)
    keys = stage_keys(spec, archive_digest=state.digest)
    path = lock.lock_path(spec)
    with tempfile.TemporaryDirectory(prefix=f"golden-lock-{spec.name}-") as tmp:
        log = BuildLog(Path(tmp) / "lock.log", echo=echo)
        with log.stage(f"{spec.name}: resolve rootfs packages"):
            entry = cached_stage("rootfs", keys["rootfs"],
                                 lambda d: rootfs.build_rootfs(spec, d, public_key, log), log)
        manifest = {"packages": rootfs.read_packages(entry), "container_packages": {}}
        for image in spec.container_images:
            with log.stage(f"{spec.name}: resolve container image {image.name}"):
                entry = cached_stage("container", keys["container"][image.name], lambda d, image=image:
                                     containers.build_container_image(spec, image, d, log), log)
            manifest["container_packages"][containers.lock_section(image)] = containers.read_packages(entry, image)
        _refresh_lock(spec, manifest, Plan(None, state, "lock --update"), log)
    print(f"{spec.name}: wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}", file=echo)
    return path


def _run_stages(spec: ImageSpec, version: str, accelerator: str, out: Path, log: BuildLog,
                force: bool, plan: Plan) -> dict:
    private_key, public_key = insecure_key_pair()
    locked = plan.pins or {}
    keys = stage_keys(spec, locked, plan.state.digest if plan.state else None)
    rootfs_key, disk_key = keys["rootfs"], keys["disk"]

    def current(packages: dict[str, str], where: str) -> None:
        if not plan.locked:
            check_current(packages, plan.state, where)
    with log.stage("rootfs"):
        rootfs_dir = cached_stage("rootfs", rootfs_key, lambda d: rootfs.build_rootfs(
            spec, d, public_key, log, locked.get("rootfs")), log, force)
        current(rootfs.read_packages(rootfs_dir), "rootfs")

    def make_disk(d: Path) -> None:
        root_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"golden-root:{disk_key}"))
        disk.make_disk(rootfs_dir / "rootfs.tar", spec.disk.size_bytes, root_uuid, d / "disk.qcow2", log)
        (d / "root-uuid").write_text(root_uuid + "\n")  # the entry may be filed under other keys too
    with log.stage("disk"):
        disk_dir = cached_stage("disk", disk_key, make_disk, log, force)
    root_uuid = (disk_dir / "root-uuid").read_text().strip()

    work = out / "work"
    container_tars, container_packages = {}, {}
    if spec.container_images:
        with log.stage("containers"):
            for image in spec.container_images:
                entry = cached_stage("container", keys["container"][image.name], lambda d, image=image:
                                     containers.build_container_image(
                                         spec, image, d, log, locked.get(containers.lock_section(image))),
                                     log, force)
                container_tars[image.name] = entry / f"{image.name}.tar"
                container_packages[containers.lock_section(image)] = containers.read_packages(entry, image)
                current(container_packages[containers.lock_section(image)], f"container image {image.name}")

    with log.stage("provision"):
        render_tree(spec, work / "files" / "root")
        steps_dir = render_steps(spec, packer.PROVISION_STEPS, work / "steps")
        serial_log = work / "serial.log"
        template = packer.packer_template(
            spec, disk=disk_dir / "disk.qcow2", kernel=rootfs_dir / "vmlinuz", initrd=rootfs_dir / "initrd.img",
            root_uuid=root_uuid, accelerator=accelerator, output_dir=work / "out", files_dir=work / "files",
            steps_dir=steps_dir, ssh_key=private_key, serial_log=serial_log, facts_out=work / "facts.json",
            container_tars=container_tars)
        template_path = packer.write_template(template, work / "packer.json")
        try:
            packer.run_packer(template_path, log)
        finally:
            if serial_log.exists():
                log.write("---- guest serial console ----\n" + serial_log.read_text(errors="replace"))

    with log.stage("package"):
        qcow2 = out / f"{spec.name}-{version}.qcow2"
        box = out / f"{spec.name}-{version}.libvirt.box"
        sealed = work / "out" / f"{spec.name}.qcow2"
        package.compress_qcow2(sealed, qcow2, log)
        package.make_box_disk(sealed, public_key, work / "box.img", log)
        package.make_box(work / "box.img", spec.disk.size_bytes, box)
        files = package.describe_files([qcow2, box])
        package.write_sha256sums(files, out / "SHA256SUMS")
        facts = json.loads((work / "facts.json").read_text())
        # What each size step leaves (./inv bench reports the savings).
        sizes = {"rootfs_tar": (rootfs_dir / "rootfs.tar").stat().st_size,
                 "sealed_qcow2": sealed.stat().st_size, "qcow2": qcow2.stat().st_size,
                 "box": box.stat().st_size}
        shutil.rmtree(work)

    return {
        "name": spec.name,
        "version": version,
        "description": spec.description,
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "spec_sha256": spec.sha256,
        "base": {"suite": spec.base.suite, "mirror": spec.base.mirror,
                 "sources": [p.sources_line(spec.base.components) for p in archive.pockets(spec.base)]},
        "hostname": spec.hostname,
        "disk_size": spec.disk.size_bytes,
        "packages": rootfs.read_packages(rootfs_dir),
        "container_packages": container_packages,
        "files": files,
        "sizes": sizes,
        "stages": dict(log.stage_seconds),
        "accelerator": accelerator,
        "facts": facts,
    }


def _point_latest(image_dir: Path, version: str) -> None:
    tmp = image_dir / f".latest.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(version, tmp)
    os.replace(tmp, image_dir / "latest")


def require_tools() -> None:
    tools = ("mmdebstrap", "mke2fs", "debugfs", "e2fsck", "sfdisk", "qemu-img", "qemu-system-x86_64", "packer")
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        raise GoldenError(f"missing tools: {', '.join(missing)} (run through ./inv, which installs them)")
