"""./inv bench: the build-speed and size figures measured in one run, each
against its target, plus ADR-002's Unix socket vs TCP loopback claim.

The run is kept apart from the user's work: it builds from a copy of the
repository (the one-template change edits the copy) with an empty stage
cache and its own artifacts directory, all under a temporary directory.
Only one VM runs at a time. Writes artifacts/bench/<timestamp>.json, .md
and -stages.png.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paramiko

from golden import settings
from golden.bench.host import reference_seconds
from golden.bench.packages import package_sizes
from golden.build import lock, mmdebstrap
from golden.build.manifest import read_manifest
from golden.build.stages import rootfs
from golden.build.stages.package import unpack_box
from golden.errors import GoldenError
from golden.files import write_json
from golden.paths import REPO
from golden.spec import load_spec
from golden.verify.image import validate_artifact
from golden.verify.junit import seconds_by_test_file
from golden.verify.suite import (Stopwatch, busy_percent, cpu_ticks, newest_whole_run_from_empty_cache,
                                 whole_runs_from_empty_cache)
from golden.vm.accel import probe_accelerator
from golden.vm.keys import insecure_key_pair
from golden.vm.qemu import QemuVM
from golden.vm.runner import BuildLog, capture

# measure: (target, unit, what)
TARGETS = {
    "cold_build_s": (180, "s", "cold build, empty caches, mirror reachable"),
    "noop_rebuild_s": (3, "s", "rebuild with nothing changed (archives checked, no VM started)"),
    "template_rebuild_s": (90, "s", "rebuild after editing one provisioning template"),
    "test_s": (180, "s", "image validation (Vagrant: boot, tests, destroy; the fresh host beside it)"),
    "boot_to_ssh_s": (15, "s", "boot of the built box to SSH ready"),
    "box_mb": (220, "MB", "compressed box size"),
    # Not run by the bench (it takes half an hour): the newest such ./inv test on this machine.
    "whole_test_min": (30, "min", "whole ./inv test from an empty cache (the newest on this machine)"),
}
EDITED_TEMPLATE = Path("provision/templates/etc/hosts.j2")
COPIED = ["tasks.py", "pyproject.toml", "golden", "images", "provision"]  # what a build reads


class BenchError(GoldenError):
    pass


def _copy_repo(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", ".vagrant"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def _timed_build(repo: Path, image: str, env: dict, log: BuildLog) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "invoke", "build", "--image", image], cwd=repo, env=env,
                          capture_output=True, text=True)
    seconds = round(time.monotonic() - start, 1)
    log.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise BenchError(f"bench build failed; see {log.path}")
    return seconds, proc.stdout


def _stage_lines(build_log: Path) -> list[str]:
    return [l for l in build_log.read_text().splitlines() if ": cached (" in l]


def _run(client: paramiko.SSHClient, command: str, timeout: float = 900) -> str:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out, err = stdout.read().decode(), stderr.read().decode()
    if stdout.channel.recv_exit_status() != 0:
        raise BenchError(f"{command!r} failed in the VM: {err.strip() or out.strip()}")
    return out


def boot_phases(analyze: str, blame: str, chain: str = "", top: int = 10) -> dict:
    """systemd-analyze's phases ("kernel", "initrd", "userspace", ... in
    seconds), the units that took longest (`systemd-analyze blame`) and what
    sshd waited for (`systemd-analyze critical-chain ssh.service`)."""
    def seconds(text: str) -> float:
        total = 0.0
        for value, unit in re.findall(r"([0-9.]+)(min|ms|us|s)", text):
            total += float(value) * {"min": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
        return round(total, 2)
    first = analyze.splitlines()[0] if analyze else ""
    phases = {name: seconds(value) for value, name in re.findall(r"((?:[0-9.]+(?:min|ms|us|s) ?)+) \((\w+)\)", first)}
    units = []
    for line in blame.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            units.append((parts[-1], seconds(" ".join(parts[:-1]))))
    waited = [line.rstrip() for line in chain.splitlines() if re.search(r"[@+][0-9.]+(?:min|ms|us|s)\b", line)]
    return {"phases": phases, "slowest_units": units[:top], "ssh_critical_chain": waited}


def package_job_seconds(build_log: str) -> dict[str, float]:
    """Seconds of each job of the package stage (two run at a time), from a build log."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"package: (\w+) in ([0-9.]+)s", build_log)}


