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
import sys
import tempfile
from pathlib import Path

from golden.build.manifest import read_manifest, record_test
from golden.publish.catalog import write_local_catalog
from golden.verify.beside import BackgroundRun, running_beside
from golden.verify.junit import Counts, junit_counts, merge_junit, pytest_command, run_pytest
from golden.vm.libvirt import libvirt_session
from golden.vm.runner import BuildLog
from golden.vm.vagrant import VagrantVMs

FRESH_HOST = "tests/fresh (qcow2, QEMU, cloud-init seed)"


def validate_artifact(artifact: Path, echo=sys.stdout) -> Counts:
    manifest_path = artifact / "manifest.json"
    manifest = read_manifest(manifest_path)
    name, version = manifest["name"], manifest["version"]
    report, fresh_report = artifact / "test-report.xml", artifact / "fresh-host-report.xml"
    reports = [report] if manifest.get("test_only") else [report, fresh_report]
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
            image_rc = _vagrant_part(artifact, manifest, manifest_path, report, work, log)
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


def _vagrant_part(artifact: Path, manifest: dict, manifest_path: Path, report: Path, work: Path,
                  log: BuildLog) -> int:
    """The box up in Vagrant, tests/image, the VM destroyed; tests/image's exit code."""
    name, version = manifest["name"], manifest["version"]
    # One VM from the box. That each host makes its own identity is checked on
    # it (its identity files are newer than its first boot) and on the fresh host.
    machine = f"test-{name}"
    with libvirt_session(work, say=log.say) as session:
        # The test VM's disk is 2 GiB larger than the image's: its root must grow to it.
        vms = VagrantVMs(artifact / f"{name}-{version}.libvirt.box", f"golden-{name}-{version}",
                         [machine], work, session, log, disk_gb=manifest["disk_size"] // 2**30 + 2)
        try:
            with log.stage("vagrant up"):
                vms.add_box()
                vms.up()
            ssh_config = vms.write_ssh_config(work / "ssh-config")
            # The first boot is by BIOS; the reboot test restarts the VM by UEFI with Secure Boot.
            restart = vms.write_restart_script(work / "restart-by-uefi", "uefi")
            # Nothing runs beside a test-only image's VM: its idle time is the
            # tests' SSH round trips, which a second test file fills.
            rc = run_in_two_passes("image", report, work, 2 if manifest.get("test_only") else 1, log,
                                   f"--hosts=paramiko://{machine}", f"--ssh-config={ssh_config}",
                                   f"--golden-manifest={manifest_path}", f"--golden-restart={restart}",
                                   wrap=session.wrap)
        finally:
            with log.stage("destroy"):
                vms.destroy()
    _write_work_logs(work, log)
    return rc


def run_in_two_passes(tests: str | Path, report: Path, work: Path, workers: int, log: BuildLog, *options: str,
                      wrap=lambda cmd: cmd) -> int:
    """tests/<tests> in two passes over one VM: first the tests that leave it
    as they found it, `workers` test files at a time, then those marked
    `alone` (they kill a service others use, or restart the VM), one after
    another. Both passes always run; report gets both. The exit code: the
    first non-zero of the two."""
    shared, alone = work / "tests-shared.xml", work / "tests-alone.xml"
    at_a_time = ["-n", str(workers), "--dist", "loadfile"] if workers > 1 else []
    name = f"tests/{Path(tests).name}"
    first, second = f"{name}, {workers} file{'s' if workers > 1 else ''} at a time", f"{name} marked alone"
    try:
        with log.stage(first):  # each pass's suite named in the report
            rc_shared = run_pytest(tests, shared, "-m", "not alone", "-o", f"junit_suite_name={first}", *at_a_time,
                                   *options, wrap=wrap)
        with log.stage(second):
            rc_alone = run_pytest(tests, alone, "-m", "alone", "-o", f"junit_suite_name={second}", *options, wrap=wrap)
    finally:
        merge_junit([shared, alone], report)
    return rc_shared or rc_alone


def _write_work_logs(work: Path, log: BuildLog) -> None:
    """The libvirt daemons' and the restart script's logs into the test log;
    not the serial consoles, which destroy wrote already."""
    for other_log in sorted(work.glob("*.log")):
        if not other_log.name.endswith("-serial.log"):
            log.write(f"---- {other_log.name} ----\n" + other_log.read_text(errors="replace"))


def _record(manifest_path: Path, manifest: dict, artifact: Path, passed: bool, counts: Counts,
            reports: list[Path], work: Path) -> None:
    try:
        record_test(manifest_path, passed, counts.tests, counts.failures, [r.name for r in reports if r.is_file()])
        if not manifest.get("test_only"):
            write_local_catalog(artifact.parent)  # the lab's default catalog: tested builds only
    finally:
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
