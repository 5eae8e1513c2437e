import json
import subprocess
import tarfile

import pytest

from golden.manifest import read_manifest, record_test, write_manifest
from golden.package import describe_files, make_box, write_sha256sums
from golden.validate import junit_counts

MANIFEST = {"name": "web", "version": "20261122.101500", "built_at": "2026-11-22T10:15:00+00:00",
            "spec_sha256": "ab" * 32, "base": {"suite": "trixie", "mirror": "http://deb.debian.org/debian"},
            "packages": {"openssh-server": "1:10.0p1-7"}, "files": [], "stages": {"rootfs": 40.0},
            "accelerator": "tcg"}


@pytest.fixture
def qcow2(tmp_path):
    path = tmp_path / "web.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "2G"], check=True)
    return path


def test_box_is_a_libvirt_box_without_forced_accelerator(tmp_path, qcow2):
    box = tmp_path / "web.libvirt.box"
    make_box(qcow2, 2 << 30, box)
    with tarfile.open(box) as tar:
        assert sorted(tar.getnames()) == ["Vagrantfile", "box.img", "metadata.json"]
        metadata = json.load(tar.extractfile("metadata.json"))
        vagrantfile = tar.extractfile("Vagrantfile").read().decode()
        assert tar.extractfile("box.img").read() == qcow2.read_bytes()
    assert metadata == {"provider": "libvirt", "format": "qcow2", "virtual_size": 2}
    # A box built under TCG must run with KVM where the host has it.
    assert "driver" not in vagrantfile and "kvm" not in vagrantfile and "qemu" not in vagrantfile


def test_sha256sums_verify_with_sha256sum(tmp_path, qcow2):
    box = tmp_path / "web.libvirt.box"
    make_box(qcow2, 2 << 30, box)
    files = describe_files([qcow2, box])
    write_sha256sums(files, tmp_path / "SHA256SUMS")
    ok = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert [f["name"] for f in files] == ["web.qcow2", "web.libvirt.box"]
    assert files[0]["size"] == qcow2.stat().st_size
    with box.open("r+b") as f:  # tamper
        f.seek(600)
        f.write(b"X")
    bad = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode != 0 and "web.libvirt.box: FAILED" in bad.stdout


def test_manifest_requires_the_contract_fields(tmp_path):
    broken = dict(MANIFEST)
    del broken["accelerator"], broken["packages"]
    with pytest.raises(ValueError, match="manifest lacks packages, accelerator"):
        write_manifest(tmp_path / "manifest.json", broken)
    assert not (tmp_path / "manifest.json").exists()


def test_manifest_round_trip_and_test_verdict(tmp_path):
    path = tmp_path / "manifest.json"
    write_manifest(path, MANIFEST)
    assert read_manifest(path) == MANIFEST
    record_test(path, False, 12, 1, "test-report.xml")
    assert read_manifest(path)["test"] == {"passed": False, "tests": 12, "failures": 1,
                                           "report": "test-report.xml"}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temp files left


def test_junit_counts_from_a_real_pytest_run(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "def test_ok(): pass\n"
        "def test_bad(): assert False\n"
        "def test_error(broken): pass\n"
        "@pytest.fixture\n"
        "def broken(): raise RuntimeError\n"
        "@pytest.mark.skip\n"
        "def test_skip(): pass\n")
    report = tmp_path / "r.xml"
    subprocess.run(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_sample.py"),
                    f"--junitxml={report}"], capture_output=True)
    counts = junit_counts(report)
    assert (counts.tests, counts.failures, counts.skipped, counts.passed) == (4, 2, 1, 1)
    assert junit_counts(tmp_path / "missing.xml").tests == 0