# Packer's progress lines (stamped by -timestamp-ui) that start each part of the provisioning VM's time.
PROVISION_MARKS = (("Retrieving ISO", "disk copy in"), ("Starting VM", "boot to SSH"),
                   ("Connected to SSH", "upload"), ("Downloading ", "facts download"),
                   ("Gracefully halting", "shutdown"), ("Converting hard drive", "disk copy out"),
                   ("Build 'qemu' finished", None))


def the_rootfs_tar(cache: Path) -> Path:
    """The one rootfs entry of the bench's builds, perhaps filed under a second
    key too (hard links: alias) when the build refreshed the lock."""
    tars = list({(t.stat().st_dev, t.stat().st_ino): t for t in sorted(cache.glob("rootfs/*/rootfs.tar"))}.values())
    if len(tars) != 1:
        raise BenchError(f"expected the one rootfs of the bench's builds, found {len(tars)}")
    return tars[0]


def provision_step_seconds(build_log: str) -> dict[str, float]:
    """Seconds of each part of the provisioning VM's run (boot, each step's
    script, shutdown...), from the stamped lines Packer writes to a build log."""
    marks = []
    for m in re.finditer(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ): (?:==> )?(?:qemu: )?(.*)", build_log):
        at, text = dt.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")), m.group(2)
        script = re.search(r"Provisioning with shell script: .*/([0-9]+-[\w-]+)\.sh$", text)
        name = script.group(1) if script else next((n for mark, n in PROVISION_MARKS if text.startswith(mark)), "")
        if name != "" and (not marks or marks[-1][1] != name):
            marks.append((at, name))
    seconds: dict[str, float] = {}
    for (at, name), (end, _) in zip(marks, marks[1:]):
        if name is not None:
            seconds[name] = seconds.get(name, 0.0) + (end - at).total_seconds()
    return seconds


def boot_and_socket_bench(box: Path, work: Path, accelerator: str, log: BuildLog) -> dict:
    """Boots the box's disk as a throwaway VM: time to SSH, then the socket
    vs TCP benchmark inside it."""
    disk = unpack_box(box, work / "box") / "box.img"
    private, _ = insecure_key_pair()
    vm = QemuVM([f"file={disk},format=qcow2,snapshot=on"], work / "bench-serial.log", accelerator, log)
    start, ticks = time.monotonic(), cpu_ticks()
    vm.start()
    try:
        client = vm.login("vagrant", paramiko.PKey.from_path(private), timeout=600, step=0.5)
        boot = round(time.monotonic() - start, 1)
        boot_busy = busy_percent(ticks, cpu_ticks())
        _run(client, "systemctl is-system-running --wait || true")
        phases = boot_phases(_run(client, "systemd-analyze time"), _run(client, "systemd-analyze blame --no-pager"),
                             _run(client, "systemd-analyze critical-chain --no-pager ssh.service"))
        sftp = client.open_sftp()
        sftp.put(str(Path(__file__).with_name("socket_vs_tcp.sh")), "/tmp/bench.sh")
        sftp.close()
        out = _run(client, "sudo sh /tmp/bench.sh")
        client.close()
    finally:
        vm.stop()
    results = {"boot_to_ssh_s": boot, "boot_phases": phases, "boot_cpu_busy_percent": boot_busy}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        results[key] = float(value) if re.fullmatch(r"[0-9.]+", value) else None
    return results


