"""./inv test: every image built if needed, the unit tests beside the
builds, then each image validated (golden.verify.image), then the lab up and down. Ends with one
'N passed, N failed' line."""
from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from golden import settings
from golden.build.manifest import read_manifest
from golden.build.pipeline import build_images
from golden.files import write_json
from golden.lab import load_lab, require_no_lab
from golden.verify.beside import BackgroundRun, running_beside
from golden.verify.image import validate_artifact
from golden.verify.junit import Counts, junit_counts, pytest_command, run_pytest
from golden.vm.runner import BuildLog, stop_all_running

TEST_BUILD_JOBS = 2


# Two test files at a time: many unit tests wait on the archives or on a
# tool's I/O (real mmdebstrap runs), so the two cores are rarely both busy.
UNIT_WORKERS = ["-n", "2", "--dist", "loadfile"]
UNIT_TESTS = "unit tests (two test files at a time)"


def unit_tests_command(report: Path) -> list[str]:
    return pytest_command("unit", report, *UNIT_WORKERS)


class UnitTestsBeside:
    """tests/unit run beside the builds (each leaves the cores idle a quarter
    of the time, the builds a tenth): their output is shown once they end,
    and their failing stops the builds at once, as an interrupt would."""

    def __init__(self, work: Path, echo):
        self.report = work / "unit.xml"
        self.run = BackgroundRun(UNIT_TESTS, unit_tests_command(self.report), work / "unit.out",
                                 BuildLog(work / "unit.log", echo=echo))
        self.echo = echo
        self.builds_over = threading.Event()
        self.stopped_the_builds = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._stop_the_builds_if_they_fail, daemon=True).start()

    def _stop_the_builds_if_they_fail(self) -> None:
        self.run.done.wait()
        with self._lock:
            if self.run.rc != 0 and not self.builds_over.is_set():
                self.stopped_the_builds.set()
                print("unit tests failed: stopping the builds", file=self.echo, flush=True)
                stop_all_running()

    def builds(self, specs) -> list[Path] | None:
        """The builds (as `./inv build --all -j 2`), the unit tests beside
        them. None: the unit tests failed (or ran none), so no image is to be
        validated. A build failing stops the unit tests and raises."""
        try:
            with running_beside([self.run], self.echo):
                try:
                    built = build_images(specs, jobs=TEST_BUILD_JOBS, echo=self.echo)
                finally:
                    with self._lock:
                        self.builds_over.set()
        except Exception:
            if self.stopped_the_builds.is_set():
                return None
            raise
        return built if self.run.rc == 0 and self.counts().tests > 0 else None

    def counts(self) -> Counts:
        return junit_counts(self.report)


def run_lab_test(echo=sys.stdout) -> Counts:
    print("lab: ./inv lab.up, then ./inv lab.down (tests/lab)", file=echo, flush=True)
    with tempfile.TemporaryDirectory(prefix="golden-lab-test-") as tmp:
        report = Path(tmp) / "lab.xml"
        run_pytest("lab", report)
        return junit_counts(report)


