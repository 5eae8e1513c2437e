"""A fresh host (run by ./inv test beside the Vagrant suite): the image's
qcow2, the file `./inv publish` uploads, booted by the README's own recipe
(plain QEMU, UEFI with Secure Boot, e1000e NIC, NVMe disk, a NoCloud seed),
as a user would boot it on a new machine. The VM is booted once for
the session; if it cannot boot or let the seed's user in, every test errors.
"""
import json
import tempfile
from pathlib import Path

import pytest
import testinfra

from golden.verify.fresh_host import FreshHost
from golden.vm.runner import BuildLog


def pytest_addoption(parser):
    parser.addoption("--golden-qcow2", required=True, help="the image's qcow2")
    parser.addoption("--golden-manifest", required=True, help="manifest.json of the artifact under test")
    parser.addoption("--golden-log", required=True, help="log file for QEMU and the guest's serial console")


@pytest.fixture(scope="session")
def manifest(request):
    return json.loads(Path(request.config.getoption("golden_manifest")).read_text())


@pytest.fixture(scope="session")
def fresh_vm(request, manifest):
    log = BuildLog(Path(request.config.getoption("golden_log")), echo=open("/dev/null", "w"))
    with tempfile.TemporaryDirectory(prefix="golden-fresh-") as work:
        vm = FreshHost(Path(request.config.getoption("golden_qcow2")), Path(work), log)
        try:
            vm.boot()
            vm.wait_for_ssh()
            yield vm
        finally:
            vm.stop()


@pytest.fixture(scope="session")
def fresh(fresh_vm):
    """testinfra host: the seed's user, logged in with the seed's key."""
    ssh_config = fresh_vm.write_ssh_config(fresh_vm.work / "ssh-config")
    return testinfra.get_host("paramiko://fresh", ssh_config=str(ssh_config))
