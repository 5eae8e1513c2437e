"""Where ./inv test's time went: each part timed, in the order it ran, also when it fails."""
import io
import json
import time

import pytest

from golden.verify import suite
from golden.verify.junit import Counts
from golden.verify.suite import VM_SLOTS, Stopwatch, cpu_ticks, validation_groups
from golden.vm.libvirt import LibvirtSession


def test_stopwatch_times_each_part_in_order_and_a_failed_one_too():
    watch = Stopwatch()
    assert watch.part("unit tests", lambda x: x * 2, 21) == 42
    with pytest.raises(RuntimeError):
        watch.part("builds", lambda: (time.sleep(0.2), (_ for _ in ()).throw(RuntimeError("boom"))))
    assert list(watch.seconds) == ["unit tests", "builds"]
    assert 0.2 <= watch.seconds["builds"] < 2
    watch.seconds = {"unit tests": 330.0, "builds": 660.0, "validation of infra": 360.0}
    watch.busy = {"unit tests": 81, "builds": 97, "validation of infra": 99}
    assert watch.summary() == ("22.5 min in all (minutes, CPUs busy: unit tests 5.5 81%, builds 11.0 97%, "
                               "validation of infra 6.0 99%)")


def test_cpu_ticks_count_idle_and_iowait_as_not_busy():
    stat = "cpu  100 5 20 800 50 1 2 3 40 0\ncpu0 50 2 10 400 25 0 1 1 20 0\n"
    assert cpu_ticks(stat) == (131, 981)  # user nice system irq softirq steal; guest is inside user


def test_a_part_that_keeps_every_cpu_busy_shows_it():
    import multiprocessing
    import os

    def spin():
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            pass

    def on_every_cpu():
        procs = [multiprocessing.Process(target=spin) for _ in range(os.cpu_count())]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    watch = Stopwatch()
    watch.part("spin", on_every_cpu)
    assert watch.busy["spin"] >= 80


def _artifact(tmp_path, name: str, test_only: bool):
    artifact = tmp_path / name / "20261201T000000Z"
    artifact.mkdir(parents=True)
    (artifact / "manifest.json").write_text(json.dumps({"name": name, "test_only": test_only}))
    return artifact


@pytest.mark.parametrize("kinds, groups", [
    # a product's validation boots two VMs (Vagrant, fresh host): alone; test images one each
    ("PPTT", [["P0"], ["P1"], ["T2", "T3"]]),
    ("TPT", [["T0"], ["P1"], ["T2"]]),  # only next ones go together: the specs' order stays
    ("TTT", [["T0", "T1"], ["T2"]]),    # never more VMs than VM_SLOTS at once
    ("", []),
])
def test_validations_go_side_by_side_while_their_vms_fit_the_cores(tmp_path, kinds, groups):
    artifacts = [_artifact(tmp_path, f"{kind}{i}", test_only=kind == "T") for i, kind in enumerate(kinds)]
    assert VM_SLOTS == 2
    assert [[a.parent.name for a in group] for group in validation_groups(artifacts)] == groups


def _report(path, tests: int, failures: int = 0):
    path.write_text(f'<testsuite tests="{tests}" failures="{failures}" errors="0" skipped="0"/>')


# Stands in for python -m golden.verify.image (which boots a VM) in the
# validation beside the first: writes its report and verdict as it would,
# as the test images' manifest says, then exits as it would.
SECOND = """
import json, sys
from pathlib import Path
artifact = Path(sys.argv[1])
manifest = json.loads((artifact / "manifest.json").read_text())
act = manifest["act"]
if act == "crash":
    raise SystemExit("no libvirt daemon answers")
(artifact / "test-report.xml").write_text(
    f'<testsuite tests="5" failures="{int(act == "fail")}" errors="0" skipped="0"/>')
manifest["test"] = {"passed": act == "pass"}
(artifact / "manifest.json").write_text(json.dumps(manifest))
sys.exit(0 if act == "pass" else 1)
"""


@pytest.mark.parametrize("act, passed, tests", [("pass", True, 3 + 5), ("fail", False, 3 + 5),
                                                 ("crash", False, 3)])
def test_the_validation_beside_passes_only_by_its_own_exit_and_counts_only_this_run(tmp_path, monkeypatch,
                                                                                   act, passed, tests):
    first, second = _artifact(tmp_path, "T0", True), _artifact(tmp_path, "T1", True)
    manifest = json.loads((second / "manifest.json").read_text())
    # An earlier run's pass and report: neither may count for this run.
    (second / "manifest.json").write_text(json.dumps(dict(manifest, act=act, test={"passed": True})))
    _report(second / "test-report.xml", 40)
    (tmp_path / "second.py").write_text(SECOND)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(suite, "VALIDATION", "second")

    def validate_first(artifact, echo, session):
        assert session.netns is None
        _report(artifact / "test-report.xml", 3)
        (artifact / "manifest.json").write_text(json.dumps({"test_only": True, "test": {"passed": True}}))
        return Counts(3)
    monkeypatch.setattr(suite, "validate_artifact", validate_first)
    echo = io.StringIO()
    counts, all_passed = suite.validate_side_by_side([first, second], LibvirtSession(netns=None), echo)
    assert (all_passed, counts.tests) == (passed, tests)
    assert "T1: ==> validation of T1 (beside" in echo.getvalue()
    assert "T1: <== validation of T1 done in" in echo.getvalue()
    if act == "crash":
        assert "no libvirt daemon answers" in echo.getvalue()  # its output, shown when it ended


def test_there_is_a_libvirt_network_for_each_vm_slot():
    from golden.vm.vagrant import TEST_NETWORKS
    assert len(TEST_NETWORKS) >= VM_SLOTS and len(set(map(str, TEST_NETWORKS))) == len(TEST_NETWORKS)