def rootfs_without_excludes(repo: Path, image: str, cache: Path, work: Path, log: BuildLog) -> int:
    """Size of the image's rootfs tar built without the dpkg path-excludes
    (pinned, from the bench's package cache): what the excludes save."""
    spec = load_spec(repo / "images" / f"{image}.yaml")
    pins = (lock.read_lock(lock.lock_path(spec)) or {}).get("rootfs")
    out = work / "rootfs-with-docs"
    out.mkdir()
    with settings.environment(GOLDEN_CACHE=str(cache)):  # the bench's package cache
        # As the rootfs stage runs it: its chroot in a directory removed unmounting first.
        mmdebstrap.run(spec, rootfs.SECTION, rootfs.all_packages(spec), pins, log,
                       lambda args, mirrors: rootfs.mmdebstrap_command(spec, out, insecure_key_pair()[1], args,
                                                                       mirrors, dpkg_options=[]),
                       out / "packages.tsv")
    size = (out / "rootfs.tar").stat().st_size
    shutil.rmtree(out)
    return size


def size_steps(sizes: dict, without_excludes: int, without_fstrim: dict) -> list[tuple[str, float, float | None]]:
    """(step, MB after it, MB it saved). without_fstrim: the sizes of the same
    build with fstrim left out of the seal."""
    def mb(size: int) -> float:
        return round(size / 1e6, 1)
    return [
        ("rootfs tar, everything installed", mb(without_excludes), None),
        ("rootfs tar without docs, man pages, foreign locales, drivers no VM needs (dpkg path-excludes)",
         mb(sizes["rootfs_tar"]),
         mb(without_excludes - sizes["rootfs_tar"])),
        ("sealed disk after provisioning and apt clean, without fstrim (qcow2, compacted)",
         mb(without_fstrim["sealed_qcow2"]), None),
        ("sealed disk after fstrim (qcow2, compacted)", mb(sizes["sealed_qcow2"]),
         mb(without_fstrim["sealed_qcow2"] - sizes["sealed_qcow2"])),
        ("qcow2, zstd-compressed cluster by cluster (the fresh-host image)", mb(sizes["qcow2"]),
         mb(sizes["sealed_qcow2"] - sizes["qcow2"])),
        ("box: the sealed disk plus Vagrant's login, one zstd stream", mb(sizes["box"]),
         mb(sizes["sealed_qcow2"] - sizes["box"])),
        ("box if the seal had no fstrim", mb(without_fstrim["box"]), None),
    ]


def _ratio(a, b):
    return round(a / b, 2) if a and b else None


def _chart(stages: dict[str, dict[str, float]], path: Path) -> None:
    """Horizontal bars: seconds per stage, one group per run."""
    from PIL import Image, ImageDraw
    rows = [(run, stage, secs) for run, d in stages.items() for stage, secs in d.items()]
    longest = max((s for _, _, s in rows), default=1) or 1
    width, bar_h, left = 900, 22, 330
    img = Image.new("RGB", (width, 50 + bar_h * len(rows)), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 10), "golden ./inv bench: seconds per stage", fill="black")
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    for i, (run, stage, secs) in enumerate(rows):
        y = 40 + i * bar_h
        color = colors[list(stages).index(run) % len(colors)]
        draw.text((10, y + 4), f"{run}: {stage}", fill="black")
        draw.rectangle([left, y + 2, left + int((width - left - 80) * secs / longest), y + bar_h - 4], fill=color)
        draw.text((left + int((width - left - 80) * secs / longest) + 6, y + 4), f"{secs:.1f}", fill="black")
    img.save(path)


def _by_package_markdown(rows: list[dict], top: int = 25) -> list[str]:
    return ["", "## The rootfs by package (each package's files, zstd on their own at the box's level)", "",
            f"{len(rows)} rows (the packages and the files no package owns): "
            f"{round(sum(r['installed_bytes'] for r in rows) / 1e6, 1)} MB installed, "
            f"{round(sum(r['compressed_bytes'] for r in rows) / 1e6, 1)} MB compressed. The largest:", "",
            "| package | installed MB | compressed MB |", "| --- | --- | --- |",
            *(f"| {r['package']} | {r['installed_bytes'] / 1e6:.1f} | {r['compressed_bytes'] / 1e6:.1f} |"
              for r in rows[:top])]


