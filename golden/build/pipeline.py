"""./inv build: the pipeline of design.md as an explicit list of stages.

Each stage is a module of golden/build/stages with
    run(ctx)        what it does: reads the BuildContext (the spec, the plan,
                    what earlier stages made) and records its own results;
    entries(ctx)    for a cached stage: its cache entries, each with
                    everything it reads. An entry's key is the hash of those
                    inputs and of the stage's code: its module, every golden
                    module it imports (transitively) and the files they
                    declare in FILES, so no hand-kept list can go stale.

artifacts/<name>/.<version>.partial/ holds a build in progress; it is renamed
to artifacts/<name>/<version>/ only when every stage has succeeded, then
`latest` is pointed at it. A failed build keeps only its build.log there.
"""
from __future__ import annotations

import ast
import datetime as dt
import importlib
import os
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from golden import settings
from golden.build import changes, lock
from golden.build.archive import ArchiveState, fetch_state, pockets
from golden.build.cache import alias, cache_dir, cached_stage, hash_files, sha256_file, stage_key, use_cache
from golden.build.freshness import Plan, check_current, plan_build
from golden.build.manifest import read_manifest, version_dirs, write_manifest
from golden.build.slots import in_a_slot
from golden.build.space import give_back_space, require_free_space
from golden.build.stages import containers, disk, package, provision, rootfs
from golden.errors import GoldenError
from golden.paths import REPO
from golden.spec import ImageSpec, is_test_spec, select_specs, spec_warnings
from golden.vm.accel import probe_accelerator
from golden.vm.keys import insecure_key_pair
from golden.vm.runner import BuildLog, refuse_after_interrupt, stop_all_running


@dataclass(frozen=True)
class Stage:
    name: str
    module: ModuleType
    cache_kind: str | None = None  # the cache directory of its entries; None: not cached

    def cache_keys(self, ctx: "BuildContext") -> dict[str, str]:
        if not self.cache_kind:
            return {}
        code = code_digest(self.module.__name__)
        return {entry: stage_key(**inputs, code=code) for entry, inputs in self.module.entries(ctx).items()}


STAGES = [
    Stage("containers", containers, "container"),   # container images from Debian packages
    Stage("rootfs", rootfs, "rootfs"),              # mmdebstrap: the suite, every package, the container images
    Stage("disk", disk, "disk"),                    # GPT + ext4 from the rootfs tar, no mounts
    Stage("provision", provision),                  # Packer boots the disk, runs provision/, seals
    Stage("package", package),                      # compressed qcow2, Vagrant box, SHA256SUMS
]
CACHED = {stage.name: stage for stage in STAGES if stage.cache_kind}


@dataclass
class BuildContext:
    """What a build knows: its inputs, and what each stage made so far."""
    spec: ImageSpec
    plan: Plan
    log: BuildLog
    out: Path | None = None        # the artifact directory being built
    version: str = ""
    accelerator: str = "tcg"
    force: bool = False
    login_key: tuple[Path, Path] = field(default_factory=insecure_key_pair)  # Vagrant's, for the first login
    keys: dict[str, dict[str, str]] = field(default_factory=dict)  # stage -> entry -> cache key
    results: dict = field(default_factory=dict)                      # stage -> what it made

    def pins(self, section: str) -> dict[str, str] | None:
        return (self.plan.pins or {}).get(section)

    def archive_digest(self) -> str | None:
        """An unpinned run's packages are the archives' of the moment: part of its key."""
        return self.plan.state.digest if self.plan.refresh else None

    def cached(self, stage: str, entry: str, build) -> Path:
        return cached_stage(CACHED[stage].cache_kind, self.keys[stage][entry], build, self.log, self.force)

    def require_current(self, packages: dict[str, str], where: str) -> None:
        if not self.plan.locked:
            check_current(packages, self.plan.state, where)

    def compute_keys(self) -> "BuildContext":
        for stage in STAGES:  # in order: a key may include an earlier stage's
            self.keys[stage.name] = stage.cache_keys(self)
        return self


