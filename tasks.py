"""invoke tasks: thin wrappers; the logic lives in the golden package."""
import signal

from invoke import Exit, task

from golden.errors import GoldenError


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # lets cleanup (finally blocks) run


signal.signal(signal.SIGTERM, _terminate)


def _guard(fn):
    try:
        return fn()
    except GoldenError as exc:
        raise Exit(f"error: {exc}", code=1)


@task(help={"image": "image spec name (default: every spec in images/)",
            "force": "rebuild even when an artifact of the current inputs exists"})
def build(c, image=None, force=False):
    """Build image(s): rootfs, disk, provision (Packer), package."""
    from golden.build import build_image, require_tools
    from golden.spec import select_specs

    def run():
        specs = select_specs(image)
        require_tools()
        for spec in specs:
            build_image(spec, force=force)
    _guard(run)


@task(help={"image": "image spec name (default: every spec in images/)"})
def test(c, image=None):
    """Unit tests, then each image booted in Vagrant and validated with testinfra."""
    from golden.build import require_tools
    from golden.spec import select_specs
    from golden.validate import run_test_suite

    def run():
        specs = select_specs(image)
        require_tools()
        if not run_test_suite(specs):
            raise Exit(code=1)
    _guard(run)
