import os

import pytest

from golden.vm.accel import cpu_has_virt_flags, probe_accelerator
from golden.errors import GoldenError

WITH_VMX = "processor\t: 0\nflags\t\t: fpu vme de pse vmx sse2\n"
WITHOUT = "processor\t: 0\nflags\t\t: fpu vme de pse sse2 hypervisor\n"


def test_flags_parsing():
    assert cpu_has_virt_flags(WITH_VMX)
    assert cpu_has_virt_flags(WITHOUT.replace("sse2", "svm"))
    assert not cpu_has_virt_flags(WITHOUT)
    assert not cpu_has_virt_flags("model name\t: vmx-like cpu\nflags\t: fpu\n")


@pytest.fixture
def cpuinfo(tmp_path):
    def make(text):
        p = tmp_path / "cpuinfo"
        p.write_text(text)
        return str(p)
    return make


@pytest.fixture
def openable_device(tmp_path):
    dev = tmp_path / "kvm"
    dev.write_text("")
    return str(dev)


def test_kvm_needs_flags_and_device(cpuinfo, openable_device, tmp_path):
    assert probe_accelerator(cpuinfo(WITH_VMX), openable_device, environ={}) == "kvm"
    # The device alone is not enough: this host kind has /dev/kvm but no vmx/svm.
    assert probe_accelerator(cpuinfo(WITHOUT), openable_device, environ={}) == "tcg"
    assert probe_accelerator(cpuinfo(WITH_VMX), str(tmp_path / "missing"), environ={}) == "tcg"


def test_device_that_does_not_open_means_tcg(cpuinfo, tmp_path):
    dev = tmp_path / "kvm"
    dev.mkdir()  # opening a directory read-write fails
    assert probe_accelerator(cpuinfo(WITH_VMX), str(dev), environ={}) == "tcg"


def test_forced_by_environment(cpuinfo, openable_device):
    assert probe_accelerator(cpuinfo(WITHOUT), openable_device, environ={"GOLDEN_ACCEL": "kvm"}) == "kvm"
    assert probe_accelerator(cpuinfo(WITH_VMX), openable_device, environ={"GOLDEN_ACCEL": "TCG"}) == "tcg"
    with pytest.raises(GoldenError, match="GOLDEN_ACCEL: expected one of kvm, tcg, got 'hax'"):
        probe_accelerator(cpuinfo(WITH_VMX), openable_device, environ={"GOLDEN_ACCEL": "hax"})


def test_this_host():
    """The real probe agrees with the host's real CPU flags."""
    flags = cpu_has_virt_flags(open("/proc/cpuinfo").read())
    env = {k: v for k, v in os.environ.items() if k != "GOLDEN_ACCEL"}
    got = probe_accelerator(environ=env)
    assert got in ("kvm", "tcg")
    if not flags:
        assert got == "tcg"
