"""./inv test, image part: boot the built box in Vagrant and run tests/image
with testinfra, then boot the qcow2 as a fresh host with plain QEMU and a
cloud-init seed and run tests/fresh; write both JUnit reports and the
verdict into the manifest.

The VMs, the box and its libvirt volume are always removed, also when the
tests fail or the run is interrupted.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from golden.catalog import write_local_catalog
from golden.lab import load_lab
from golden.libvirt import libvirt_session
from golden.manifest import read_manifest, record_test
from golden.runner import BuildLog
from golden.vagrant import VagrantVMs

from golden.paths import REPO
# One VM from the box. That each host makes its own identity is checked on
# it (its identity files are newer than its first boot) and on the fresh host.
MACHINES = ["golden-a"]
TEST_BUILD_JOBS = 2


@dataclass
class Counts:
    tests: int = 0
    failures: int = 0
    skipped: int = 0

    @property
    def passed(self) -> int:
        return self.tests - self.failures - self.skipped

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tests + other.tests, self.failures + other.failures, self.skipped + other.skipped)


def junit_counts(report: Path) -> Counts:
    """Counts from a pytest JUnit report; a missing report counts as nothing run."""
    if not report.is_file():
        return Counts()
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = Counts()
    for s in suites:
        counts += Counts(int(s.get("tests", 0)), int(s.get("failures", 0)) + int(s.get("errors", 0)),
                         int(s.get("skipped", 0)))
    return counts


def validate_artifact(artifact: Path, echo=sys.stdout) -> Counts:
    manifest_path = artifact / "manifest.json"
    manifest = read_manifest(manifest_path)
    name, version = manifest["name"], manifest["version"]
    report, fresh_report = artifact / "test-report.xml", artifact / "fresh-host-report.xml"
    report.unlink(missing_ok=True)
    fresh_report.unlink(missing_ok=True)
    log = BuildLog(artifact / "test.log", echo=echo)
    log.say(f"validating {name} {version} in Vagrant; log: {log.path}")
    work = Path(tempfile.mkdtemp(prefix=f"golden-test-{name}-"))
    try:
        with libvirt_session(work, say=log.say) as session:
            vms = VagrantVMs(artifact / f"{name}-{version}.libvirt.box", f"golden-{name}-{version}",
                             MACHINES, work, session, log)
            try:
                with log.stage("vagrant up"):
                    vms.add_box()
                    vms.up()
                ssh_config = vms.write_ssh_config(work / "ssh-config")
                with log.stage("tests/image"):
                    subprocess.run(session.wrap([
                        sys.executable, "-m", "pytest", REPO / "tests" / "image", "-p", "no:cacheprovider",
                        f"--hosts=paramiko://{MACHINES[0]}", f"--ssh-config={ssh_config}",
                        f"--golden-manifest={manifest_path}", f"--junitxml={report}",
                        "-o", "junit_family=xunit1"]), cwd=REPO)
            finally:
                with log.stage("destroy"):
                    vms.destroy()
        for daemon_log in work.glob("*.log"):
            log.write(f"---- {daemon_log.name} ----\n" + daemon_log.read_text(errors="replace"))
        with log.stage("tests/fresh (qcow2, QEMU, cloud-init seed)"):
            subprocess.run([sys.executable, "-m", "pytest", REPO / "tests" / "fresh", "-p", "no:cacheprovider",
                            f"--golden-qcow2={artifact / f'{name}-{version}.qcow2'}",
                            f"--golden-manifest={manifest_path}", f"--golden-log={log.path}",
                            f"--junitxml={fresh_report}", "-o", "junit_family=xunit1"], cwd=REPO)
    finally:
        suites = [junit_counts(r) for r in (report, fresh_report)]
        counts = suites[0] + suites[1]
        passed = all(c.tests > 0 for c in suites) and counts.failures == 0
        record_test(manifest_path, passed, counts.tests, counts.failures,
                    [r.name for r in (report, fresh_report) if r.is_file()])
        write_local_catalog(artifact.parent)  # the lab's default catalog: tested builds only
        shutil.rmtree(work, ignore_errors=True)
    log.say(f"{name} {version}: {'PASSED' if passed else 'FAILED'} "
            f"({counts.passed} passed, {counts.failures} failed)")
    return counts


def run_unit_tests(report: Path) -> tuple[int, Counts]:
    proc = subprocess.run([sys.executable, "-m", "pytest", REPO / "tests" / "unit", "-p", "no:cacheprovider",
                           f"--junitxml={report}", "-o", "junit_family=xunit1"], cwd=REPO)
    return proc.returncode, junit_counts(report)


def run_lab_test(echo=sys.stdout) -> Counts:
    print("lab: ./inv lab.up, then ./inv lab.down (tests/lab)", file=echo, flush=True)
    with tempfile.TemporaryDirectory(prefix="golden-lab-test-") as tmp:
        report = Path(tmp) / "lab.xml"
        subprocess.run([sys.executable, "-m", "pytest", REPO / "tests" / "lab", "-p", "no:cacheprovider",
                        f"--junitxml={report}", "-o", "junit_family=xunit1"], cwd=REPO)
        return junit_counts(report)


def run_test_suite(specs, echo=sys.stdout) -> bool:
    """tests/unit, then each image validated. Images with no artifact of their
    current inputs are built first, as `./inv build --all -j 2` would: the
    stages they share are built once. Ends with one 'N passed, N failed' line."""
    from golden.build import build_images

    total = Counts()
    ok = True
    with tempfile.TemporaryDirectory(prefix="golden-unit-") as tmp:
        rc, counts = run_unit_tests(Path(tmp) / "unit.xml")
    total += counts
    if rc != 0 or counts.tests == 0:
        ok = False
        print("unit tests failed: images not validated", file=echo)
    else:
        # Up-to-date artifacts are reused; the others are built (current packages, see freshness.py).
        built = dict(zip([s.name for s in specs], build_images(specs, jobs=TEST_BUILD_JOBS, echo=echo)))
        for spec in specs:
            artifact = built[spec.name]
            counts = validate_artifact(artifact, echo=echo)
            total += counts
            ok = ok and read_manifest(artifact / "manifest.json")["test"]["passed"]
        lab_images = {m.image for m in load_lab()}
        if ok and lab_images <= {s.name for s in specs}:
            counts = run_lab_test(echo)
            total += counts
            ok = ok and counts.tests > 0 and counts.failures == 0
        else:
            print(f"lab test (./inv lab.up/down): not run; it needs every lab image "
                  f"({', '.join(sorted(lab_images))}) validated in this run", file=echo)
    print(f"test: {total.passed} passed, {total.failures} failed", file=echo)
    return ok and total.tests > 0
