"""validate_artifact's verdict: only a run of each pytest to exit 0 with a
clean report passes, no earlier verdict stands meanwhile, and a failed or
interrupted Vagrant part stops the fresh host beside it. The Vagrant part
(which boots the box) is replaced here by a function writing its report;
the fresh host is a real process beside it, as in ./inv test."""
import io
import json
import sys

import pytest

from golden.build.manifest import read_manifest, write_manifest
from golden.verify import image
from golden.verify.beside import BackgroundRun
from golden.vm.runner import BuildLog


def _artifact(tmp_path):
    artifact = tmp_path / "web" / "20261201.000000"
    artifact.mkdir(parents=True)
    write_manifest(artifact / "manifest.json", {
        "name": "web", "version": "20261201.000000", "built_at": "2026-12-01T00:00:00Z", "spec_sha256": "0",
        "base": "trixie", "packages": [], "files": [], "stages": {}, "accelerator": "tcg",
        "test": {"passed": True, "tests": 1, "failures": 0, "reports": []}})  # an earlier run's pass
    return artifact


def _report(path, tests: int, failures: int = 0) -> None:
    path.write_text(f'<testsuite tests="{tests}" failures="{failures}" errors="0" skipped="0"/>')


def _fresh_host(code: str):
    def start(artifact, manifest, manifest_path, report, work, log):
        (work / "fresh").mkdir()
        return BackgroundRun(image.FRESH_HOST, [sys.executable, "-c", code.format(report=str(report))],
                             work / "fresh" / "out", log)
    return start


PASSING_FRESH_HOST = ("import pathlib; pathlib.Path({report!r}).write_text("
                      "'<testsuite tests=\"9\" failures=\"0\" errors=\"0\" skipped=\"0\"/>')")


@pytest.mark.parametrize("vagrant_rc, fresh_code, tests", [
    (1, PASSING_FRESH_HOST, 5 + 9),  # tests/image exited 1 (e.g. interrupted) though its report is clean
    (0, PASSING_FRESH_HOST + "; raise SystemExit(2)", 5 + 9),  # the fresh host's pytest did not exit 0
])
def test_only_each_pytest_exiting_0_passes(tmp_path, monkeypatch, vagrant_rc, fresh_code, tests):
    artifact = _artifact(tmp_path)

    def vagrant_part(artifact, manifest, manifest_path, report, work, log):
        assert read_manifest(manifest_path)["test"]["passed"] is False  # the earlier pass does not stand
        _report(report, 5)
        return vagrant_rc
    monkeypatch.setattr(image, "_vagrant_part", vagrant_part)
    monkeypatch.setattr(image, "_start_fresh_host", _fresh_host(fresh_code))
    counts = image.validate_artifact(artifact, echo=io.StringIO())
    assert (counts.tests, counts.failures) == (tests, 0)
    assert read_manifest(artifact / "manifest.json")["test"]["passed"] is False


def test_a_failing_vagrant_part_stops_the_fresh_host_and_records_a_failure(tmp_path, monkeypatch):
    artifact = _artifact(tmp_path)
    marker = tmp_path / "fresh-host-stopped"
    code = ("import pathlib, time\ntry:\n    time.sleep(300)\nexcept KeyboardInterrupt:\n"
            f"    pathlib.Path({str(marker)!r}).write_text('its VM stopped')\n    raise SystemExit(130)")

    def vagrant_part(artifact, manifest, manifest_path, report, work, log):
        import time
        time.sleep(1)  # the fresh host is up
        raise KeyboardInterrupt
    monkeypatch.setattr(image, "_vagrant_part", vagrant_part)
    monkeypatch.setattr(image, "_start_fresh_host", _fresh_host(code))
    echo = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        image.validate_artifact(artifact, echo=echo)
    assert marker.read_text() == "its VM stopped"
    verdict = read_manifest(artifact / "manifest.json")["test"]
    assert verdict == {"passed": False, "tests": 0, "failures": 0, "reports": []}
    assert f"<== {image.FRESH_HOST} done in" in echo.getvalue()


def test_the_work_directory_goes_even_when_the_catalog_cannot_be_written(tmp_path, monkeypatch):
    artifact = _artifact(tmp_path)
    works = []

    def vagrant_part(artifact, manifest, manifest_path, report, work, log):
        works.append(work)
        _report(report, 5)
        return 0

    def unwritable_catalog(images_dir):
        raise OSError("No space left on device")
    monkeypatch.setattr(image, "_vagrant_part", vagrant_part)
    monkeypatch.setattr(image, "_start_fresh_host", _fresh_host(PASSING_FRESH_HOST))
    monkeypatch.setattr(image, "write_local_catalog", unwritable_catalog)
    with pytest.raises(OSError, match="No space left"):
        image.validate_artifact(artifact, echo=io.StringIO())
    assert works and not works[0].exists()
    assert read_manifest(artifact / "manifest.json")["test"]["passed"] is True  # the verdict itself was recorded


def test_the_test_log_gets_each_work_log_once(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for name in ("libvirtd.log", "restart.log", "test-web-serial.log"):
        (work / name).write_text(f"line of {name}\n")
    log = BuildLog(tmp_path / "test.log", echo=io.StringIO())
    image._write_work_logs(work, log)
    text = log.path.read_text()
    assert "---- libvirtd.log ----\nline of libvirtd.log" in text
    assert "---- restart.log ----\nline of restart.log" in text
    assert "test-web-serial.log" not in text  # VagrantVMs.destroy writes the serial consoles
