import json
import os
import signal
import subprocess
import sys
import time

import pytest

from golden.errors import GoldenError

from golden.build.manifest import read_manifest, record_test, write_manifest
from golden.build.stages.disk import SECTOR, make_disk, partition
from golden.build.stages.package import (VAGRANT_SUDOERS, describe_files, in_parallel, make_box, make_box_disk,
                                         unpack_box, write_sha256sums)
from golden.vm.runner import BuildLog, alive
from golden.verify.suite import junit_counts

MANIFEST = {"name": "web", "version": "20261122.101500", "built_at": "2026-11-22T10:15:00+00:00",
            "spec_sha256": "ab" * 32, "base": {"suite": "trixie", "mirror": "http://deb.debian.org/debian"},
            "packages": {"openssh-server": "1:10.0p1-7"}, "files": [], "stages": {"rootfs": 40.0},
            "accelerator": "tcg"}

from conftest import REPO, quiet_log


@pytest.fixture
def qcow2(tmp_path):
    path = tmp_path / "web.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "2G"], check=True)
    return path


def test_box_is_a_libvirt_box_without_forced_accelerator(tmp_path, qcow2):
    box = tmp_path / "web.libvirt.box"
    make_box(qcow2, 2 << 30, box)
    assert box.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    unpacked = unpack_box(box, tmp_path / "unpacked")  # with bsdtar, as Vagrant does
    assert sorted(p.name for p in unpacked.iterdir()) == ["Vagrantfile", "box.img", "metadata.json"]
    metadata = json.loads((unpacked / "metadata.json").read_text())
    vagrantfile = (unpacked / "Vagrantfile").read_text()
    assert (unpacked / "box.img").read_bytes() == qcow2.read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))
    assert metadata == {"provider": "libvirt", "format": "qcow2", "virtual_size": 2}
    # A box built under TCG must run with KVM where the host has it.
    assert "driver" not in vagrantfile and "kvm" not in vagrantfile and "qemu" not in vagrantfile
    # The guest is known: Vagrant does not detect it over SSH on every up and halt.
    assert "config.vm.guest = :debian" in vagrantfile.splitlines()[1]


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
    record_test(path, False, 12, 1, ["test-report.xml"])
    assert read_manifest(path)["test"] == {"passed": False, "tests": 12, "failures": 1,
                                           "reports": ["test-report.xml"]}
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


def _rootfs_tar(tmp_path, with_login: bool):
    """A tiny root: vagrant's home as the sealed image leaves it."""
    tree = tmp_path / "tree"
    (tree / "home/vagrant/.ssh").mkdir(parents=True)
    (tree / "etc/sudoers.d").mkdir(parents=True)
    (tree / "etc/hostname").write_text("web\n")
    if with_login:
        (tree / "etc/sudoers.d/vagrant").write_text("already here\n")
    tar = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(tree), "--owner=0", "--group=0", "-cf", str(tar), "."], check=True)
    # vagrant's home as uid/gid 1000, as useradd makes it.
    subprocess.run(["tar", "-C", str(tree), "--owner=1000", "--group=1000", "--no-recursion", "-rf", str(tar),
                    "./home/vagrant", "./home/vagrant/.ssh"], check=True)
    return tar


def _debugfs(disk_qcow2, tmp_path, request: str) -> str:
    raw = tmp_path / "check.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(disk_qcow2), str(raw)], check=True)
    device = f"{raw}?offset={partition(raw, 'root')['start'] * SECTOR}"
    return subprocess.run(["debugfs", "-R", request, device], capture_output=True, text=True).stdout


def _sealed_disk(tmp_path, with_login: bool):
    """A tiny disk as provisioning leaves it, Vagrant's public key, a log."""
    log = quiet_log(tmp_path / "build.log")
    sealed = tmp_path / "sealed.qcow2"
    make_disk(_rootfs_tar(tmp_path, with_login), 256 << 20, "0c0ffee0-0000-4000-8000-000000000001", sealed, log)
    pubkey = tmp_path / "vagrant.pub"
    pubkey.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN1YdxBpNlzxDqfJyw/QKow1F+wvG9hXGoqiysfJOn5Y vagrant\n")
    return sealed, pubkey, log


