import io
import os
import shutil
import subprocess
import sys
import textwrap
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
def own_state(tmp_path, monkeypatch):
    """What a test's golden has seen (catalog serials) is its own, never the user's."""
    monkeypatch.setenv("GOLDEN_STATE", str(tmp_path / "state"))


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