def _build_breakdown_markdown(report: dict) -> list[str]:
    lines = []
    if report.get("provision_steps"):
        lines += ["", "Provisioning VM of the template rebuild (seconds, Packer's stamps): "
                  + ", ".join(f"{k} {v:g}" for k, v in report["provision_steps"].items()) + "."]
    if report.get("package_jobs"):
        lines += ["", "Package stage of the template rebuild, jobs two at a time (seconds): "
                  + ", ".join(f"{k} {v}" for k, v in report["package_jobs"].items()) + "."]
    return lines


def _whole_test_markdown(run: dict | None) -> list[str]:
    if not run:
        return ["", "## The whole ./inv test", "",
                "No whole `./inv test` from an empty cache has passed on this machine yet "
                "(run `../shared/tools/fresh-ci` or `./inv test` with an empty GOLDEN_CACHE)."]
    parts = ", ".join(f"{name} {part['minutes']} ({part['cpu_busy_percent']}% CPU busy)"
                      for name, part in run["parts"].items())
    beside = "".join(f"; {name} {minutes} of it" for name, minutes in run.get("beside", {}).items())
    return ["", "## The whole ./inv test", "",
            f"The newest whole run from an empty cache on this machine, started {run['started_at']}: "
            f"{run['minutes']} min, {run['passed']} tests passed. Minutes per part: {parts}{beside}."]


def best_figures(out_dir: Path, report: dict) -> dict[str, dict]:
    """Per target, the lowest figure of this report and of the earlier ones in
    out_dir for the same image on the same host kind (cores, accelerator),
    with when it was measured; the whole ./inv test's from the recorded runs."""
    host = (report["host"]["cores"], report["host"]["accelerator"])
    reports = [report]
    for path in out_dir.glob("*.json"):
        try:
            earlier = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        earlier_host = earlier.get("host") if isinstance(earlier, dict) else None
        if isinstance(earlier_host, dict) and earlier.get("image") == report["image"] \
                and (earlier_host.get("cores"), earlier_host.get("accelerator")) == host:
            reports.append(earlier)
    best = {}
    speeds = [(min(r["host"]["reference_s"].values()), r["started_at"]) for r in reports
              if isinstance(r["host"].get("reference_s"), dict) and r["host"]["reference_s"]]
    if speeds:
        value, measured_at = min(speeds)
        best["reference_s"] = {"value": value, "measured_at": measured_at}
    for key in TARGETS:
        if key == "whole_test_min":
            figures = [(run["minutes"], run.get("started_at", "")) for run in whole_runs_from_empty_cache()]
        else:
            figures = [(r["figures"][key], r["started_at"]) for r in reports
                       if isinstance(r.get("figures"), dict) and type(r["figures"].get(key)) in (int, float)]
        if figures:
            value, measured_at = min(figures)
            best[key] = {"value": value, "measured_at": measured_at}
    return best


def floors(report: dict) -> dict[str, dict]:
    """What holds each target this report does not meet. A time: the CPU work
    it measured, at least figure x busy share on these cores even with no CPU
    ever idle (above the target: a floor at this work). The box: the largest
    packages the products install, each compressed on its own."""
    busy = dict(report.get("cpu_busy_percent") or {})
    parts = (report.get("whole_test_run") or {}).get("parts") or {}
    if parts and all(type(p.get("cpu_busy_percent")) in (int, float) for p in parts.values()):
        minutes = sum(p["minutes"] for p in parts.values())
        busy["whole_test_min"] = sum(p["minutes"] * p["cpu_busy_percent"] for p in parts.values()) / max(minutes, 1e-9)
    held = {}
    for key, (target, _, _) in TARGETS.items():
        value = report["figures"].get(key)
        if value is None or value <= target:
            continue
        if key == "box_mb":
            held[key] = {"largest_packages_mb": {row["package"]: round(row["compressed_bytes"] / 1e6, 1)
                                                 for row in (report.get("box_by_package") or [])[:6]}}
        elif key in busy:
            floor = round(value * busy[key] / 100, 1)
            held[key] = {"floor": floor, "cpu_busy_percent": round(busy[key]), "above_target": floor > target}
    return held


