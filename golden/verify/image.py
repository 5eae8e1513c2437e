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
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from golden.build.manifest import read_manifest, record_test
from golden.publish.catalog import write_local_catalog
from golden.paths import REPO
from golden.verify.junit import Counts, junit_counts, pytest_command, run_pytest
from golden.vm.libvirt import libvirt_session
from golden.vm.runner import BuildLog
from golden.vm.vagrant import VagrantVMs

# One VM from the box. That each host makes its own identity is checked on
# it (its identity files are newer than its first boot) and on the fresh host.
MACHINES = ["golden-a"]


def validate_artifact(artifact: Path, echo=sys.stdout) -> Counts:
    manifest_path = artifact / "manifest.json"
    manifest = read_manifest(manifest_path)
    name, version = manifest["name"], manifest["version"]
    report, fresh_report = artifact / "test-report.xml", artifact / "fresh-host-report.xml"
    reports = [report] if manifest.get("test_only") else [report, fresh_report]
    report.unlink(missing_ok=True)
    fresh_report.unlink(missing_ok=True)
    log = BuildLog(artifact / "test.log", echo=echo)
    log.say(f"validating {name} {version} in Vagrant; log: {log.path}")
    work = Path(tempfile.mkdtemp(prefix=f"golden-test-{name}-"))
    fresh_host, image_rc, interrupted = None, None, False
    try:
        if fresh_report in reports:  # beside the Vagrant part: the two cores are rarely both busy
            fresh_host = _start_fresh_host(artifact, manifest, manifest_path, fresh_report, work, log)
        image_rc = _vagrant_part(artifact, manifest, manifest_path, report, work, log)
    except BaseException:
        interrupted = True  # or failed: the fresh host's result no longer decides anything
        if fresh_host:
            fresh_host.interrupt()
        raise
    finally:
        try:
            if fresh_host:
                fresh_host.finish(echo, timeout=FRESH_HOST_GRACE if interrupted else None)
        finally:
            suites = [junit_counts(r) for r in reports]
            counts = sum(suites, Counts())
            # A pytest stopped midway writes a report of what ran: only exit 0 of each is a pass.
            passed = (all(c.tests > 0 for c in suites) and counts.failures == 0 and image_rc == 0
                      and (fresh_host is None or fresh_host.rc == 0))
            _record(manifest_path, manifest, artifact, passed, counts, reports, work)
    log.say(f"{name} {version}: {'PASSED' if passed else 'FAILED'} "
            f"({counts.passed} passed, {counts.failures} failed)")
    return counts


def _vagrant_part(artifact: Path, manifest: dict, manifest_path: Path, report: Path, work: Path,
                  log: BuildLog) -> int:
    """The box up in Vagrant, tests/image, the VM destroyed; tests/image's exit code."""
    name, version = manifest["name"], manifest["version"]
    with libvirt_session(work, say=log.say) as session:
        # The test VM's disk is 2 GiB larger than the image's: its root must grow to it.
        vms = VagrantVMs(artifact / f"{name}-{version}.libvirt.box", f"golden-{name}-{version}",
                         MACHINES, work, session, log, disk_gb=manifest["disk_size"] // 2**30 + 2)
        try:
            with log.stage("vagrant up"):
                vms.add_box()
                vms.up()
            ssh_config = vms.write_ssh_config(work / "ssh-config")
            # The first boot is by BIOS; the reboot test restarts the VM by UEFI with Secure Boot.
            restart = vms.write_restart_script(work / "restart-by-uefi", "uefi")
            with log.stage("tests/image"):
                rc = run_pytest("image", report, f"--hosts=paramiko://{MACHINES[0]}", f"--ssh-config={ssh_config}",
                                f"--golden-manifest={manifest_path}", f"--golden-restart={restart}",
                                wrap=session.wrap)
        finally:
            with log.stage("destroy"):
                vms.destroy()
    for daemon_log in work.glob("*.log"):
        log.write(f"---- {daemon_log.name} ----\n" + daemon_log.read_text(errors="replace"))
    return rc


def _record(manifest_path: Path, manifest: dict, artifact: Path, passed: bool, counts: Counts,
            reports: list[Path], work: Path) -> None:
    record_test(manifest_path, passed, counts.tests, counts.failures, [r.name for r in reports if r.is_file()])
    if not manifest.get("test_only"):
        write_local_catalog(artifact.parent)  # the lab's default catalog: tested builds only
    shutil.rmtree(work, ignore_errors=True)


FRESH_HOST_GRACE = 120  # s for tests/fresh to stop its VM after an interrupt


class _FreshHostRun:
    """tests/fresh in a thread, with its own log; its pytest output is shown
    once it ends, not mixed into the Vagrant part's. rc: its pytest's exit
    code, None when it did not run to its end."""
    STAGE = "tests/fresh (qcow2, QEMU, cloud-init seed)"
    LOG = "fresh-host.log"  # in its work directory: QEMU's and the serial console's lines

    def __init__(self, command: list, work: Path, log: BuildLog):
        self.command, self.log = command, log
        self.output, self.fresh_log = work / "pytest.out", work / self.LOG
        self.seconds, self.rc, self.proc = 0.0, None, None
        self.started = threading.Event()
        # A daemon thread: a second interrupt while waiting for it does not hold the exit.
        self.thread = threading.Thread(target=self._run, name="tests/fresh", daemon=True)
        log.say(f"==> {self.STAGE}, beside the Vagrant part")
        self.thread.start()
        self.started.wait()

    def _run(self) -> None:
        start = time.monotonic()
        try:
            with self.output.open("w") as out:
                self.proc = subprocess.Popen(self.command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
                self.started.set()
                self.rc = self.proc.wait()
        except BaseException as exc:
            self.log.write(f"tests/fresh could not run: {exc!r}")
        finally:
            self.started.set()
            self.seconds = round(time.monotonic() - start, 1)

    def interrupt(self) -> None:
        """Asks its pytest to stop (as Ctrl-C would): its teardown stops the VM."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def finish(self, echo, timeout: float | None = None) -> None:
        """Waits for it (at most timeout), then puts its log into the
        validation's and shows its output."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.proc.kill()
            self.log.say(f"tests/fresh did not stop within {timeout} s of the interrupt: killed "
                         f"(its QEMU may be left; see {self.log.path})")
            self.thread.join(10)
        self.log.stage_seconds[self.STAGE] = self.seconds
        self.log.say(f"<== {self.STAGE} done in {self.seconds}s")
        if self.fresh_log.is_file():
            self.log.write(f"---- {self.fresh_log.name} ----\n" + self.fresh_log.read_text(errors="replace"))
        if self.output.is_file():
            print(self.output.read_text(errors="replace"), end="", file=echo, flush=True)


def _start_fresh_host(artifact: Path, manifest: dict, manifest_path: Path, report: Path, work: Path,
                      log: BuildLog) -> _FreshHostRun:
    qcow2 = artifact / f"{manifest['name']}-{manifest['version']}.qcow2"
    fresh_work = work / "fresh"
    fresh_work.mkdir()
    command = pytest_command("fresh", report, f"--golden-qcow2={qcow2}", f"--golden-manifest={manifest_path}",
                             f"--golden-log={fresh_work / _FreshHostRun.LOG}")
    return _FreshHostRun(command, fresh_work, log)
