"""./inv test: the unit tests, then every image built if needed and
validated (golden.verify.image), then the lab up and down. Ends with one
'N passed, N failed' line."""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from golden.build.manifest import read_manifest
from golden.build.pipeline import build_images
from golden.lab import load_lab, require_no_lab
from golden.verify.image import validate_artifact
from golden.verify.junit import Counts, junit_counts, run_pytest

TEST_BUILD_JOBS = 2


# Two test files at a time: many unit tests wait on the archives or on a
# tool's I/O (real mmdebstrap runs), so the two cores are rarely both busy.
UNIT_WORKERS = ["-n", "2", "--dist", "loadfile"]


def run_unit_tests(report: Path) -> tuple[int, Counts]:
    return run_pytest("unit", report, *UNIT_WORKERS), junit_counts(report)


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


class Stopwatch:
    """Seconds of each named part of a run, in the order they ran, and how
    busy the host's CPUs were meanwhile (near 100%: only less work makes it faster)."""
    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.busy: dict[str, float] = {}

    def part(self, name: str, fn, *args, **kwargs):
        start, (busy, total) = time.monotonic(), cpu_ticks()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[name] = round(time.monotonic() - start, 1)
            busy_after, total_after = cpu_ticks()
            self.busy[name] = round(100 * (busy_after - busy) / max(total_after - total, 1))

    def summary(self) -> str:
        total = sum(self.seconds.values())
        return (f"{total / 60:.1f} min in all (minutes, CPUs busy: "
                + ", ".join(f"{name} {secs / 60:.1f} {self.busy.get(name, 0)}%"
                            for name, secs in self.seconds.items()) + ")")


def run_test_suite(specs, echo=sys.stdout) -> bool:
    """tests/unit, then each image validated. Images with no artifact of their
    current inputs are built first, as `./inv build --all -j 2` would: the
    stages they share are built once. Ends with where the time went and one
    'N passed, N failed' line."""
    require_no_lab()
    total = Counts()
    ok = True
    watch = Stopwatch()
    with tempfile.TemporaryDirectory(prefix="golden-unit-") as tmp:
        rc, counts = watch.part("unit tests", run_unit_tests, Path(tmp) / "unit.xml")
    total += counts
    if rc != 0 or counts.tests == 0:
        ok = False
        print("unit tests failed: images not validated", file=echo)
    else:
        # Up-to-date artifacts are reused; the others are built (current packages, see freshness.py).
        built = dict(zip([s.name for s in specs],
                         watch.part("builds", build_images, specs, jobs=TEST_BUILD_JOBS, echo=echo)))
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
    print(f"test: {watch.summary()}", file=echo)
    print(f"test: {total.passed} passed, {total.failures} failed", file=echo)
    return ok and total.tests > 0