def test_box_disk_adds_vagrant_login_offline_and_the_qcow2_has_none(tmp_path):
    sealed, pubkey, log = _sealed_disk(tmp_path, with_login=False)
    box_disk = tmp_path / "box.img"
    make_box_disk(sealed, pubkey, box_disk, log)

    keys = _debugfs(box_disk, tmp_path, "stat /home/vagrant/.ssh/authorized_keys")
    assert "User:  1000   Group:  1000" in keys and "Mode:  0600" in keys
    assert _debugfs(box_disk, tmp_path, "cat /home/vagrant/.ssh/authorized_keys") == pubkey.read_text()
    rule = _debugfs(box_disk, tmp_path, "stat /etc/sudoers.d/vagrant")
    assert "User:     0   Group:     0" in rule and "Mode:  0440" in rule
    assert _debugfs(box_disk, tmp_path, "cat /etc/sudoers.d/vagrant") == VAGRANT_SUDOERS
    assert subprocess.run(["qemu-img", "check", str(box_disk)], capture_output=True).returncode == 0
    # The sealed disk (the fresh-host qcow2) is untouched: no key, no sudo rule.
    assert _debugfs(sealed, tmp_path, "cat /home/vagrant/.ssh/authorized_keys") == ""
    assert _debugfs(sealed, tmp_path, "cat /etc/sudoers.d/vagrant") == ""
    assert not list(tmp_path.glob("box.raw")) and not list(tmp_path.glob("box.sudoers"))


def test_box_disk_refuses_when_the_login_cannot_be_written(tmp_path):
    # Not sealed: a sudo rule is already there, so debugfs cannot write ours.
    sealed, pubkey, log = _sealed_disk(tmp_path, with_login=True)
    with pytest.raises(GoldenError, match="box disk: writing /etc/sudoers.d/vagrant into the image failed"):
        make_box_disk(sealed, pubkey, tmp_path / "box.img", log)
    assert not (tmp_path / "box.img").exists()


def test_package_jobs_run_two_at_a_time_and_a_failure_waits_for_the_rest(tmp_path):
    log = quiet_log(tmp_path / "build.log")
    started = {name: tmp_path / f"{name}.started" for name in ("a", "b")}

    def job(me: str, other: str):
        # Starts, then waits for the other one to have started: only concurrent jobs both finish.
        log.run(["sh", "-c", f"touch {started[me]}; i=0; until [ -e {started[other]} ]; do "
                             f"i=$((i+1)); [ $i -lt 300 ] || exit 1; sleep 0.1; done; echo {me}"])
        return me

    assert in_parallel({"a": lambda: job("a", "b"), "b": lambda: job("b", "a")}, log) == {"a": "a", "b": "b"}
    assert "package: a in " in log.path.read_text() and "package: b in " in log.path.read_text()

    slow_started, slow_done = tmp_path / "slow.started", tmp_path / "slow.done"

    def fails():
        deadline = time.monotonic() + 30
        while not slow_started.exists():  # fail while the other job runs
            assert time.monotonic() < deadline
            time.sleep(0.05)
        raise GoldenError("vmdk does not hold the disk")

    with pytest.raises(GoldenError, match="vmdk does not hold the disk"):
        in_parallel({"vmdk": fails, "box": lambda: log.run(["sh", "-c", f"touch {slow_started}; sleep 1; "
                                                                         f"touch {slow_done}"])}, log)
    assert slow_done.exists()  # the running job ran to its end before the error came out
    assert "package: vmdk failed after " in log.path.read_text()


def test_an_interrupt_stops_the_running_jobs_tools_and_starts_no_queued_job(tmp_path):
    """As when ./inv build is stopped during the package stage: the tools run
    in their own sessions, so nothing else would stop them."""
    pids = [tmp_path / "a.pid", tmp_path / "b.pid"]
    queued = tmp_path / "c.started"
    code = ("import sys; from pathlib import Path\n"
            "from golden.build.stages.package import in_parallel\n"
            "from golden.vm.runner import BuildLog\n"
            f"log = BuildLog(Path({str(tmp_path / 'build.log')!r}), echo=sys.stderr)\n"
            "tool = lambda pid: lambda: log.run(['sh', '-c', f'sleep 300 & echo $! > {pid}; wait'])\n"
            f"in_parallel({{'a': tool({str(pids[0])!r}), 'b': tool({str(pids[1])!r}), "
            f"'c': lambda: Path({str(queued)!r}).touch()}}, log)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not all(p.exists() and p.read_text().strip() for p in pids):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) != 0
    for pid in (int(p.read_text()) for p in pids):
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(pid)
    assert not queued.exists()