def _floor_text(key: str, held: dict | None, unit: str) -> str:
    if not held:
        return ""
    if "largest_packages_mb" in held:
        return "the products' packages: " + ", ".join(f"{name} {mb}" for name, mb in
                                                      held["largest_packages_mb"].items()) + " MB"
    verdict = "above the target" if held["above_target"] else "under the target: idle time, not work"
    return f"{held['floor']} {unit} of CPU work ({held['cpu_busy_percent']}% busy), {verdict}"


def _targets_markdown(report: dict) -> list[str]:
    lines = ["| measure | value | target | met | what holds it | best on this machine |",
             "| --- | --- | --- | --- | --- | --- |"]
    for key, (target, unit, what) in TARGETS.items():
        value, best = report["figures"].get(key), (report.get("best") or {}).get(key)
        met = "yes" if value is not None and value <= target else "no"
        best_text = "" if best is None else f"{best['value']} {unit} ({best['measured_at'][:16]})"
        held = _floor_text(key, (report.get("floors") or {}).get(key), unit)
        lines.append(f"| {what} | {'not measured' if value is None else f'{value} {unit}'} | "
                     f"<= {target} {unit} | {met} | {held} | {best_text} |")
    lines += ["", f"What holds a target not met: a time's CPU work is the least it can take on "
              f"{report['host']['cores']} cores with none idle (the figure times the share of time the CPUs "
              "were busy); above the target, only less work meets it (the breakdowns below show where it goes)."]
    return lines


def _host_speed_markdown(report: dict) -> list[str]:
    speed, quickest = report["host"].get("reference_s"), (report.get("best") or {}).get("reference_s")
    if not speed:
        return []
    line = (f"Host speed: a fixed single-core deflate (golden/bench/host.py) took {speed['start']} s at the start "
            f"and {speed['end']} s at the end")
    if quickest:
        line += f"; the quickest on this machine: {quickest['value']} s ({quickest['measured_at'][:16]})"
    return ["", line + ". A slower host takes longer for the same work: compare figures at like speeds."]


def _markdown(report: dict) -> str:
    lines = [f"# golden benchmark {report['started_at']}", "",
             f"Image `{report['image']}`; host: {report['host']['cores']} cores, accelerator "
             f"{report['host']['accelerator']}, {report['host']['qemu']}.", *_host_speed_markdown(report), "",
             *_targets_markdown(report)]
    lines += ["", "Stage seconds:", ""]
    for run, stages in report["stages"].items():
        lines.append(f"- {run}: " + ", ".join(f"{k} {v}" for k, v in stages.items()))
    if "validation" in report["stages"]:
        lines += ["", "In the validation, tests/fresh runs beside the Vagrant part: its seconds overlap theirs."]
    boot = report.get("boot") or {}
    if boot:
        lines += ["", "## Where the boot goes (`systemd-analyze`, the box booted by QEMU)", "",
                  "Phases: " + ", ".join(f"{k} {v} s" for k, v in boot["phases"].items()) + ".", "",
                  "Slowest units: " + ", ".join(f"{unit} {secs} s" for unit, secs in boot["slowest_units"]) + "."]
        if boot.get("ssh_critical_chain"):
            lines += ["", "What sshd waited for (`systemd-analyze critical-chain ssh.service`):", "", "```",
                      *boot["ssh_critical_chain"], "```"]
    lines += _build_breakdown_markdown(report)
    lines += _whole_test_markdown(report.get("whole_test_run"))
    if report.get("validation_test_files"):
        lines += ["", "## Where the validation goes (seconds per test file)", "",
                  ", ".join(f"{name} {secs}" for name, secs in report["validation_test_files"].items()) + "."]
    lines += ["", f"Reused by the one-template rebuild: {', '.join(report['template_rebuild_reused']) or 'nothing'}",
              "", "## Unix socket vs TCP loopback (ADR-002), inside a VM of the image", "",
              "| measure | socket | TCP 127.0.0.1 | socket / TCP |", "| --- | --- | --- | --- |"]
    s = report["socket_vs_tcp"]
    for label, key in (("pgbench select-only tps", "pgbench_{}_tps"),
                       ("pgbench latency (ms, lower is better)", "pgbench_{}_latency_ms"),
                       ("valkey-benchmark SET req/s", "valkey_{}_SET_rps"),
                       ("valkey-benchmark GET req/s", "valkey_{}_GET_rps")):
        sock, tcp = s.get(key.format("socket")), s.get(key.format("tcp"))
        lines.append(f"| {label} | {sock} | {tcp} | {_ratio(sock, tcp)} |")
    if report.get("size_steps"):
        lines += ["", "## Where the size goes", "", "| step | MB | saved MB |", "| --- | --- | --- |"]
        lines += [f"| {step} | {size} | {saved if saved is not None else ''} |"
                  for step, size, saved in report["size_steps"]]
    if report.get("box_by_package"):
        lines += _by_package_markdown(report["box_by_package"])
    lines += ["", "Reproduce: `./inv bench` (about 20 minutes on 2 cores under TCG).", ""]
    return "\n".join(lines)


