"""The benchmark's report: figures against targets, Markdown, PNG chart, and
the guest script it runs (the measurements themselves run in ./inv bench)."""
import io
import subprocess
import sys

from golden.bench.bench import (TARGETS, _chart, _markdown, best_figures, boot_phases, floors, package_job_seconds,
                                provision_step_seconds, size_steps, the_rootfs_tar)
from golden.verify.junit import seconds_by_test_file

from conftest import REPO

REPORT = {
    "started_at": "2026-11-23T01:00:00+00:00", "image": "infra",
    "host": {"cores": 2, "accelerator": "tcg", "qemu": "QEMU emulator version 10.0.2"},
    "figures": {"cold_build_s": 250.0, "noop_rebuild_s": 1.2, "template_rebuild_s": 110.0, "test_s": 400.0,
                "boot_to_ssh_s": 19.5, "box_mb": 517.2, "qcow2_mb": 517.1},
    "stages": {"cold build": {"rootfs": 80.0, "disk": 5.0, "provision": 100.0, "package": 17.0},
               "template rebuild": {"rootfs": 2.0, "disk": 1.0, "provision": 95.0, "package": 16.0}},
    "template_rebuild_reused": ["rootfs", "disk", "container"],
    "socket_vs_tcp": {"pgbench_socket_tps": 900.0, "pgbench_tcp_tps": 600.0, "pgbench_socket_latency_ms": 4.4,
                      "pgbench_tcp_latency_ms": 6.6, "valkey_socket_SET_rps": 20000.0, "valkey_tcp_SET_rps": 10000.0,
                      "valkey_socket_GET_rps": 21000.0, "valkey_tcp_GET_rps": None},
}


def test_markdown_shows_each_figure_against_its_target():
    md = _markdown(REPORT)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert rows["cold build, empty caches, mirror reachable"].endswith("| 250.0 s | <= 180 s | no |  |  |")
    noop_rebuild = rows["rebuild with nothing changed (archives checked, no VM started)"]
    assert noop_rebuild.endswith("| 1.2 s | <= 3 s | yes |  |  |")
    assert rows["boot of the built box to SSH ready"].endswith("| 19.5 s | <= 15 s | no |  |  |")
    assert rows["compressed box size"].endswith("| 517.2 MB | <= 220 MB | no |  |  |")
    assert len([r for r in rows.values() if r.endswith((" yes |  |  |", " no |  |  |"))]) == len(TARGETS)
    assert rows["pgbench select-only tps"] == "| pgbench select-only tps | 900.0 | 600.0 | 1.5 |"
    assert rows["valkey-benchmark GET req/s"].endswith("| 21000.0 | None | None |")  # missing, not invented
    assert "2 cores, accelerator tcg" in md


def test_the_whole_test_run_is_reported_from_the_newest_record_or_said_to_be_missing():
    md = _markdown(REPORT)
    row = next(line for line in md.splitlines() if line.startswith("| whole ./inv test"))
    assert row.endswith("| not measured | <= 30 min | no |  |  |")
    assert "No whole `./inv test` from an empty cache has passed on this machine yet" in md
    run = {"started_at": "2026-12-02T22:23:40+00:00", "minutes": 29.5, "passed": 848, "failed": 0,
           "parts": {"builds, unit tests beside": {"minutes": 11.2, "cpu_busy_percent": 98},
                     "lab": {"minutes": 2.2, "cpu_busy_percent": 89}},
           "beside": {"unit tests (two test files at a time)": 10.6}}
    md = _markdown(dict(REPORT, figures=dict(REPORT["figures"], whole_test_min=29.5), whole_test_run=run))
    row = next(line for line in md.splitlines() if line.startswith("| whole ./inv test"))
    assert row.endswith("| 29.5 min | <= 30 min | yes |  |  |")
    assert ("started 2026-12-02T22:23:40+00:00: 29.5 min, 848 tests passed. Minutes per part: builds, unit tests "
            "beside 11.2 (98% CPU busy), lab 2.2 (89% CPU busy); unit tests (two test files at a time) 10.6 of it.") in md


