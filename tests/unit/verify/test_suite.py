"""Where ./inv test's time went: each part timed, in the order it ran, also when it fails."""
import io
import json
import sys
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


def _unit_stand_in(monkeypatch, code: str):
    """The unit tests replaced by `code` (a real process; the real ones would
    run this test again); `report` in it is their JUnit report's path."""
    import golden.verify.suite
    monkeypatch.setattr(golden.verify.suite, "unit_tests_command",
                        lambda report: [sys.executable, "-c", f"report = {str(report)!r}\n" + code])


JUNIT_OF_3 = ("open(report, 'w').write('<testsuite name=\"pytest\" tests=\"3\" failures=\"0\" errors=\"0\" "
              "skipped=\"0\"></testsuite>')\n")


def test_a_lab_that_is_up_stops_the_test_suite_before_anything_runs(tmp_path, monkeypatch):
    """./inv test ends with a lab of its own, brought up and taken down in
    .lab: with a user's lab up there, it refuses in one line and runs nothing."""
    import golden.lab
    import golden.verify.suite
    from golden.lab import LabError
    from golden.verify.suite import run_test_suite
    ran = []
    _unit_stand_in(monkeypatch, f"open({str(tmp_path / 'ran')!r}, 'w').close(); raise SystemExit(1)")
    monkeypatch.setattr(golden.verify.suite, "build_images", lambda specs, **kw: ran.append(specs) or [])
    monkeypatch.setattr(golden.lab, "STATE_DIR", tmp_path / ".lab")
    (tmp_path / ".lab").mkdir()
    (tmp_path / ".lab" / "state.json").write_text(json.dumps({"netns": "golden-lab", "pids": {}}))
    with pytest.raises(LabError, match=r"^a lab is up \(.*/\.lab/state\.json\): .* take yours down first: "
                                       r"\./inv lab\.down$"):
        run_test_suite([], echo=io.StringIO())
    assert ran == [] and not (tmp_path / "ran").exists() and (tmp_path / ".lab" / "state.json").is_file()
    (tmp_path / ".lab" / "state.json").unlink()  # no lab: the suite starts
    out = io.StringIO()
    assert run_test_suite([], echo=out) is False  # the unit tests failed: no image is validated
    assert (tmp_path / "ran").exists() and "unit tests failed: images not validated" in out.getvalue()


def test_the_unit_tests_run_beside_the_builds_and_then_the_images_are_validated(tmp_path, monkeypatch):
    import golden.verify.suite
    from golden.verify.suite import run_test_suite
    started, built = tmp_path / "unit-started", tmp_path / "built"
    # Each waits for the other: run one after the other, they would time out.
    _unit_stand_in(monkeypatch, "import os, time\n"
                   f"open({str(started)!r}, 'w').close()\n"
                   f"end = time.monotonic() + 20\nwhile not os.path.exists({str(built)!r}) and time.monotonic() < end:\n"
                   f"    time.sleep(0.05)\nif not os.path.exists({str(built)!r}):\n    raise SystemExit(1)\n"
                   + JUNIT_OF_3 + "print('3 passed')")

    def builds(specs, jobs, echo):
        end = time.monotonic() + 20
        while not started.exists() and time.monotonic() < end:
            time.sleep(0.05)
        assert started.exists(), "the unit tests did not start beside the builds"
        built.write_text("")
        return []
    monkeypatch.setattr(golden.verify.suite, "build_images", builds)
    out = io.StringIO()
    assert run_test_suite([], echo=out) is True
    shown = out.getvalue()
    assert shown.index("==> unit tests (two test files at a time) (beside") < shown.index("3 passed")
    assert "test: 3 passed, 0 failed" in shown
    assert "builds, unit tests beside" in shown and "; unit tests (two test files at a time) 0.0 of it" in shown


def test_unit_tests_that_pass_without_running_a_test_validate_nothing(monkeypatch):
    import golden.verify.suite
    from golden.verify.suite import run_test_suite
    _unit_stand_in(monkeypatch, "print('no tests ran')")  # exit 0, no report
    monkeypatch.setattr(golden.verify.suite, "build_images", lambda specs, **kw: [])
    out = io.StringIO()
    assert run_test_suite([], echo=out) is False
    assert "unit tests failed: images not validated" in out.getvalue()


