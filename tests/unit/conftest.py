import io
import os
import shutil
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

GOOD_SPEC = """\
name: {name}
hostname: {name}
base:
  suite: trixie
packages: [curl]
disk:
  size: 2G
"""


@pytest.fixture(autouse=True)
def own_state(tmp_path, tmp_path_factory, monkeypatch):
    """What a test's golden has seen (catalog serials) and its lab state are
    its own, never the user's; its stage cache is the test run's (the
    archives' indexes are fetched once), unless the test names its own; its
    tiny builds do not ask for a real build's disk space
    (tests/unit/build/test_space.py sets what it checks)."""
    import golden.build.space
    import golden.lab
    monkeypatch.setenv("GOLDEN_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path_factory.getbasetemp() / "golden-cache"))
    monkeypatch.setattr(golden.lab, "STATE_DIR", tmp_path / ".lab")
    monkeypatch.setattr(golden.build.space, "BUILD_NEEDS", dict.fromkeys(golden.build.space.BUILD_NEEDS, 0))


@pytest.fixture(autouse=True)
def tools_may_start():
    """An interrupt stops this process's tools for good (golden.vm.runner);
    a test that interrupts in-process leaves the next test free to start them."""
    import golden.vm.runner
    yield
    golden.vm.runner._STOPPING.clear()


@pytest.fixture
def images_dir(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    return d


@pytest.fixture
def write_spec(images_dir):
    def write(name: str, text: str | None = None) -> Path:
        path = images_dir / f"{name}.yaml"
        path.write_text(textwrap.dedent(text) if text is not None else GOOD_SPEC.format(name=name))
        return path
    return write


def need(tool: str):
    if not shutil.which(tool):
        pytest.fail(f"{tool} is not installed (./inv installs it)")


def quiet_log(path: Path):
    """A build log whose progress lines are not printed."""
    from golden.vm.runner import BuildLog
    return BuildLog(path, echo=io.StringIO())


def offline_python(code: str, cache: Path) -> subprocess.CompletedProcess:
    """Python code run with no network at all (a new network namespace), with
    GOLDEN_CACHE=cache: what a build does when the archives are unreachable."""
    return subprocess.run(["unshare", "--net", sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, env=dict(os.environ, GOLDEN_CACHE=str(cache)))


@contextmanager
def another_golden_process():
    """A second process that uses the stage cache ($GOLDEN_CACHE), as a build
    between two stages does, until the block ends."""
    other = subprocess.Popen(
        [sys.executable, "-c", "from golden.build.cache import use_cache; import time; use_cache(); "
                               "print('using', flush=True); time.sleep(120)"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == "using\n"
        yield
    finally:
        other.kill()
        other.wait()
