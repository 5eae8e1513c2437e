"""The ./inv wrapper: quiet when nothing is missing, a clear apt command when
it is not root and packages are missing."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from conftest import REPO


def test_quiet_when_nothing_is_missing():
    proc = subprocess.run([str(REPO / "inv"), "--list"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert proc.stdout.startswith("Available tasks:")
    assert "inv:" not in proc.stdout


def test_not_root_with_missing_packages_prints_the_apt_command():
    work = Path(tempfile.mkdtemp(prefix="golden-inv-"))  # readable by nobody
    try:
        work.chmod(0o755)
        script = (REPO / "inv").read_text().replace('MAIN_PKGS="python3 ', 'MAIN_PKGS="golden-no-such-package python3 ', 1)
        assert "golden-no-such-package" in script
        (work / "inv").write_text(script)
        (work / "inv").chmod(0o755)
        shutil.copy(REPO / "pyproject.toml", work)
        proc = subprocess.run(["runuser", "-u", "nobody", "--", str(work / "inv"), "--list"], cwd=work,
                              capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
        venv_made = (work / ".venv").exists()  # refused before it made anything
    finally:
        shutil.rmtree(work)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "inv: missing host packages: golden-no-such-package" in proc.stderr
    assert "apt-get install -y --no-install-recommends golden-no-such-package" in proc.stderr
    assert not venv_made