def test_a_unit_test_failing_stops_the_builds_at_once(tmp_path, monkeypatch):
    import golden.verify.suite
    from golden.errors import GoldenError
    from golden.verify.suite import run_test_suite
    from golden.vm.runner import BuildLog
    _unit_stand_in(monkeypatch, "import time; time.sleep(1); print('1 failed'); raise SystemExit(1)")
    stopped = []

    def builds(specs, jobs, echo):
        try:
            BuildLog(tmp_path / "build.log", echo=io.StringIO()).run(["sleep", "120"])  # a build's tool
        except GoldenError as exc:
            stopped.append(str(exc))
            raise
    monkeypatch.setattr(golden.verify.suite, "build_images", builds)
    out = io.StringIO()
    start = time.monotonic()
    assert run_test_suite([], echo=out) is False
    assert time.monotonic() - start < 30
    assert stopped and stopped[0].startswith("sleep failed (exit -15)")
    shown = out.getvalue()
    assert "unit tests failed: stopping the builds" in shown and "1 failed" in shown
    assert "unit tests failed: images not validated" in shown


def test_a_build_failing_stops_the_unit_tests_and_fails_the_run(tmp_path, monkeypatch):
    import golden.verify.suite
    from golden.errors import GoldenError
    from golden.verify.suite import run_test_suite
    up = tmp_path / "unit-up"
    _unit_stand_in(monkeypatch, f"import time\ntry:\n    open({str(up)!r}, 'w').close(); time.sleep(300)\n"
                                "except KeyboardInterrupt:\n"
                                "    print('unit tests interrupted', flush=True); raise SystemExit(2)")

    def builds(specs, jobs, echo):
        end = time.monotonic() + 20
        while not up.exists() and time.monotonic() < end:
            time.sleep(0.05)
        raise GoldenError("build failed: infra: mmdebstrap failed (exit 1)")
    monkeypatch.setattr(golden.verify.suite, "build_images", builds)
    out = io.StringIO()
    start = time.monotonic()
    with pytest.raises(GoldenError, match="^build failed: infra"):
        run_test_suite([], echo=out)
    assert time.monotonic() - start < 40
    assert "unit tests interrupted" in out.getvalue()


def test_each_run_is_recorded_and_the_bench_finds_the_newest_whole_one_from_an_empty_cache(tmp_path, monkeypatch):
    import golden.verify.suite
    from golden.verify.suite import newest_whole_run_from_empty_cache, run_test_suite, recorded_runs_dir
    monkeypatch.setattr(golden.verify.suite, "build_images", lambda specs, **kw: [])
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))  # none yet: an empty cache
    _unit_stand_in(monkeypatch, JUNIT_OF_3)
    assert run_test_suite([], echo=io.StringIO(), whole=True) is True
    (record,) = [json.loads(p.read_text()) for p in recorded_runs_dir().glob("*.json")]
    assert record["whole"] and record["empty_cache_at_start"] and record["ok"] and record["passed"] == 3
    assert list(record["parts"]) == ["builds, unit tests beside"]
    assert set(record["parts"]["builds, unit tests beside"]) == {"minutes", "cpu_busy_percent"}
    assert record["beside"] == {"unit tests (two test files at a time)": record["beside"]["unit tests (two test files at a time)"]}
    assert newest_whole_run_from_empty_cache() == record

    # Runs that do not count, each newer than the one above: none replaces it.
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "entry").write_text("")
    run_test_suite([], echo=io.StringIO(), whole=True)  # a warm cache
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "empty-cache"))
    run_test_suite([], echo=io.StringIO())  # not every image
    _unit_stand_in(monkeypatch, "raise SystemExit(1)")
    assert run_test_suite([], echo=io.StringIO(), whole=True) is False  # failed
    assert len(list(recorded_runs_dir().glob("*.json"))) == 4
    assert newest_whole_run_from_empty_cache() == record


def test_only_the_newest_runs_are_kept_and_an_unreadable_record_is_passed_over(tmp_path, monkeypatch):
    import golden.verify.suite
    from golden.verify.suite import newest_whole_run_from_empty_cache, recorded_runs_dir
    monkeypatch.setattr(golden.verify.suite, "RUNS_KEPT", 2)
    runs = recorded_runs_dir()
    runs.mkdir(parents=True)
    good = {"whole": True, "empty_cache_at_start": True, "ok": True, "minutes": 31.0}
    (runs / "20261201-100000.json").write_text(json.dumps(good))
    (runs / "20261202-100000.json").write_text("{not json")
    (runs / "20261202-110000.json").write_text(json.dumps(dict(good, minutes="31.0")))  # not a number
    (runs / "20261202-120000.json").write_text(json.dumps({k: v for k, v in good.items() if k != "minutes"}))
    assert newest_whole_run_from_empty_cache() == good
    from golden.verify.junit import Counts
    from golden.verify.suite import Stopwatch, record_test_run
    import datetime as dt
    record_test_run(Stopwatch(), dt.datetime(2026, 12, 3, tzinfo=dt.timezone.utc), Counts(1), True, False, False)
    assert sorted(p.name for p in runs.glob("*")) == ["20261202-120000.json", "20261203-000000-000000.json"]