def test_what_holds_each_target_not_met_is_its_cpu_work_or_for_the_box_its_largest_packages():
    run = {"started_at": "2026-12-03T06:04:00+00:00", "minutes": 31.0, "passed": 855,
           "parts": {"builds": {"minutes": 11.0, "cpu_busy_percent": 98},
                     "infra": {"minutes": 20.0, "cpu_busy_percent": 80}}}
    report = dict(REPORT, whole_test_run=run, figures=dict(REPORT["figures"], whole_test_min=31.0),
                  cpu_busy_percent={"cold_build_s": 90, "noop_rebuild_s": 40, "template_rebuild_s": 60,
                                    "test_s": 85},  # none for the boot
                  box_by_package=[
                      {"package": "linux-image-6.12.57+deb13-amd64", "installed_bytes": 1, "compressed_bytes": 65_400_000},
                      {"package": "libllvm19", "installed_bytes": 1, "compressed_bytes": 33_449_999}])
    held = floors(report)
    assert held["cold_build_s"] == {"floor": 225.0, "cpu_busy_percent": 90, "above_target": True}
    assert held["template_rebuild_s"] == {"floor": 66.0, "cpu_busy_percent": 60, "above_target": False}
    assert held["test_s"]["floor"] == 340.0
    # 31 min x (11 x 98 + 20 x 80) / 31 %
    assert held["whole_test_min"] == {"floor": 26.8, "cpu_busy_percent": 86, "above_target": False}
    assert held["box_mb"] == {"largest_packages_mb": {"linux-image-6.12.57+deb13-amd64": 65.4, "libllvm19": 33.4}}
    assert "noop_rebuild_s" not in held  # met
    assert "boot_to_ssh_s" not in held  # not met, but no CPU figure: nothing invented
    rows = {line.split(" | ")[0].lstrip("| "): line for line in _markdown(dict(report, floors=held)).splitlines()
            if line.startswith("| ")}
    assert "| no | 225.0 s of CPU work (90% busy), above the target |" in \
        rows["cold build, empty caches, mirror reachable"]
    assert "| no | 66.0 s of CPU work (60% busy), under the target: idle time, not work |" in \
        rows["rebuild after editing one provisioning template"]
    assert "| no | the products' packages: linux-image-6.12.57+deb13-amd64 65.4, libllvm19 33.4 MB |" in \
        rows["compressed box size"]
    assert rows["boot of the built box to SSH ready"].endswith("| no |  |  |")


def test_best_figures_come_from_earlier_reports_of_the_same_image_and_host_kind_and_the_recorded_runs(tmp_path):
    import json
    from golden.verify.suite import recorded_runs_dir
    reports = tmp_path / "bench"
    reports.mkdir()
    def earlier(name, started_at, image="infra", accelerator="tcg", **figures):
        (reports / name).write_text(json.dumps(dict(REPORT, started_at=started_at, image=image,
                                                    host=dict(REPORT["host"], accelerator=accelerator),
                                                    figures=dict(REPORT["figures"], **figures))))
    earlier("1.json", "2026-12-01T10:59:00+00:00", cold_build_s=142.5, box_mb=600.0)
    earlier("2.json", "2026-12-02T12:14:00+00:00", cold_build_s=100.0, image="infra-open")  # another image
    earlier("3.json", "2026-12-02T13:00:00+00:00", cold_build_s=90.0, accelerator="kvm")  # another host kind
    (reports / "4.json").write_text("{half a report")
    runs = recorded_runs_dir()
    runs.mkdir(parents=True)
    for name, minutes, whole, empty in (("a", 30.6, True, True), ("b", 29.0, True, False), ("c", 12.0, False, True)):
        (runs / f"{name}.json").write_text(json.dumps({"started_at": f"2026-12-02T2{name}", "minutes": minutes,
                                                       "whole": whole, "empty_cache_at_start": empty, "ok": True}))
    best = best_figures(reports, REPORT)
    assert best["cold_build_s"] == {"value": 142.5, "measured_at": "2026-12-01T10:59:00+00:00"}
    assert best["box_mb"] == {"value": 517.2, "measured_at": REPORT["started_at"]}  # this run's
    assert best["whole_test_min"] == {"value": 30.6, "measured_at": "2026-12-02T2a"}  # warm and partial runs left out
    md = _markdown(dict(REPORT, best=best))
    row = next(line for line in md.splitlines() if line.startswith("| cold build"))
    assert row.endswith("| 250.0 s | <= 180 s | no |  | 142.5 s (2026-12-01T10:59) |")
    assert best_figures(tmp_path / "none-yet", dict(REPORT, figures={}))["whole_test_min"]["value"] == 30.6
    assert "cold_build_s" not in best_figures(tmp_path / "none-yet", dict(REPORT, figures={}))


