"""The image holds exactly the packages its manifest lists. The build
checks those against the lock (lock.check_installed), so two builds from
the same lock list, and hold, the same packages."""


def _installed(host) -> dict[str, str]:
    out = host.check_output("dpkg-query -W -f='${db:Status-Abbrev}\\t${Package}\\t${Version}\\n'")
    rows = [line.split("\t") for line in out.splitlines()]
    return {package: version for status, package, version in rows if status.startswith("ii")}


def test_installed_packages_are_the_manifests(host, manifest):
    installed = _installed(host)
    assert installed == manifest["packages"]
    assert "postgresql" in installed and "linux-image-cloud-amd64" in installed


def test_only_what_the_spec_asked_for_is_marked_manual(host):
    # A pinned build names every locked package to apt; the rest is marked automatic,
    # as an unpinned install leaves it, so apt autoremove works as usual on the host.
    auto = set(host.check_output("apt-mark showauto").split())
    assert {"libpq5", "libllvm19", "postgresql-17"} <= auto
    assert not {"postgresql", "valkey-server", "caddy", "podman", "openssh-server"} & auto
    assert host.run("sudo apt-get -s autoremove").stdout.count("Remv ") == 0
