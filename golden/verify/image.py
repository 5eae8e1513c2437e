"""./inv test, image part: boot the built box in Vagrant and run tests/image
with testinfra and, at the same time, boot the qcow2 as a fresh host with
plain QEMU and a cloud-init seed and run tests/fresh; write both JUnit reports and the
verdict into the manifest. Images of test-only specs (tests/images: a
product plus fixtures) skip the fresh host: its product is booted as one.

The VMs, the box and its libvirt volume are always removed, also when the
tests fail or the run is interrupted.
"""
from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

from golden.build.manifest import read_manifest, record_test
from golden.publish.catalog import write_local_catalog
from golden.verify.beside import BackgroundRun, running_beside
from golden.verify.junit import Counts, junit_counts, pytest_command, run_pytest
from golden.vm.libvirt import DAEMONS, LibvirtSession, daemon_answers, libvirt_session
from golden.vm.runner import BuildLog
from golden.vm.vagrant import TEST_NETWORKS, VagrantVMs

FRESH_HOST = "tests/fresh (qcow2, QEMU, cloud-init seed)"


def validate_artifact(artifact: Path, echo=sys.stdout, session: LibvirtSession | None = None,
                      vm_slot: int = 0) -> Counts:
    """session: a libvirt daemon that validations running at the same time
    share (default: its own). vm_slot: which of them this is (its own
    libvirt network, see VagrantVMs)."""
    manifest_path = artifact / "manifest.json"
    manifest = read_manifest(manifest_path)
    name, version = manifest["name"], manifest["version"]
    reports = validation_reports(artifact, manifest)
    report, fresh_report = artifact / "test-report.xml", artifact / "fresh-host-report.xml"
    report.unlink(missing_ok=True)
    fresh_report.unlink(missing_ok=True)
    record_test(manifest_path, False, 0, 0, [])  # until this run's verdict: no earlier one stands
    log = BuildLog(artifact / "test.log", echo=echo, label=f"{name}: ")
    log.say(f"validating {name} {version} in Vagrant; log: {log.path}")
    work = Path(tempfile.mkdtemp(prefix=f"golden-test-{name}-"))
    fresh_host, image_rc = [], None
    try:
        if not manifest.get("test_only"):  # beside the Vagrant part: the two cores are rarely both busy
            fresh_host.append(_start_fresh_host(artifact, manifest, manifest_path, fresh_report, work, log))
        with running_beside(fresh_host, echo):
            image_rc = _vagrant_part(artifact, manifest, manifest_path, report, work, log, session, vm_slot)
    finally:
        suites = [junit_counts(r) for r in reports]
        counts = sum(suites, Counts())
        # A pytest stopped midway writes a report of what ran: only exit 0 of each is a pass.
        passed = (all(c.tests > 0 for c in suites) and counts.failures == 0 and image_rc == 0
                  and all(run.rc == 0 for run in fresh_host))
        _record(manifest_path, manifest, artifact, passed, counts, reports, work)
    log.say(f"{name} {version}: {'PASSED' if passed else 'FAILED'} "
            f"({counts.passed} passed, {counts.failures} failed)")
    return counts


def validation_reports(artifact: Path, manifest: dict | None = None) -> list[Path]:
    """The JUnit reports its validation writes: tests/image's and, for a product, tests/fresh's."""
    manifest = manifest or read_manifest(artifact / "manifest.json")
    return [artifact / "test-report.xml"] + ([] if manifest.get("test_only") else [artifact / "fresh-host-report.xml"])


def _vagrant_part(artifact: Path, manifest: dict, manifest_path: Path, report: Path, work: Path,
                  log: BuildLog, session: LibvirtSession | None, vm_slot: int) -> int:
    """The box up in Vagrant, tests/image, the VM destroyed; tests/image's exit code."""
    name, version = manifest["name"], manifest["version"]
    # One VM from the box, named for the image: libvirt domains side by side need their own names.
    machine = f"test-{name}"
    with nullcontext(session) if session else libvirt_session(work, say=log.say) as session:
        daemon_logs = _LogTails([session.log_dir / f"{d}.log" for d in DAEMONS] if session.log_dir else [])
        # The test VM's disk is 2 GiB larger than the image's: its root must grow to it.
        vms = VagrantVMs(artifact / f"{name}-{version}.libvirt.box", f"golden-{name}-{version}",
                         [machine], work, session, log, disk_gb=manifest["disk_size"] // 2**30 + 2,
                         network=TEST_NETWORKS[vm_slot])
        try:
            with log.stage("vagrant up"):
                vms.add_box()
                vms.up()
            ssh_config = vms.write_ssh_config(work / "ssh-config")
            # The first boot is by BIOS; the reboot test restarts the VM by UEFI with Secure Boot.
            restart = vms.write_restart_script(work / "restart-by-uefi", "uefi")
            with log.stage("tests/image"):
                rc = run_pytest("image", report, f"--hosts=paramiko://{machine}", f"--ssh-config={ssh_config}",
                                f"--golden-manifest={manifest_path}", f"--golden-restart={restart}",
                                wrap=session.wrap)
        finally:
            with log.stage("destroy"):
                vms.destroy()
    for other_log in sorted(set(work.glob("*.log")) - set(daemon_logs.paths)):  # restart.log
        log.write(f"---- {other_log.name} ----\n" + other_log.read_text(errors="replace"))
    daemon_logs.write_to(log)
    return rc


class _LogTails:
    """What is written to the logs of a shared daemon from now on."""
    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.offsets = {p: p.stat().st_size if p.is_file() else 0 for p in paths}

    def write_to(self, log: BuildLog) -> None:
        for path, offset in self.offsets.items():
            if path.is_file():
                with path.open("rb") as f:
                    f.seek(offset)
                    log.write(f"---- {path.name} (during this validation) ----\n"
                              + f.read().decode(errors="replace"))


def _record(manifest_path: Path, manifest: dict, artifact: Path, passed: bool, counts: Counts,
            reports: list[Path], work: Path) -> None:
    record_test(manifest_path, passed, counts.tests, counts.failures, [r.name for r in reports if r.is_file()])
    if not manifest.get("test_only"):
        write_local_catalog(artifact.parent)  # the lab's default catalog: tested builds only
    shutil.rmtree(work, ignore_errors=True)


def _start_fresh_host(artifact: Path, manifest: dict, manifest_path: Path, report: Path, work: Path,
                      log: BuildLog) -> BackgroundRun:
    qcow2 = artifact / f"{manifest['name']}-{manifest['version']}.qcow2"
    fresh_work = work / "fresh"
    fresh_work.mkdir()
    fresh_log = fresh_work / "fresh-host.log"  # QEMU's and the serial console's lines
    command = pytest_command("fresh", report, f"--golden-qcow2={qcow2}", f"--golden-manifest={manifest_path}",
                             f"--golden-log={fresh_log}")
    return BackgroundRun(FRESH_HOST, command, fresh_work / "pytest.out", log, log_file=fresh_log)


def main(argv: list[str]) -> int:
    """python -m golden.verify.image ARTIFACT VM_SLOT: one validation, as
    ./inv test runs one beside another, in the namespace of their shared
    libvirt daemon. Exit 0 when it passed."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # cleanup runs
    artifact, vm_slot = Path(argv[0]), int(argv[1])
    if not daemon_answers():  # never a daemon of its own: it would take over the shared one's sockets
        print(f"{artifact}: not validated: no libvirt daemon answers in this namespace", file=sys.stderr)
        return 2
    validate_artifact(artifact, session=LibvirtSession(netns=None), vm_slot=vm_slot)
    return 0 if read_manifest(artifact / "manifest.json")["test"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