def test_chart_is_a_png_with_a_bar_per_stage(tmp_path):
    path = tmp_path / "stages.png"
    _chart(REPORT["stages"], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image
    with Image.open(path) as img:
        assert img.size == (900, 50 + 22 * 8)


def test_guest_script_is_valid_shell():
    assert subprocess.run(["sh", "-n", str(REPO / "golden" / "bench" / "socket_vs_tcp.sh")]).returncode == 0


def test_size_steps_show_what_each_step_saves():
    steps = size_steps({"rootfs_tar": 900_000_000, "sealed_qcow2": 1_100_000_000, "qcow2": 500_000_000,
                        "box": 400_000_000}, without_excludes=985_000_000,
                       without_fstrim={"sealed_qcow2": 1_300_000_000, "box": 450_000_000})
    assert steps[1] == ("rootfs tar without docs, man pages, foreign locales, drivers no VM needs (dpkg path-excludes)",
                        900.0, 85.0)
    assert steps[2] == ("sealed disk after provisioning and apt clean, without fstrim (qcow2, compacted)",
                        1300.0, None)
    assert steps[3] == ("sealed disk after fstrim (qcow2, compacted)", 1100.0, 200.0)
    assert steps[4] == ("qcow2, zstd-compressed cluster by cluster (the fresh-host image)", 500.0, 600.0)
    assert steps[5] == ("box: the sealed disk plus Vagrant's login, one zstd stream", 400.0, 700.0)
    assert steps[6] == ("box if the seal had no fstrim", 450.0, None)
    md = _markdown(dict(REPORT, size_steps=steps))
    assert "| qcow2, zstd-compressed cluster by cluster (the fresh-host image) | 500.0 | 600.0 |" in md
    assert "| rootfs tar, everything installed | 985.0 |  |" in md


# systemd 257's own words (a trixie guest under TCG).
ANALYZE = ("Startup finished in 6.123s (kernel) + 2.5s (initrd) + 1min 3.204s (userspace) = 1min 11.827s \n"
           "multi-user.target reached after 1min 2.9s in userspace.\n")
BLAME = """13.512s postgresql@17-main.service
11.480s cloud-init-local.service
  850ms caddy.service
   42us sys-kernel-tracing.mount
"""


CHAIN = """The time when unit became active or started is printed after the "@" character.
The time the unit took to start is printed after the "+" character.

ssh.service +612ms
\u2514\u2500network.target @12.790s
  \u2514\u2500systemd-networkd.service @9.503s +3.242s
    \u2514\u2500-.mount @5.2s
      \u2514\u2500system.slice
"""


def test_boot_phases_read_systemd_analyze():
    phases = boot_phases(ANALYZE, BLAME, top=3)
    assert phases["phases"] == {"kernel": 6.12, "initrd": 2.5, "userspace": 63.2}
    assert phases["slowest_units"] == [("postgresql@17-main.service", 13.51), ("cloud-init-local.service", 11.48),
                                       ("caddy.service", 0.85)]
    uefi = boot_phases("Startup finished in 4.1s (firmware) + 3.2s (loader) + 5s (kernel) + 20.5s (userspace) = 32.8s",
                       "")
    assert uefi["phases"] == {"firmware": 4.1, "loader": 3.2, "kernel": 5.0, "userspace": 20.5}
    chain = boot_phases(ANALYZE, BLAME, CHAIN)["ssh_critical_chain"]
    assert chain == ["ssh.service +612ms", "\u2514\u2500network.target @12.790s",
                     "  \u2514\u2500systemd-networkd.service @9.503s +3.242s", "    \u2514\u2500-.mount @5.2s"]
    md = _markdown(dict(REPORT, boot=boot_phases(ANALYZE, BLAME, CHAIN)))
    assert "```\nssh.service +612ms\n" in md
    slow = boot_phases(ANALYZE, BLAME, "ssh.service +1.2s\n\u2514\u2500network.target @1min 2.5s\n")
    assert slow["ssh_critical_chain"][1] == "\u2514\u2500network.target @1min 2.5s"


def test_package_job_seconds_from_a_build_log(tmp_path):
    from golden.build.stages.package import in_parallel
    from golden.vm.runner import BuildLog
    log = BuildLog(tmp_path / "build.log", echo=io.StringIO(), label="infra: ")
    in_parallel({"box": lambda: None, "vmdk": lambda: None}, log)
    seconds = package_job_seconds(log.path.read_text())
    assert set(seconds) == {"box", "vmdk"} and all(0 <= s < 5 for s in seconds.values())
    md = _markdown(dict(REPORT, package_jobs=seconds))
    line = next(l for l in md.splitlines() if l.startswith("Package stage of the template rebuild, jobs two at a time"))
    assert " box " in line and " vmdk " in line  # in the order they finished


def test_seconds_by_test_file_from_a_real_junit_report(tmp_path):
    tests = tmp_path / "t"
    tests.mkdir()
    (tests / "test_slow.py").write_text("import time\ndef test_a(): time.sleep(0.3)\ndef test_b(): time.sleep(0.2)\n")
    (tests / "test_fast.py").write_text("def test_c(): pass\n")
    report = tmp_path / "r.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                    "-o", "junit_family=xunit1", str(tests)], cwd=tmp_path, check=True, capture_output=True)
    seconds = seconds_by_test_file([report])
    assert list(seconds)[0].endswith("test_slow.py") and 0.5 <= list(seconds.values())[0] < 2
    assert len(seconds) == 2
    md = _markdown(dict(REPORT, boot=boot_phases(ANALYZE, BLAME), validation_test_files=seconds))
    assert "Phases: kernel 6.12 s, initrd 2.5 s, userspace 63.2 s." in md
    assert "postgresql@17-main.service 13.51 s" in md


def test_the_report_shows_the_largest_packages_and_the_total():
    rows = [{"package": "libllvm19", "installed_bytes": 130_000_000, "compressed_bytes": 33_400_000},
            {"package": "caddy", "installed_bytes": 40_400_000, "compressed_bytes": 14_000_000}]
    md = _markdown(dict(REPORT, box_by_package=rows))
    assert "2 rows (the packages and the files no package owns): 170.4 MB installed, 47.4 MB compressed." in md
    assert "| libllvm19 | 130.0 | 33.4 |" in md


# Packer's stamped lines from a real build (2026-12-01 09:44, image infra), other lines cut.
PACKER_LINES = """\
2026-12-01T09:44:55Z: ==> qemu: Retrieving ISO
2026-12-01T09:44:55Z: ==> qemu: Starting VM, booting disk image
2026-12-01T09:44:57Z: ==> qemu: Waiting for SSH to become available...
2026-12-01T09:45:15Z: ==> qemu: Connected to SSH!
2026-12-01T09:45:15Z: ==> qemu: Provisioning with shell script: /tmp/packer-shell1606912803
2026-12-01T09:45:15Z: ==> qemu: Uploading /w/files/ => /tmp/golden
2026-12-01T09:45:16Z: ==> qemu: Provisioning with shell script: /w/steps/10-bootloader.sh
2026-12-01T09:45:17Z: ==> qemu: Installing for i386-pc platform.
2026-12-01T09:45:22Z: ==> qemu: Provisioning with shell script: /w/steps/20-configure.sh
2026-12-01T09:45:23Z: ==> qemu: Provisioning with shell script: /w/steps/30-services.sh
2026-12-01T09:45:38Z: ==> qemu: Provisioning with shell script: /w/steps/40-apps.sh
2026-12-01T09:45:41Z: ==> qemu: Downloading /etc/ansible/facts.d/golden.fact => /w/facts.json
2026-12-01T09:45:41Z: ==> qemu: Provisioning with shell script: /w/steps/90-seal.sh
2026-12-01T09:45:43Z:     qemu: /: 2.9 GiB (3135008768 bytes) trimmed
2026-12-01T09:45:44Z: ==> qemu: Gracefully halting virtual machine...
2026-12-01T09:45:46Z: ==> qemu: Converting hard drive...
2026-12-01T09:45:47Z: Build 'qemu' finished after 52 seconds 551 milliseconds.
"""


def test_provision_step_seconds_from_packer_stamps():
    seconds = provision_step_seconds("[ 4.3s] ==> provision\n" + PACKER_LINES + "$ (packer: exit 0 after 52.6s)\n")
    assert seconds == {"disk copy in": 0.0, "boot to SSH": 20.0, "upload": 1.0, "10-bootloader": 6.0,
                       "20-configure": 1.0, "30-services": 15.0, "40-apps": 3.0, "facts download": 0.0,
                       "90-seal": 3.0, "shutdown": 2.0, "disk copy out": 1.0}
    assert sum(seconds.values()) == 52.0
    assert provision_step_seconds("==> qemu: Connected to SSH!\n") == {}  # unstamped: nothing invented
    md = _markdown(dict(REPORT, provision_steps=seconds))
    assert "Provisioning VM of the template rebuild (seconds, Packer's stamps): disk copy in 0, boot to SSH 20," in md


def test_the_rootfs_filed_under_two_keys_is_one(tmp_path, monkeypatch):
    """A build that refreshed the lock files its rootfs under the pinned key
    too (hard links); the bench breaks down that one rootfs. Two distinct
    rootfs entries are not the bench's one build: it says so."""
    import pytest
    from golden.bench.bench import BenchError
    from golden.build.cache import alias
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path))
    (tmp_path / "rootfs" / "unpinned").mkdir(parents=True)
    (tmp_path / "rootfs" / "unpinned" / "rootfs.tar").write_bytes(b"tar")
    alias("rootfs", "unpinned", "pinned")
    assert (tmp_path / "rootfs" / "pinned" / "rootfs.tar").is_file()
    assert the_rootfs_tar(tmp_path).read_bytes() == b"tar"
    (tmp_path / "rootfs" / "other").mkdir()
    (tmp_path / "rootfs" / "other" / "rootfs.tar").write_bytes(b"tar")  # same bytes, another file
    with pytest.raises(BenchError, match="expected the one rootfs of the bench's builds, found 2"):
        the_rootfs_tar(tmp_path)