def golden_imports(path: Path, root: Path = REPO) -> set[Path]:
    """The files of the golden modules path imports (directly)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] != "golden":
                continue
            base = root.joinpath(*name.split("."))
            found |= {p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()}
    return found


def code_files(module: str, root: Path = REPO) -> set[Path]:
    """A module's code: its file, the golden modules it imports (transitively),
    and the files each declares in FILES (relative to root)."""
    todo, seen = [root.joinpath(*module.split(".")).with_suffix(".py")], set()
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += golden_imports(path, root)
    files = set(seen)
    for path in seen:
        name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for declared in getattr(importlib.import_module(name), "FILES", []):
            target = root / declared
            files |= {p for p in target.rglob("*") if p.is_file()} if target.is_dir() else {target}
    return files


def code_digest(module: str, root: Path = REPO) -> str:
    return hash_files(sorted(code_files(module, root)))


def requested_packages(spec: ImageSpec) -> dict[str, list[str]]:
    """{lock section: the packages the spec asks for in it}."""
    return {rootfs.SECTION: rootfs.all_packages(spec),
            **{containers.lock_section(image): sorted(image.packages) for image in spec.container_images}}


def stage_keys(spec: ImageSpec, locked: dict | None = None, archive_digest: str | None = None) -> dict:
    """The cache keys of spec's cached stages for a build pinned to locked, or
    for an unpinned one resolving against the archives' state archive_digest:
    {"rootfs": key, "disk": key, "container": {image: key}}."""
    state = ArchiveState([], [], archive_digest or "")
    ctx = BuildContext(spec, Plan(locked or None, state, ""), log=None).compute_keys()
    return {"rootfs": ctx.keys["rootfs"]["rootfs"], "disk": ctx.keys["disk"]["disk"],
            "container": dict(ctx.keys["containers"])}


def build_key(spec: ImageSpec) -> str:
    """Everything that shapes the artifact: spec, lock, provisioning files, the pipeline's code."""
    provision_files = [p for p in (REPO / "provision").rglob("*") if p.is_file()]
    provision_files += [lock.lock_path(spec)] if lock.lock_path(spec).is_file() else []
    provision_files += [REPO / p for image in spec.container_images for p in image.programs]
    return stage_key(spec=spec.canonical_json(), provision=hash_files(provision_files),
                     code=code_digest(__name__))


def find_artifact(spec: ImageSpec, artifacts: Path | None = None) -> Path | None:
    """The newest completed version built from exactly the current inputs."""
    key = build_key(spec)
    for d in version_dirs((artifacts or settings.artifacts_dir()) / spec.name):
        if read_manifest(d / "manifest.json").get("build_key") == key:
            return d
    return None


