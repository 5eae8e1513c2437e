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
    kernel = {"generic": "linux-image-amd64", "cloud": "linux-image-cloud-amd64"}[manifest["kernel"]]
    assert "postgresql" in installed and kernel in installed
    assert {"shim-signed", "grub-efi-amd64-signed", "grub-pc-bin"} <= set(installed) and "grub-pc" not in installed


def test_only_what_the_spec_asked_for_is_marked_manual(host):
    # A pinned build names every locked package to apt; the rest is marked automatic,
    # as an unpinned install leaves it, so apt autoremove works as usual on the host.
    auto = set(host.check_output("apt-mark showauto").split())
    assert {"libpq5", "libllvm19", "postgresql-17"} <= auto
    assert not {"postgresql", "valkey-server", "caddy", "podman", "openssh-server"} & auto
    assert host.run("sudo apt-get -s autoremove").stdout.count("Remv ") == 0


def test_apt_gets_updates_and_security_fixes_from_the_archives_it_was_built_from(host, manifest):
    """The image lists the release, its -updates and its -security archive
    (deb822, with the archive key), as apt itself reads them: `apt upgrade`
    on a host works as on any Debian cloud image."""
    suite, mirror = manifest["base"]["suite"], manifest["base"]["mirror"].rstrip("/")
    assert host.run("ls /etc/apt/sources.list.d/").stdout.split() == ["debian.sources"]
    assert not host.file("/etc/apt/sources.list").exists
    sources = host.file("/etc/apt/sources.list.d/debian.sources").content_string
    keyring = "/usr/share/keyrings/debian-archive-keyring.pgp"
    assert sources.count(f"Signed-By: {keyring}\n") == 2
    assert host.file(keyring).is_file and host.file(keyring).size > 0
    uris = host.check_output("sudo apt-get update --print-uris")  # -qq would print nothing
    line = next(s for s in manifest["base"]["sources"] if f" {suite}-security " in s)
    security = next(word for word in line.split() if "://" in word)
    for release in (f"{mirror}/dists/{suite}/", f"{mirror}/dists/{suite}-updates/",
                    f"{security}/dists/{suite}-security/"):
        assert f"'{release}InRelease'" in uris
