"""Stage package: compressed qcow2, libvirt Vagrant box, SBOMs, SHA256SUMS.

The sealed disk lets nobody log in: the qcow2 for fresh hosts gets its users
and keys from cloud-init. The box's disk is the same plus the two files that
let Vagrant in (its insecure key, which `vagrant up` replaces, and a sudo
rule), written into the ext4 root offline with debugfs: no second boot, no mount.

The box carries no accelerator or driver setting: vagrant/Vagrantfile picks
the libvirt driver by probing the host at `vagrant up` time.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
import subprocess
import tarfile
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

from golden.build.cache import sha256_file
from golden.build.formats import SUFFIXES, make_format
from golden.build.sbom import write_sboms
from golden.build.stages.disk import SECTOR, partition
from golden.errors import GoldenError
from golden.vm.runner import BuildLog, capture, stop_all_running

# zstd level of the box (./inv bench measures the choice; see README Performance).
BOX_ZSTD_LEVEL = 9
VAGRANT_USER = "vagrant"
VAGRANT_SUDOERS = f"{VAGRANT_USER} ALL=(ALL) NOPASSWD: ALL\n"
# The files that let Vagrant in: the sealed image has neither (packer.SEAL_LOGIN).
VAGRANT_LOGIN_FILES = (f"/home/{VAGRANT_USER}/.ssh/authorized_keys", f"/etc/sudoers.d/{VAGRANT_USER}")

# The guest named: otherwise Vagrant detects it over SSH on every up and
# halt, some 10 s each under TCG. A project's Vagrantfile can still override it.
BOX_VAGRANTFILE = """\
Vagrant.configure("2") do |config|
  config.vm.guest = :debian
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
  end
end
"""


def compress_qcow2(src: Path, dest: Path, log: BuildLog) -> None:
    # zstd: about as small as zlib (design.md) and several times faster.
    log.run(["qemu-img", "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", src, dest])


def _debugfs(device: str, *requests: str) -> str:
    # debugfs exits 0 even when a request fails: callers check what it did.
    return capture(["debugfs", "-w", "-f", "-", device], input="\n".join(requests) + "\n")


def _owner(device: str, path: str) -> tuple[int, int]:
    out = capture(["debugfs", "-R", f"stat {path}", device])
    found = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", out)
    if not found:
        raise GoldenError(f"box disk: {path} not found in the image")
    return int(found.group(1)), int(found.group(2))


def make_box_disk(sealed_qcow2: Path, login_pubkey: Path, dest: Path, log: BuildLog) -> None:
    """dest: the sealed disk plus Vagrant's login (key and sudo rule)."""
    raw = dest.with_suffix(".raw")
    sudoers = dest.with_suffix(".sudoers")
    try:
        log.run(["qemu-img", "convert", "-O", "raw", sealed_qcow2, raw])
        device = f"{raw}?offset={partition(raw, 'root')['start'] * SECTOR}"
        uid, gid = _owner(device, f"/home/{VAGRANT_USER}/.ssh")
        keys, rule = VAGRANT_LOGIN_FILES
        sudoers.write_text(VAGRANT_SUDOERS)
        log.write(_debugfs(device,
                           f"write {login_pubkey} {keys}", f"sif {keys} uid {uid}", f"sif {keys} gid {gid}",
                           f"sif {keys} mode 0100600",
                           f"write {sudoers} {rule}", f"sif {rule} mode 0100440"))
        for path, expected, owner, mode in ((keys, login_pubkey.read_text(), (uid, gid), "0600"),
                                            (rule, VAGRANT_SUDOERS, (0, 0), "0440")):
            if capture(["debugfs", "-R", f"cat {path}", device]) != expected or _owner(device, path) != owner \
                    or f"Mode:  {mode}" not in capture(["debugfs", "-R", f"stat {path}", device]):
                raise GoldenError(f"box disk: writing {path} into the image failed (see the build log)")
        log.run(["e2fsck", "-f", "-n", device])
        # Not compressed: the box compresses it whole (make_box).
        log.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, dest])
    finally:
        raw.unlink(missing_ok=True)
        sudoers.unlink(missing_ok=True)