def new_version(now: dt.datetime | None = None) -> str:
    """Build time as a version Vagrant accepts and sorts: YYYYMMDD.HHMMSS."""
    return (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%d.%H%M%S")


def build_images(specs: list[ImageSpec], jobs: int = 1, force: bool = False, echo=sys.stdout,
                 artifacts: Path | None = None, locked: bool = False) -> list[Path]:
    """Builds specs, up to `jobs` at once. Stages they share (same cache key)
    are built once: the others wait for it and reuse it. Then gives back the
    disk space the new builds superseded (golden/build/space.py)."""
    artifacts = artifacts or settings.artifacts_dir()
    settings.keep_versions(), settings.cache_max_gb()  # a bad value fails before any work, not after it
    if jobs <= 1 or len(specs) <= 1:
        built = [build_image(spec, artifacts, force=force, echo=echo, locked=locked) for spec in specs]
        _give_back_space(specs, built, artifacts, echo)
        return built
    # Builds side by side: room for as many at once as have no artifact of their inputs yet.
    pending = [spec for spec in specs if force or not find_artifact(spec, artifacts)]
    if len(pending) > 1:
        require_free_space(artifacts, builds=min(jobs, len(pending)),
                           warm=not force and all(_cache_holds(spec) for spec in pending))
    slots = threading.BoundedSemaphore(jobs)  # a build waiting for another's stage gives its slot up meanwhile
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        futures = {spec.name: pool.submit(_build_in_a_slot, slots, spec, artifacts, force=force, echo=echo,
                                          label=f"{spec.name}: ", locked=locked) for spec in specs}
        try:
            wait(futures.values())
        except BaseException:  # interrupted: no queued build starts, every running tool stops
            for future in futures.values():
                future.cancel()
            stop_all_running()
            raise
    failed = [name for name, f in futures.items() if f.exception()]
    if failed:
        raise GoldenError(f"build failed: {', '.join(failed)}: "
                          + "; ".join(str(futures[n].exception()).splitlines()[0] for n in failed))
    built = [f.result() for f in futures.values()]
    _give_back_space(specs, built, artifacts, echo)
    return built


def _build_in_a_slot(slots: threading.BoundedSemaphore, spec: ImageSpec, *args, **kwargs) -> Path:
    with in_a_slot(slots):
        refuse_after_interrupt(spec.name)  # builds still waiting for a slot when the run was stopped
        return build_image(spec, *args, **kwargs)


def _give_back_space(specs: list[ImageSpec], built: list[Path], artifacts: Path, echo) -> None:
    """Old versions of these images (never the ones just built or reused);
    cache entries that neither these specs nor any current one (products and
    test images) use."""
    def say(line: str) -> None:
        print(line, file=echo)
    try:
        current = select_specs(None, tests=True) + specs
    except GoldenError as exc:  # without every spec, no entry is known to be unused
        say(f"cache not pruned: {exc}")
        current = None
    give_back_space([artifacts / spec.name for spec in specs], built, current, say=say)


def build_image(spec: ImageSpec, artifacts: Path | None = None, force: bool = False, echo=sys.stdout,
                label: str = "", locked: bool = False) -> Path:
    artifacts = artifacts or settings.artifacts_dir()
    use_cache()  # from now on, pruning elsewhere waits (./inv clean) or skips (another build's end)
    plan = plan_build(spec, requested_packages(spec), locked)  # before anything: fails in seconds
    if not force and not plan.refresh and (existing := find_artifact(spec, artifacts)):
        shown = existing.relative_to(REPO) if existing.is_relative_to(REPO) else existing
        print(f"{spec.name}: up to date: {shown} ({plan.summary})", file=echo)
        return existing
    require_free_space(artifacts, warm=not force and not plan.refresh and _cache_holds(spec))
    key = build_key(spec)  # before any stage runs: edits made during the build can't mislabel it
    version = new_version()
    partial = artifacts / spec.name / f".{version}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    ctx = BuildContext(spec, plan, BuildLog(partial / "build.log", echo=echo, label=label), out=partial,
                       version=version, accelerator=probe_accelerator(), force=force).compute_keys()
    ctx.log.say(f"building {spec.name} {version} (accelerator: {ctx.accelerator}); log: {ctx.log.path}")
    ctx.log.say(f"packages: {plan.reason}")
    for warning in spec_warnings(spec):
        ctx.log.say(warning)
    try:
        run_stages(ctx)
        manifest = _manifest(ctx)
        if plan.refresh:  # what this build installed becomes the lock
            manifest["changes"], note = refresh_lock(ctx, installed_sections(ctx))
            key = build_key(spec)  # same artifact as a pinned build would make
        else:
            manifest["changes"], note = [], f"Built exactly {lock.lock_path(spec).name}: no package changed."
        manifest.update(build_key=key, lock_sha256=sha256_file(lock.lock_path(spec)))
        (partial / "CHANGES.md").write_text(changes.changes_markdown(spec.name, version, manifest["changes"], note))
        write_manifest(partial / "manifest.json", manifest)
        return _complete(partial, artifacts / spec.name / version, echo)
    except BaseException:
        for item in partial.iterdir() if partial.is_dir() else []:
            if item.name != "build.log":
                shutil.rmtree(item) if item.is_dir() else item.unlink()
        print(f"{spec.name}: build failed; log: {ctx.log.path}", file=sys.stderr)
        raise


def locked_entries(spec: ImageSpec) -> list[tuple[str, str]]:
    """(stage kind, cache key) of every cached stage a build of exactly spec's lock uses."""
    keys = stage_keys(spec, lock.read_lock(lock.lock_path(spec)))
    return [("rootfs", keys["rootfs"]), ("disk", keys["disk"])] + [("container", k) for k in keys["container"].values()]


def _cache_holds(spec: ImageSpec) -> bool:
    """Every stage cache entry a build of exactly the lock uses exists."""
    return all((cache_dir() / kind / key).is_dir() for kind, key in locked_entries(spec))


def run_stages(ctx: BuildContext, only: set[str] | None = None) -> None:
    for stage in STAGES:
        if only is None or stage.name in only:
            with ctx.log.stage(stage.name):
                stage.module.run(ctx)


def installed_sections(ctx: BuildContext) -> dict[str, dict[str, str]]:
    """What the package stages installed, by lock section."""
    return {rootfs.SECTION: rootfs.read_packages(ctx.results["rootfs"]),
            **{c["section"]: c["packages"] for c in ctx.results.get("containers", {}).values()}}


