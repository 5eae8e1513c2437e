"""invoke tasks: thin wrappers; the logic lives in the golden package."""
import signal

from invoke import Collection, Exit, task

from golden.errors import GoldenError


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # lets cleanup (finally blocks) run


signal.signal(signal.SIGTERM, _terminate)


def _guard(fn):
    try:
        return fn()
    except GoldenError as exc:
        raise Exit(f"error: {exc}", code=1)


@task(help={"image": "image spec name (default: infra)",
            "all": "build every image spec in images/",
            "jobs": "with --all: build up to N images at once (shared stages are built once)",
            "force": "rebuild every stage, even when an artifact or cache entry of the current inputs exists",
            "locked": "install exactly images/<name>.lock, or fail before any stage naming what is missing"})
def build(c, image=None, all=False, jobs=1, force=False, locked=False):
    """Build image(s) from the archives' current packages (or exactly the lock with --locked)."""
    from golden.build.pipeline import build_images, require_tools
    from golden.spec import DEFAULT_IMAGE, select_specs

    def run():
        if all and image:
            raise GoldenError("--image and --all: choose one")
        specs = select_specs(None if all else image or DEFAULT_IMAGE)
        require_tools()
        build_images(specs, jobs=int(jobs), force=force, locked=locked)
    _guard(run)


@task(help={"image": "image spec name, from images/ or tests/images (default: all of both)"})
def test(c, image=None):
    """Unit tests, then each image booted in Vagrant and validated with testinfra."""
    from golden.build.pipeline import require_tools
    from golden.spec import select_specs
    from golden.verify.suite import run_test_suite

    def run():
        specs = select_specs(image, tests=True)
        require_tools()
        if not run_test_suite(specs, whole=image is None):
            raise Exit(code=1)
    _guard(run)


@task(help={"to": "box repository: a directory or an http(s):// WebDAV base URL "
                  "(credentials: GOLDEN_PUBLISH_USER/GOLDEN_PUBLISH_PASSWORD or GOLDEN_PUBLISH_TOKEN)",
            "image": "image spec name (default: every spec in images/)",
            "version": "version to publish (default: latest)",
            "force": "replace a version already published with different content (never skips the test gate)",
            "keep": "keep only the newest N versions in the repository and catalog"})
def publish(c, to, image=None, version=None, force=False, keep=None):
    """Publish tested image(s): files, signed SHA256SUMS, then the Vagrant catalog."""
    from golden.settings import artifacts_dir
    from golden.publish.release import PublishError, publish as publish_artifact
    from golden.spec import select_specs

    def run():
        for spec in select_specs(image):
            artifact = artifacts_dir() / spec.name / (version or "latest")
            if not artifact.is_dir():
                raise PublishError(f"{spec.name}: no built artifact {artifact}")
            publish_artifact(artifact.resolve(), to, force=force, keep=int(keep) if keep else None)
    _guard(run)


@task(help={"from_": "box repository: a directory or an http(s):// base URL", "image": "image name",
            "version": "version to check (default: newest in the catalog)"})
def verify(c, from_, image, version=None):
    """Check a published image's signature and checksums."""
    from golden.publish.release import verify as verify_published
    _guard(lambda: verify_published(from_, image, version))


@task(help={"to": "box repository the version was published to (a directory or an http(s):// URL)",
            "image": "image name", "version": "the version to revoke", "reason": "why, one line (users see it)"})
def revoke(c, to, image, version, reason):
    """Withdraw a published version: signed notice, and the catalog no longer offers it."""
    from golden.publish.release import revoke as revoke_published
    _guard(lambda: revoke_published(to, image, version, reason))


@task(help={"from_": "box repository: a directory or an http(s):// base URL", "image": "image name",
            "version": "exit 1 unless this version is offered (e.g. the one your machines run)",
            "json": "print the list as JSON"})
def releases(c, from_, image, version=None, json=False):
    """List a published image's versions from its signed catalog: offered or revoked (when, why)."""
    from json import dumps
    from golden.publish.release import check_offered, list_releases, releases_text

    listing = _guard(lambda: list_releases(from_, image))
    print(dumps(listing, indent=2) if json else releases_text(listing))
    if version:
        _guard(lambda: check_offered(from_, image, version))