def make_box(qcow2: Path, virtual_size_bytes: int, dest: Path, level: int = BOX_ZSTD_LEVEL) -> None:
    """A libvirt box: metadata.json, Vagrantfile, box.img (an uncompressed
    qcow2) in a zstd-compressed tar. One zstd stream with a long window is
    far smaller than qcow2's own compression, which packs each 64 KiB cluster
    on its own; Vagrant unpacks it with bsdtar. Written under a temporary
    name: a failed run leaves no box."""
    metadata = {"provider": "libvirt", "format": "qcow2",
                "virtual_size": -(-virtual_size_bytes // (1 << 30))}
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        with tmp.open("wb") as out:
            # --long=27: a 128 MiB window, the most a decompressor accepts without being told.
            zstd = subprocess.Popen(["zstd", "-q", f"-{level}", "--long=27", "-T0", "-c"],
                                    stdin=subprocess.PIPE, stdout=out)
            with tarfile.open(fileobj=zstd.stdin, mode="w|", format=tarfile.GNU_FORMAT) as tar:
                for name, text in (("metadata.json", json.dumps(metadata) + "\n"), ("Vagrantfile", BOX_VAGRANTFILE)):
                    data = text.encode()
                    info = tarfile.TarInfo(name)
                    info.size, info.mode = len(data), 0o644
                    tar.addfile(info, io.BytesIO(data))
                tar.add(qcow2, arcname="box.img")
            zstd.stdin.close()
            if zstd.wait() != 0:
                raise GoldenError(f"zstd failed writing {dest.name}")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def unpack_box(box: Path, dest_dir: Path) -> Path:
    """Unpacks box into dest_dir as Vagrant does (bsdtar); returns dest_dir."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    capture(["bsdtar", "-x", "-f", str(box), "-C", str(dest_dir)])
    return dest_dir


def describe_files(paths: list[Path]) -> list[dict]:
    return [{"name": p.name, "sha256": sha256_file(p), "size": p.stat().st_size} for p in paths]


def sha256sums_text(files: list[dict]) -> str:
    """sha256sum -c's format, from the manifest's file list."""
    return "".join(f"{f['sha256']}  {f['name']}\n" for f in files)


def write_sha256sums(files: list[dict], dest: Path) -> None:
    dest.write_text(sha256sums_text(files))


def in_parallel(jobs: dict[str, Callable], log: BuildLog, workers: int = 2) -> dict:
    """Runs the jobs `workers` at a time, in the given order, and logs each
    one's seconds; returns their results by name. Two at a time: the
    compressors use both cores, but the vmdk's deflate, the comparisons and
    the SBOMs use one. After a failure no queued job starts, the running
    ones end (none is left writing), then the failure is raised; an
    interrupt stops the running tools at once."""
    def timed(name: str, job: Callable):
        start, ok = time.monotonic(), False
        try:
            result, ok = job(), True
            return result
        finally:
            log.say(f"    package: {name} {'in' if ok else 'failed after'} {time.monotonic() - start:.1f}s")

    pool = ThreadPoolExecutor(max_workers=workers)
    futures: dict[str, Future] = {}
    try:
        futures = {name: pool.submit(timed, name, job) for name, job in jobs.items()}
        wait(futures.values(), return_when=FIRST_EXCEPTION)
        failed = [f for f in futures.values() if f.done() and not f.cancelled() and f.exception()]
        if failed:
            for future in futures.values():
                future.cancel()
            wait(futures.values())
            raise failed[0].exception()
        return {name: future.result() for name, future in futures.items()}
    except BaseException as exc:
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: the tools run in their own sessions
            for future in futures.values():
                future.cancel()
            stop_all_running()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run(ctx) -> None:
    """The artifact's files from the sealed disk: the compressed qcow2, the
    box (with Vagrant's login), the spec's other outputs (raw, vmdk, vhdx),
    the SBOMs (SPDX, CycloneDX), SHA256SUMS, and what each size step left."""
    spec, out = ctx.spec, ctx.out
    sealed = ctx.results["provision"]["sealed"]
    qcow2 = out / f"{spec.name}-{ctx.version}.qcow2"
    box = out / f"{spec.name}-{ctx.version}.libvirt.box"
    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def make_vagrant_box() -> None:
        make_box_disk(sealed, ctx.login_key[1], out / "work" / "box.img", ctx.log)
        make_box(out / "work" / "box.img", spec.disk.size_bytes, box)

    def as_format(fmt: str) -> Callable:
        return lambda: make_format(fmt, sealed, out, f"{spec.name}-{ctx.version}", ctx.log)

    # Longest first (build logs, 2 cores): raw 23-36 s, vmdk 27 s, box 16-19 s, qcow2 4-6 s, vhdx 2-3 s.
    jobs = {"raw": as_format("raw"), "vmdk": as_format("vmdk"), "box": make_vagrant_box,
            "qcow2": lambda: compress_qcow2(sealed, qcow2, ctx.log), "vhdx": as_format("vhdx"),
            "sboms": lambda: write_sboms(out, spec.name, ctx.version, created, ctx.results["rootfs"] / "rootfs.tar",
                                         {name: built["tar"] for name, built in ctx.results["containers"].items()})}
    made = in_parallel({name: job for name, job in jobs.items() if name not in SUFFIXES or name in spec.outputs},
                       ctx.log)
    files = describe_files([qcow2, box, *(made[fmt] for fmt in spec.outputs if fmt in SUFFIXES), *made["sboms"]])
    write_sha256sums(files, out / "SHA256SUMS")
    ctx.results["package"] = {
        "files": files,
        "facts": json.loads(ctx.results["provision"]["facts"].read_text()),
        # What each size step leaves (./inv bench reports the savings).
        "sizes": {"rootfs_tar": (ctx.results["rootfs"] / "rootfs.tar").stat().st_size,
                  "sealed_qcow2": sealed.stat().st_size, "qcow2": qcow2.stat().st_size, "box": box.stat().st_size},
    }
    shutil.rmtree(out / "work")
