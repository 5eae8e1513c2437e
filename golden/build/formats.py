"""The disk in the formats other hypervisors and clouds import (spec
`outputs`), each made by qemu-img from the sealed disk and proven to hold
exactly the disk that was sealed (`qemu-img compare`; the validation
compares them again with the qcow2 it booted):

    raw    <name>-<version>.raw.zst  the raw disk, zstd-compressed (clouds import raw)
    vmdk   <name>-<version>.vmdk     streamOptimized (VMware, OVA/OVF import)
    vhdx   <name>-<version>.vhdx     dynamic (Hyper-V)
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from golden.errors import GoldenError
from golden.vm.runner import BuildLog

SUFFIXES = {"raw": "raw.zst", "vmdk": "vmdk", "vhdx": "vhdx"}
CONVERT = {"raw": ["-O", "raw"], "vmdk": ["-O", "vmdk", "-o", "subformat=streamOptimized"],
           "vhdx": ["-O", "vhdx", "-o", "subformat=dynamic"]}
ZSTD = ["zstd", "-q", "-9", "--long=27", "-T0"]  # as the box: a 128 MiB window


def format_of(path: Path) -> str | None:
    return next((fmt for fmt, suffix in SUFFIXES.items() if path.name.endswith("." + suffix)), None)


def make_format(fmt: str, sealed_qcow2: Path, dest_dir: Path, stem: str, log: BuildLog) -> Path:
    """The sealed disk as fmt in dest_dir/<stem>.<suffix>, compared with it
    before it is kept; written under a temporary name."""
    dest = dest_dir / f"{stem}.{SUFFIXES[fmt]}"
    tmp = dest_dir / f".{dest.name}.tmp"
    raw = dest_dir / f".{stem}.raw.tmp"
    try:
        if fmt == "raw":
            log.run(["qemu-img", "convert", "-O", "raw", sealed_qcow2, raw])
            log.run([*ZSTD, "-o", tmp, raw])
        else:
            log.run(["qemu-img", "convert", *CONVERT[fmt], sealed_qcow2, tmp])
        check_same_disk(sealed_qcow2, tmp, fmt, log)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
        raw.unlink(missing_ok=True)
    return dest


def check_same_disk(reference_qcow2: Path, path: Path, fmt: str, log: BuildLog) -> None:
    """GoldenError unless path (of format fmt) holds the reference's disk, byte for byte."""
    raw = path.with_name(f".{path.name}.compare.raw")
    try:
        if fmt == "raw":
            log.run(["zstd", "-q", "-d", "--long=27", "-f", "-o", raw, path])  # sparse: only the data is written
            image, image_format = raw, "raw"
        else:
            image, image_format = path, fmt
        cmd = ["qemu-img", "compare", "-f", "qcow2", "-F", image_format, str(reference_qcow2), str(image)]
        log.write("$ " + " ".join(cmd))
        result = subprocess.run(cmd, capture_output=True, text=True)
        log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            said = (result.stdout + result.stderr).strip().splitlines()
            raise GoldenError(f"{path.name} does not hold the disk of {reference_qcow2.name}: "
                              f"{said[-1] if said else f'qemu-img compare exited {result.returncode}'}")
    finally:
        raw.unlink(missing_ok=True)