@task(help={"image": "image spec name (default: every image with artifacts)",
            "keep": "versions to keep per image (default 1: the newest)",
            "cache": "remove the whole stage cache ($GOLDEN_CACHE or ~/.cache/golden); "
                     "without it, only entries no current image spec uses and packages no lock pins"})
def clean(c, image=None, keep=1, cache=False):
    """Remove failed builds, old versions and unused stage cache entries."""
    from golden.settings import artifacts_dir
    from golden.build.clean import clean as clean_up
    from golden.spec import select_specs

    def run():
        names = [s.name for s in select_specs(image)] if image else \
            sorted(p.name for p in artifacts_dir().iterdir() if p.is_dir()) if artifacts_dir().is_dir() else []
        specs = None if cache else select_specs(None, tests=True)  # test-only images keep their cache too
        clean_up([artifacts_dir() / name for name in names], int(keep), specs, whole_cache=cache)
    _guard(run)


@task(help={"lab": "lab layout (default: vagrant/lab.yaml)"})
def lab_up(c, lab=None):
    """Bring up the lab: one VM per machine of vagrant/lab.yaml, boxes from $GOLDEN_CATALOG."""
    from pathlib import Path

    from golden.settings import artifacts_dir
    from golden.lab import LAB_FILE, lab_up as up
    _guard(lambda: up(artifacts_dir(), Path(lab) if lab else LAB_FILE))


@task
def lab_down(c):
    """Remove the lab: its VMs, box volumes, and the private libvirt daemon and namespace."""
    from golden.settings import artifacts_dir
    from golden.lab import lab_down as down
    _guard(lambda: down(artifacts_dir()))


@task(help={"machine": "machine name from the lab layout", "command": "run this instead of a shell"})
def lab_ssh(c, machine, command=None):
    """Log in to a lab machine (inside the lab's network namespace when there is one)."""
    from golden.settings import artifacts_dir
    from golden.lab import lab_ssh as ssh
    code = _guard(lambda: ssh(machine, command, artifacts_dir()))
    if code:
        raise Exit(code=code)


@task(help={"update": "resolve the packages against the mirror now and rewrite the lock",
            "image": "image spec name (default: every spec in images/ and tests/images/)"})
def lock(c, update=False, image=None):
    """Show each image's lock (exact package versions), or refresh it with --update."""
    from golden.build.pipeline import require_tools, update_lock
    from golden.build.lock import lock_path, read_lock
    from golden.spec import select_specs

    def run():
        specs = select_specs(image, tests=True)  # the test-only images' locks are kept current too
        if update:
            require_tools()
        for spec in specs:
            if update:
                update_lock(spec)
                continue
            sections = read_lock(lock_path(spec))
            counts = ", ".join(f"{name}: {len(p)} packages" for name, p in (sections or {}).items())
            print(f"{lock_path(spec)}: {counts or 'none yet (the next build writes it)'}")
    _guard(run)


@task(help={"image": "image spec name (default: every spec in images/)"})
def outdated(c, image=None):
    """Pending updates of the newest tested image(s); exit 0 current, 1 rebuild due, 2 error."""
    from golden.settings import artifacts_dir
    from golden.build.outdated import report_outdated
    from golden.spec import select_specs

    try:
        code = report_outdated(select_specs(image), artifacts_dir())
    except GoldenError as exc:
        raise Exit(f"error: {exc}", code=2)
    if code:
        raise Exit(code=code)


@task(help={"image": "image to measure (default: infra)"})
def bench(c, image="infra"):
    """Measure build speed, size and Unix socket vs TCP; report in artifacts/bench/ (about 15 min)."""
    from golden.bench.bench import run_bench
    from golden.settings import artifacts_dir
    from golden.spec import select_specs

    def run():
        select_specs(image)  # a clear error for an unknown or invalid image, before anything runs
        run_bench(image, artifacts_dir() / "bench")
    _guard(run)


ns = Collection(build, test, publish, verify, revoke, releases, clean, lock, outdated, bench)
ns.add_collection(Collection("lab", up=lab_up, down=lab_down, ssh=lab_ssh))