def _manifest(ctx: BuildContext) -> dict:
    spec, sections = ctx.spec, installed_sections(ctx)
    return {
        "name": spec.name,
        "version": ctx.version,
        "description": spec.description,
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "spec_sha256": spec.sha256,
        "base": {"suite": spec.base.suite, "mirror": spec.base.mirror,
                 "sources": [p.sources_line(spec.base.components) for p in pockets(spec.base)]},
        "hostname": spec.hostname,
        "test_only": is_test_spec(spec),  # tests/images: never published
        "apps": [{"name": a.name, "user": a.user, "postgresql": a.postgresql, "valkey_db": a.valkey_db,
                  "container": a.container is not None} for a in spec.apps],
        "sites": [site.address for site in spec.sites],
        "firewall": {"allow": spec.firewall.allow},
        "disk_size": spec.disk.size_bytes,
        "kernel": spec.kernel,
        "outputs": spec.outputs,
        "packages": sections.pop(rootfs.SECTION),
        "container_packages": sections,
        "files": ctx.results["package"]["files"],
        "sizes": ctx.results["package"]["sizes"],
        "stages": dict(ctx.log.stage_seconds),
        "accelerator": ctx.accelerator,
        "facts": ctx.results["package"]["facts"],
    }


def _complete(partial: Path, final: Path, echo) -> Path:
    """The finished build under its version, and `latest` pointed at it."""
    partial.rename(final)
    tmp = final.parent / f".latest.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(final.name, tmp)
    os.replace(tmp, final.parent / "latest")
    print(f"{final.parent.name}: built {final}", file=echo)
    return final


def refresh_lock(ctx: BuildContext, installed: dict[str, dict[str, str]]) -> tuple[list[dict], str]:
    """Rewrites the lock from what an unpinned run installed, names each
    change, and files the run's cache entries under the pinned keys too: a
    pinned build installs the same, so the next build reuses them."""
    spec, path = ctx.spec, lock.lock_path(ctx.spec)
    old = lock.read_lock(path)
    found = changes.diff_packages(changes.merged_sections(old or {}), changes.merged_sections(installed),
                                  ctx.plan.state, spec.base.suite) if old else []
    requested = {section: set(packages) for section, packages in requested_packages(spec).items()}
    lock.write_lock(path, installed, requested)
    pinned = BuildContext(spec, Plan(installed, ctx.plan.state, ""), ctx.log, login_key=ctx.login_key).compute_keys()
    for stage, entries in ctx.keys.items():
        for entry, key in entries.items():
            alias(CACHED[stage].cache_kind, key, pinned.keys[stage][entry])
    ctx.log.say(f"    wrote {path.name} (the versions this build installed)")
    if old is None:
        return found, f"First build: {path.name} written ({len(changes.merged_sections(installed))} packages)."
    security = sum(1 for c in found if c["security"])
    ctx.log.say(f"    {len(found)} packages changed since the last lock ({security} security updates):")
    for change in found:
        ctx.log.say(f"      {changes.change_line(change)}")
    return found, f"{path.name} refreshed: {len(found)} packages changed ({security} security updates)."


def update_lock(spec: ImageSpec, echo=sys.stdout) -> Path:
    """Resolves the spec's packages against the archives now (the package
    stages, without pins) and rewrites images/<name>.lock. The runs are cache
    entries of the archives' state, so images that share a package set
    resolve it once."""
    path = lock.lock_path(spec)
    use_cache()
    with tempfile.TemporaryDirectory(prefix=f"golden-lock-{spec.name}-") as tmp:
        log = BuildLog(Path(tmp) / "lock.log", echo=echo)
        ctx = BuildContext(spec, Plan(None, fetch_state(spec.base), "lock --update"), log).compute_keys()
        run_stages(ctx, only={"rootfs", "containers"})
        refresh_lock(ctx, installed_sections(ctx))
    print(f"{spec.name}: wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}", file=echo)
    return path


def require_tools() -> None:
    tools = ("mmdebstrap", "mke2fs", "debugfs", "e2fsck", "sfdisk", "qemu-img", "qemu-system-x86_64", "packer")
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        raise GoldenError(f"missing tools: {', '.join(missing)} (run through ./inv, which installs them)")