def test_the_host_speed_is_measured_on_fixed_work_and_reported_beside_the_quickest(tmp_path):
    import hashlib
    import json
    from golden.bench.host import reference_data, reference_seconds
    # The same work on every run, or reports of different runs cannot be compared.
    assert hashlib.sha256(reference_data()).hexdigest().startswith("22abf874b68018ef")
    assert 0 < reference_seconds(rounds=1) < 60
    assert "Host speed" not in _markdown(REPORT)  # a report from before it was measured
    reports = tmp_path / "bench"
    reports.mkdir()
    for name, host in (("1.json", dict(REPORT["host"], reference_s={"start": 0.61, "end": 0.48})),
                       ("2.json", dict(REPORT["host"], accelerator="kvm", reference_s={"start": 0.2, "end": 0.2})),
                       ("3.json", REPORT["host"])):  # another host kind; one without it
        (reports / name).write_text(json.dumps(dict(REPORT, started_at=f"2026-12-03T1{name[0]}:00:00+00:00",
                                                    host=host)))
    this = dict(REPORT, host=dict(REPORT["host"], reference_s={"start": 0.7, "end": 0.66}))
    best = best_figures(reports, this)
    assert best["reference_s"] == {"value": 0.48, "measured_at": "2026-12-03T11:00:00+00:00"}
    assert ("Host speed: a fixed single-core deflate (golden/bench/host.py) took 0.7 s at the start and 0.66 s at "
            "the end; the quickest on this machine: 0.48 s (2026-12-03T11:00).") in _markdown(dict(this, best=best))
