"""testinfra against VMs booted from a built box (run by ./inv test).

Hosts come from --hosts (one per VM, all from the same box); the built
artifact's manifest from --golden-manifest tells what the image promises.
"""
import json

import pytest
import testinfra


def pytest_addoption(parser):
    parser.addoption("--golden-manifest", required=True, help="manifest.json of the artifact under test")


@pytest.fixture(scope="session")
def manifest(request):
    with open(request.config.getoption("golden_manifest")) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def all_hosts(request):
    """Every VM of the run, for properties that must differ between hosts."""
    specs = request.config.getoption("hosts").split(",")
    hosts = [testinfra.get_host(s, ssh_config=request.config.getoption("ssh_config")) for s in specs]
    if len(hosts) < 2:
        pytest.fail("host uniqueness needs two VMs from the same box")
    return hosts
