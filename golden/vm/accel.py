"""Choose the QEMU accelerator by a real probe, never by /dev/kvm alone.

A host may expose /dev/kvm (and even let KVM_CREATE_VM succeed) without
hardware virtualization: guests then hang after the bootloader. KVM is chosen
only when the CPU flags show vmx or svm and /dev/kvm opens read-write.
GOLDEN_ACCEL=kvm|tcg forces the choice.
"""
from __future__ import annotations

import os
from pathlib import Path

from golden import settings
from golden.errors import GoldenError

CHOICES = ("kvm", "tcg")


def cpu_has_virt_flags(cpuinfo: str) -> bool:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            if "vmx" in flags or "svm" in flags:
                return True
    return False


def kvm_device_opens(device: str = "/dev/kvm") -> bool:
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def probe_accelerator(cpuinfo_path: str = "/proc/cpuinfo", device: str = "/dev/kvm",
                      environ: dict | None = None) -> str:
    """Return 'kvm' or 'tcg'."""
    forced = settings.accelerator_override() if environ is None else environ.get("GOLDEN_ACCEL", "").strip().lower()
    if forced:
        if forced not in CHOICES:
            raise GoldenError(f"GOLDEN_ACCEL: expected one of {', '.join(CHOICES)}, got {forced!r}")
        return forced
    try:
        cpuinfo = Path(cpuinfo_path).read_text()
    except OSError:
        return "tcg"
    return "kvm" if cpu_has_virt_flags(cpuinfo) and kvm_device_opens(device) else "tcg"
