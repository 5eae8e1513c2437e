"""./inv outdated against the real archives: 0 when the newest tested image
is current, 1 when a rebuild is due, 2 on error."""
import json
import os
import subprocess
import sys

from golden.build.archive import fetch_state
from golden.spec import load_spec

from conftest import REPO


def write_artifact(artifacts, name, version, packages, passed=True, container_packages=None):
    directory = artifacts / name / version
    directory.mkdir(parents=True)
    manifest = {"name": name, "version": version, "packages": packages,
                "container_packages": container_packages or {}}
    if passed is not None:
        manifest["test"] = {"passed": passed}
    (directory / "manifest.json").write_text(json.dumps(manifest))


def outdated(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "invoke", "outdated", *args], cwd=REPO, capture_output=True,
                          text=True, env=dict(os.environ, GOLDEN_ARTIFACTS=str(tmp_path / "artifacts"),
                                              GOLDEN_IMAGES=str(tmp_path / "images"),
                                              GOLDEN_CACHE=str(tmp_path / "cache")))


def test_current_image_then_an_older_package_then_no_tested_artifact(write_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    spec = load_spec(write_spec("web", "name: web\nhostname: web\nbase: {suite: trixie}\n"))
    state = fetch_state(spec.base)
    current = {name: state.candidate(name).version for name in ("base-files", "dash", "bash")}
    write_artifact(tmp_path / "artifacts", "web", "20261130.100000", current)
    proc = outdated(tmp_path, "--image", "web")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == "web 20261130.100000: current (every package is what the archives serve)\n"

    # A newer build whose container image has an older dash: that one is checked, and is behind.
    write_artifact(tmp_path / "artifacts", "web", "20261130.110000", current,
                   container_packages={"container probe": dict(current, dash="0.5.1-1")})
    proc = outdated(tmp_path, "--image", "web")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["web 20261130.110000: 1 pending updates (0 security); a rebuild is due:",
                                        f"  dash 0.5.1-1 -> {current['dash']}"]

    # An untested (or failed) newer build does not count.
    write_artifact(tmp_path / "artifacts", "web", "20261130.120000", {"dash": "0.1"}, passed=False)
    assert outdated(tmp_path, "--image", "web").stdout.startswith("web 20261130.110000: 1 pending")


def test_an_image_never_tested_is_due_and_errors_exit_2(write_spec, tmp_path):
    write_spec("web", "name: web\nhostname: web\nbase: {suite: trixie}\n")
    write_artifact(tmp_path / "artifacts", "web", "20261130.100000", {"dash": "0.1"}, passed=None)
    proc = outdated(tmp_path, "--image", "web")
    assert proc.returncode == 1
    assert proc.stdout.startswith("web: no tested artifact: a build is due")
    proc = outdated(tmp_path, "--image", "nope")
    assert proc.returncode == 2 and proc.stderr == "error: unknown image 'nope' (known: web)\n"
    write_spec("web", f"name: web\nhostname: web\nbase: {{suite: trixie, mirror: 'file://{tmp_path}/none'}}\n")
    write_artifact(tmp_path / "artifacts", "web", "20261130.110000", {"dash": "0.1"})
    proc = outdated(tmp_path, "--image", "web")
    assert proc.returncode == 2 and proc.stderr.startswith("error: file://") and "Traceback" not in proc.stderr
