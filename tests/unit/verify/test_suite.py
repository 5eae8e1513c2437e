"""Where ./inv test's time went: each part timed, in the order it ran, also when it fails."""
import time

import pytest

from golden.verify.suite import Stopwatch, cpu_ticks


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


def test_a_lab_that_is_up_stops_the_test_suite_before_anything_runs(tmp_path, monkeypatch):
    """./inv test ends with a lab of its own, brought up and taken down in
    .lab: with a user's lab up there, it refuses in one line and runs nothing."""
    import io
    import json
    import golden.lab
    import golden.verify.suite
    from golden.lab import LabError
    from golden.verify.junit import Counts
    from golden.verify.suite import run_test_suite
    ran = []  # a stand-in for the unit tests, which would otherwise run this test again
    monkeypatch.setattr(golden.verify.suite, "run_unit_tests", lambda report: ran.append(report) or (1, Counts()))
    monkeypatch.setattr(golden.lab, "STATE_DIR", tmp_path / ".lab")
    (tmp_path / ".lab").mkdir()
    (tmp_path / ".lab" / "state.json").write_text(json.dumps({"netns": "golden-lab", "pids": {}}))
    with pytest.raises(LabError, match=r"^a lab is up \(.*/\.lab/state\.json\): .* take yours down first: "
                                       r"\./inv lab\.down$"):
        run_test_suite([], echo=io.StringIO())
    assert ran == [] and (tmp_path / ".lab" / "state.json").is_file()
    (tmp_path / ".lab" / "state.json").unlink()  # no lab: the suite starts with the unit tests
    out = io.StringIO()
    assert run_test_suite([], echo=out) is False  # the stand-in failed: nothing more runs
    assert len(ran) == 1 and "unit tests failed: images not validated" in out.getvalue()
