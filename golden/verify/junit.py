"""pytest runs of the test suite, and their JUnit reports."""
from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from golden.paths import REPO


def pytest_command(tests: str | Path, report: Path, *options: str) -> list[str]:
    """pytest on tests/<tests> (or on a directory given by its absolute path), writing a JUnit report (xunit1: counts per suite)."""
    return [sys.executable, "-m", "pytest", str(REPO / "tests" / tests), "-p", "no:cacheprovider",
            f"--junitxml={report}", "-o", "junit_family=xunit1", *options]


def run_pytest(tests: str | Path, report: Path, *options: str, wrap=lambda cmd: cmd) -> int:
    """Runs pytest_command (wrap: e.g. into a network namespace); returns its exit code."""
    return subprocess.run(wrap(pytest_command(tests, report, *options)), cwd=REPO).returncode


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


def merge_junit(reports: list[Path], into: Path) -> None:
    """One JUnit report of several pytest runs: their suites side by side.
    Reports that are missing add nothing; with none, nothing is written."""
    suites = []
    for report in reports:
        if report.is_file():
            root = ET.parse(report).getroot()
            suites += [root] if root.tag == "testsuite" else root.findall("testsuite")
    if suites:
        merged = ET.Element("testsuites")
        merged.extend(suites)
        ET.ElementTree(merged).write(into, encoding="utf-8", xml_declaration=True)


def seconds_by_test_file(reports: list[Path]) -> dict[str, float]:
    """Seconds spent in each test file, from pytest's JUnit reports."""
    seconds: dict[str, float] = {}
    for report in reports:
        for case in ET.parse(report).getroot().iter("testcase"):
            name = case.get("file") or case.get("classname", "?").replace(".", "/") + ".py"
            seconds[name] = round(seconds.get(name, 0.0) + float(case.get("time", 0)), 1)
    return dict(sorted(seconds.items(), key=lambda item: -item[1]))
