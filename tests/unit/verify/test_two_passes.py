"""tests/image runs in two passes over one VM (golden.verify.image.run_in_two_passes):
the tests that leave the VM as they found it, two files at a time on a
test-only image, then those marked `alone`, after every other has ended.
Run here with real pytest processes on a small suite; and the tests of
tests/image that disturb the others are exactly those marked alone."""
import ast
import io
import json
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

from golden.paths import REPO
from golden.verify.image import run_in_two_passes
from golden.verify.junit import junit_counts, merge_junit
from golden.vm.runner import BuildLog

SHARED_FILE = """
import time
from conftest import record

def test_{name}_one():
    record("{name}_one", time.time(), (time.sleep(1.5), time.time())[1])

def test_{name}_two():
    record("{name}_two", time.time(), (time.sleep(0.2), time.time())[1]){failing}
"""

ALONE_FILE = """
import time
import pytest
from conftest import record

@pytest.mark.alone
def test_kills_a_service():
    record("alone", time.time(), time.time())

def test_harmless():
    record("harmless", time.time(), time.time())
"""


def _suite(tmp_path: Path, failing: bool) -> tuple[Path, Path]:
    suite, times = tmp_path / "suite", tmp_path / "times.jsonl"
    suite.mkdir()
    (suite / "conftest.py").write_text(textwrap.dedent(f"""
        import json, os
        def pytest_configure(config):
            config.addinivalue_line("markers", "alone: disturbs the others")
        def record(name, start, end):
            with open({str(times)!r}, "a") as f:
                f.write(json.dumps([name, os.environ.get("PYTEST_XDIST_WORKER", ""), start, end]) + "\\n")
        """))
    (suite / "test_a.py").write_text(SHARED_FILE.format(name="a", failing="\n    assert False" if failing else ""))
    (suite / "test_b.py").write_text(SHARED_FILE.format(name="b", failing=""))
    (suite / "test_c.py").write_text(ALONE_FILE)
    return suite, times


def _run(tmp_path: Path, workers: int, failing: bool, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # this unit test's own, under xdist
    suite, times = _suite(tmp_path, failing)
    work, report = tmp_path / "work", tmp_path / "test-report.xml"
    work.mkdir()
    echo = io.StringIO()
    rc = run_in_two_passes(suite, report, work, workers, BuildLog(tmp_path / "test.log", echo=echo))
    runs = {name: (worker, start, end) for name, worker, start, end in
            map(json.loads, times.read_text().splitlines())}
    return rc, report, runs, echo.getvalue()


def test_two_files_at_a_time_then_the_alone_ones_after_every_other_ended(tmp_path, monkeypatch):
    rc, report, runs, progress = _run(tmp_path, workers=2, failing=False, monkeypatch=monkeypatch)
    assert rc == 0
    assert set(runs) == {"a_one", "a_two", "b_one", "b_two", "harmless", "alone"}
    (_, a_start, a_end), (_, b_start, b_end) = runs["a_one"], runs["b_one"]
    assert a_start < b_end and b_start < a_end  # the two files ran at the same time
    assert {runs[t][0] for t in ("a_one", "b_one")} == {"gw0", "gw1"}
    shared_end = max(end for name, (_, _, end) in runs.items() if name != "alone")
    assert runs["alone"][1] >= shared_end and runs["alone"][0] == ""  # after them, in a pytest of its own
    counts = junit_counts(report)
    assert (counts.tests, counts.failures) == (6, 0)
    assert "==> tests/suite, 2 files at a time" in progress and "==> tests/suite marked alone" in progress
    assert [suite.get("name") for suite in ET.parse(report).getroot()] == [
        "tests/suite, 2 files at a time", "tests/suite marked alone"]


def test_a_failure_in_the_first_pass_fails_the_run_and_the_alone_ones_still_run(tmp_path, monkeypatch):
    rc, report, runs, _ = _run(tmp_path, workers=1, failing=True, monkeypatch=monkeypatch)
    assert rc != 0
    assert "alone" in runs
    assert {worker for worker, _, _ in runs.values()} == {""}  # one file at a time: no xdist workers
    counts = junit_counts(report)
    assert (counts.tests, counts.failures) == (6, 1)


def test_merge_junit_adds_what_exists_and_writes_nothing_from_nothing(tmp_path):
    first, second, merged = tmp_path / "first.xml", tmp_path / "second.xml", tmp_path / "merged.xml"
    first.write_text('<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1">'
                     '<testcase file="t.py" time="2.5"/></testsuite></testsuites>')
    second.write_text('<testsuite tests="2" failures="0" errors="1" skipped="0"/>')
    merge_junit([first, tmp_path / "missing.xml", second], merged)
    counts = junit_counts(merged)
    assert (counts.tests, counts.failures, counts.skipped) == (5, 2, 1)
    merge_junit([tmp_path / "missing.xml"], tmp_path / "none.xml")
    assert not (tmp_path / "none.xml").exists()


# What disturbs other tests on the same VM: a kill, a restart or reload, a
# reboot, or a TCP listener (test_network checks that only sshd and Caddy listen).
DISRUPTS = ("kill", "reboot(", "systemctl restart", "systemctl reload", "http.server")


def _disruptive_tests() -> set[str]:
    """tests/image's tests whose own code disturbs the others, and every test
    of a file whose fixtures do."""
    found = set()
    for path in sorted((REPO / "tests/image").glob("test_*.py")):
        source = path.read_text()
        functions = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]

        def disrupts(node) -> bool:
            return any(pattern in ast.get_source_segment(source, node) for pattern in DISRUPTS)
        fixtures = [f for f in functions if any(re.match(r"pytest\.fixture\b(?!s)", ast.unparse(d))
                                                for d in f.decorator_list)]
        tests = [f for f in functions if f.name.startswith("test_")]
        whole_file = any(disrupts(f) for f in fixtures)
        found |= {f"{path.name}::{t.name}" for t in tests if whole_file or disrupts(t)}
    return found


def _collected(tmp_path: Path, marks: str) -> set[str]:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"test_only": True}))
    out = subprocess.run([sys.executable, "-m", "pytest", str(REPO / "tests/image"), "--collect-only", "-q",
                          "-p", "no:cacheprovider", "-m", marks, f"--golden-manifest={manifest}"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return {line.split("/")[-1].split("[")[0] for line in out.stdout.splitlines() if "::" in line}


def test_the_tests_that_disturb_the_others_are_the_alone_ones(tmp_path):
    disruptive = _disruptive_tests()
    assert sum("kill" in t for t in disruptive) == 3 and any("reboot" in t for t in disruptive)
    assert any(t.startswith("test_firewall.py::") for t in disruptive)
    alone, others = _collected(tmp_path, "alone"), _collected(tmp_path, "not alone")
    settled = _collected(tmp_path, "settled")
    # test_reboot.py's other tests check the VM after its restart, the settled
    # ones after the kills: they run alone too, after those.
    assert settled and settled <= alone
    assert alone == disruptive | settled | {t for t in alone | others if t.startswith("test_reboot.py::")}
    assert not alone & others and len(others) > 20