def _measure_builds(repo: Path, image: str, env: dict, artifacts: Path, log: BuildLog,
                    watch: Stopwatch) -> tuple[dict, dict, Path]:
    """Cold build, no-op rebuild, one-template rebuild: (figures, stage times, the last artifact);
    watch gets how busy the CPUs were in each."""
    figures, stages = {}, {}
    with log.stage("cold build (empty cache)"):
        figures["cold_build_s"], _ = watch.part("cold_build_s", _timed_build, repo, image, env, log)
    first = (artifacts / image / "latest").resolve()
    stages["cold build"] = read_manifest(first / "manifest.json")["stages"]
    with log.stage("rebuild, nothing changed"):
        figures["noop_rebuild_s"], out = watch.part("noop_rebuild_s", _timed_build, repo, image, env, log)
        if "up to date" not in out:
            raise BenchError("the no-op rebuild built something")
    with log.stage(f"rebuild after editing {EDITED_TEMPLATE}"):
        with (repo / EDITED_TEMPLATE).open("a") as f:
            f.write("# bench: one provisioning template changed\n")
        figures["template_rebuild_s"], _ = watch.part("template_rebuild_s", _timed_build, repo, image, env, log)
    second = (artifacts / image / "latest").resolve()
    stages["template rebuild"] = read_manifest(second / "manifest.json")["stages"]
    return figures, stages, second


def _sizes_without_fstrim(repo: Path, image: str, env: dict, artifacts: Path, log: BuildLog) -> dict:
    with log.stage("rebuild with no fstrim in the seal (size comparison)"):
        seal = repo / "provision" / "90-seal.sh"
        if "\nfstrim -v /\n" not in seal.read_text():
            raise BenchError(f"{seal.name} no longer runs 'fstrim -v /': update the bench")
        seal.write_text(seal.read_text().replace("\nfstrim -v /\n", "\n"))
        _timed_build(repo, image, env, log)
        return read_manifest((artifacts / image / "latest").resolve() / "manifest.json")["sizes"]


def _report(started, image: str, accelerator: str, figures: dict, stages: dict, reused: list, steps: list,
            vm_results: dict, breakdown: dict, whole_test_run: dict | None = None,
            cpu_busy: dict | None = None) -> dict:
    return {
        "started_at": started.isoformat(timespec="seconds"), "image": image,
        "host": {"cores": os.cpu_count(), "accelerator": accelerator,
                 "qemu": capture(["qemu-system-x86_64", "--version"]).splitlines()[0]},
        "figures": figures, "cpu_busy_percent": cpu_busy or {},
        "targets": {k: {"target": t, "unit": u, "what": w, "met": figures.get(k) is not None and figures[k] <= t}
                    for k, (t, u, w) in TARGETS.items()},
        "stages": stages, "template_rebuild_reused": reused, "size_steps": steps,
        "whole_test_run": whole_test_run,
        "boot": breakdown["boot"], "validation_test_files": breakdown["test_files"],
        "package_jobs": breakdown["package_jobs"], "provision_steps": breakdown["provision_steps"],
        "box_by_package": breakdown["by_package"],
        "socket_vs_tcp": dict(vm_results, ratios={
            "pgbench_tps": _ratio(vm_results.get("pgbench_socket_tps"), vm_results.get("pgbench_tcp_tps")),
            "valkey_SET": _ratio(vm_results.get("valkey_socket_SET_rps"), vm_results.get("valkey_tcp_SET_rps")),
            "valkey_GET": _ratio(vm_results.get("valkey_socket_GET_rps"), vm_results.get("valkey_tcp_GET_rps")),
        }),
    }