def cpu_ticks(stat: str | None = None) -> tuple[int, int]:
    """(busy, all) clock ticks of every CPU since boot, from /proc/stat."""
    if stat is None:
        stat = Path("/proc/stat").read_text()
    fields = [int(f) for f in stat.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    total = sum(fields[:8])  # guest time is counted in user already
    return total - idle, total


def busy_percent(before: tuple[int, int], after: tuple[int, int]) -> int:
    """How busy the CPUs were between two cpu_ticks() readings, in percent."""
    return round(100 * (after[0] - before[0]) / max(after[1] - before[1], 1))


class Stopwatch:
    """Seconds of each named part of a run, in the order they ran, and how
    busy the host's CPUs were meanwhile (near 100%: only less work makes it
    faster); beside: seconds of work that ran within a part."""
    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.busy: dict[str, float] = {}
        self.beside: dict[str, float] = {}

    def part(self, name: str, fn, *args, **kwargs):
        start, ticks = time.monotonic(), cpu_ticks()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[name] = round(time.monotonic() - start, 1)
            self.busy[name] = busy_percent(ticks, cpu_ticks())

    def summary(self) -> str:
        total = sum(self.seconds.values())
        return (f"{total / 60:.1f} min in all (minutes, CPUs busy: "
                + ", ".join(f"{name} {secs / 60:.1f} {self.busy.get(name, 0)}%"
                            for name, secs in self.seconds.items())
                + "".join(f"; {name} {secs / 60:.1f} of it" for name, secs in self.beside.items()) + ")")


RUNS_KEPT = 50


def recorded_runs_dir() -> Path:
    return settings.state_dir() / "test-runs"


def record_test_run(watch: Stopwatch, started: dt.datetime, total: Counts, ok: bool, whole: bool,
                    empty_cache: bool) -> Path:
    """The run's minutes per part, kept on this machine (the newest RUNS_KEPT):
    ./inv bench reports the newest whole run from an empty cache against its target."""
    record = {"started_at": started.isoformat(timespec="seconds"),
              "minutes": round(sum(watch.seconds.values()) / 60, 1),
              "parts": {name: {"minutes": round(secs / 60, 1), "cpu_busy_percent": watch.busy.get(name)}
                        for name, secs in watch.seconds.items()},
              "beside": {name: round(secs / 60, 1) for name, secs in watch.beside.items()},
              "whole": whole, "empty_cache_at_start": empty_cache,
              "passed": total.passed, "failed": total.failures, "ok": ok}
    runs = recorded_runs_dir()
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / f"{started.strftime('%Y%m%d-%H%M%S-%f')}.json"
    write_json(path, record, sort_keys=False)
    for old in sorted(runs.glob("*.json"))[:-RUNS_KEPT]:
        old.unlink()
    return path


def whole_runs_from_empty_cache() -> list[dict]:
    """The recorded ./inv test runs that validated every image, from an
    empty stage cache (as on a fresh clone), and passed; newest first."""
    runs = []
    for path in sorted(recorded_runs_dir().glob("*.json"), reverse=True):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("whole") and record.get("empty_cache_at_start") \
                and record.get("ok") and isinstance(record.get("minutes"), (int, float)):
            runs.append(record)
    return runs


def newest_whole_run_from_empty_cache() -> dict | None:
    runs = whole_runs_from_empty_cache()
    return runs[0] if runs else None


def _is_empty(directory: Path) -> bool:
    return not directory.is_dir() or not any(directory.iterdir())


def run_test_suite(specs, echo=sys.stdout, whole: bool = False) -> bool:
    """Images with no artifact of their current inputs are built, as
    `./inv build --all -j 2` would (the stages they share are built once),
    with tests/unit beside them; then each image validated. Ends with where
    the time went and one 'N passed, N failed' line; the run is recorded
    (record_test_run). whole: specs are every image of images/ and tests/images."""
    require_no_lab()
    started, empty_cache = dt.datetime.now(dt.timezone.utc), _is_empty(settings.cache_dir())
    total = Counts()
    ok = True
    watch = Stopwatch()
    with tempfile.TemporaryDirectory(prefix="golden-unit-") as tmp:
        unit = UnitTestsBeside(Path(tmp), echo)
        built = watch.part("builds, unit tests beside", unit.builds, specs)
        total += unit.counts()
    watch.beside[UNIT_TESTS] = unit.run.seconds
    if built is None:
        ok = False
        print("unit tests failed: images not validated", file=echo)
    else:
        built = dict(zip([s.name for s in specs], built))
        for spec in specs:
            artifact = built[spec.name]
            counts = watch.part(f"validation of {spec.name}", validate_artifact, artifact, echo=echo)
            total += counts
            ok = ok and read_manifest(artifact / "manifest.json")["test"]["passed"]
        lab_images = {m.image for m in load_lab()}
        if ok and lab_images <= {s.name for s in specs}:
            counts = watch.part("lab", run_lab_test, echo)
            total += counts
            ok = ok and counts.tests > 0 and counts.failures == 0
        else:
            print(f"lab test (./inv lab.up/down): not run; it needs every lab image "
                  f"({', '.join(sorted(lab_images))}) validated in this run", file=echo)
    ok = ok and total.tests > 0
    try:
        record_test_run(watch, started, total, ok, whole, empty_cache)
    except OSError as exc:
        print(f"test: this run's minutes not recorded in {recorded_runs_dir()}: {exc}", file=echo)
    print(f"test: {watch.summary()}", file=echo)
    print(f"test: {total.passed} passed, {total.failures} failed", file=echo)
    return ok