def _write_report(report: dict, stem: Path, log: BuildLog) -> Path:
    json_path = stem.with_suffix(".json")
    write_json(json_path, report, sort_keys=False)  # whole: later runs read it for their best figures
    stem.with_suffix(".md").write_text(_markdown(report))
    _chart(report["stages"], stem.with_name(f"{stem.name}-stages.png"))
    log.say(f"bench report: {stem.with_suffix('.md')}")
    return json_path


def run_bench(image: str, out_dir: Path, echo=sys.stdout) -> Path:
    started = dt.datetime.now(dt.timezone.utc)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    log = BuildLog(out_dir / f"{stamp}.log", echo=echo)
    accelerator = probe_accelerator()
    work = Path(tempfile.mkdtemp(prefix="golden-bench-"))
    try:
        repo = _copy_repo(work / "repo")
        artifacts = work / "artifacts"
        # Its own cache and artifacts; every version it builds stays until it has read them.
        env = dict(os.environ, GOLDEN_CACHE=str(work / "cache"), GOLDEN_ARTIFACTS=str(artifacts),
                   GOLDEN_KEEP_VERSIONS="10", GOLDEN_CACHE_MAX_GB="100")
        watch = Stopwatch()
        speed_at_start = reference_seconds()
        figures, stages, second = _measure_builds(repo, image, env, artifacts, log, watch)
        reused = [l.split(":")[0].split()[-1] for l in _stage_lines(second / "build.log")]
        with log.stage("image validation (./inv test's image part)"):
            watch.part("test_s", validate_artifact, second, echo=echo)
            figures["test_s"] = watch.seconds["test_s"]
        stages["validation"] = {m.group(1): float(m.group(2)) for m in re.finditer(
            r"<== (.+?) done in ([0-9.]+)s", (second / "test.log").read_text())}
        box = next(second.glob("*.libvirt.box"))
        figures["box_mb"] = round(box.stat().st_size / 1e6, 1)
        figures["qcow2_mb"] = round(next(second.glob("*.qcow2")).stat().st_size / 1e6, 1)
        with log.stage("rootfs without dpkg path-excludes (size comparison)"):
            without_excludes = rootfs_without_excludes(repo, image, work / "cache", work, log)
        with log.stage("the rootfs by package, each compressed on its own (size breakdown)"):
            by_package = package_sizes(the_rootfs_tar(work / "cache"))
        with log.stage("boot to SSH, then socket vs TCP in the VM"):
            vm_results = boot_and_socket_bench(box, work, accelerator, log)
        figures["boot_to_ssh_s"] = vm_results.pop("boot_to_ssh_s")
        watch.busy["boot_to_ssh_s"] = vm_results.pop("boot_cpu_busy_percent")
        breakdown = {"boot": vm_results.pop("boot_phases"), "test_files": seconds_by_test_file(
            [r for r in (second / "test-report.xml", second / "fresh-host-report.xml") if r.is_file()]),
            "package_jobs": package_job_seconds((second / "build.log").read_text()),
            "provision_steps": provision_step_seconds((second / "build.log").read_text()), "by_package": by_package}
        without_fstrim = _sizes_without_fstrim(repo, image, env, artifacts, log)
        whole_test_run = newest_whole_run_from_empty_cache()
        figures["whole_test_min"] = whole_test_run["minutes"] if whole_test_run else None
        report = _report(started, image, accelerator, figures, stages, reused, size_steps(
            read_manifest(second / "manifest.json")["sizes"], without_excludes, without_fstrim), vm_results, breakdown,
            whole_test_run, watch.busy)
        report["host"]["reference_s"] = {"start": speed_at_start, "end": reference_seconds()}
        report.update(floors=floors(report), best=best_figures(out_dir, report))
        return _write_report(report, out_dir / stamp, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
