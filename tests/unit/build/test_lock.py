"""Lock files and the package cache, with real mmdebstrap runs of a tiny
container image (minbase, no extra packages)."""
import os
import subprocess
import sys

import pytest

from golden.build.stages.containers import build_container_image, read_packages
from golden.build.lock import (LockError, check_installed, check_requested, debs_dir, lock_path, read_lock, read_requested,
                         write_lock)
from golden.vm.runner import BuildLog
from golden.spec import ContainerImage, load_spec

from conftest import REPO, offline_python, quiet_log

TINY = ContainerImage(name="tiny")


def test_lock_round_trip_and_refuses_garbage(tmp_path):
    path = tmp_path / "web.lock"
    sections = {"rootfs": {"base-files": "13.8", "bash": "5.2.37-2+b5"}, "container probe": {"socat": "1.8.0.3-1"}}
    write_lock(path, sections, {"rootfs": {"bash"}, "container probe": {"socat"}})
    assert read_lock(path) == sections
    assert read_requested(path) == {"rootfs": {"bash"}, "container probe": {"socat"}}
    assert "\nbash 5.2.37-2+b5 requested\n" in path.read_text()
    assert path.read_text().startswith("# golden lock file")
    assert read_lock(tmp_path / "missing.lock") is None
    for garbage in ("[rootfs]\nbase-files\n", "[rootfs]\nbase-files 13.8 wanted\n"):
        path.write_text(garbage)
        with pytest.raises(LockError, match="web.lock: line 2: expected"):
            read_lock(path)


def test_a_spec_that_changed_since_the_lock_is_named_before_anything_runs(tmp_path):
    path = tmp_path / "web.lock"
    write_lock(path, {"rootfs": {"bash": "5.2", "curl": "8.14", "libcurl4t64": "8.14"}}, {"rootfs": {"bash", "curl"}})
    check_requested(path, "rootfs", ["bash", "curl"])
    check_requested(path, "rootfs", ["bash", "curl", "libcurl4t64"])  # a locked dependency may become requested
    with pytest.raises(LockError) as err:
        check_requested(path, "rootfs", ["bash", "socat"])
    assert str(err.value) == ("web.lock [rootfs]: socat is in the spec, but not in the lock; curl was in the spec when "
                              "the lock was made, but is no longer. Run ./inv lock --update to resolve the spec's "
                              "packages again")


def test_installed_must_be_exactly_the_lock():
    pins = {"base-files": "13.8", "bash": "5.2.37-2"}
    check_installed({"base-files": "13.8", "bash": "5.2.37-2"}, pins, "web.lock [rootfs]")
    check_installed({"anything": "1"}, None, "web.lock [rootfs]")  # no lock yet: anything goes
    with pytest.raises(LockError) as err:
        check_installed({"base-files": "13.9", "curl": "8.14"}, pins, "web.lock [rootfs]")
    message = str(err.value)
    assert message.startswith("web.lock [rootfs]: base-files 13.8 is locked, but 13.9 was installed")
    assert "bash 5.2.37-2 is locked, but was not installed" in message
    assert "curl 8.14 was installed, but the lock does not list it" in message
    assert message.endswith("Run ./inv lock --update to take the mirror's current versions")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A first, unpinned build of the tiny image, with its own package cache."""
    tmp = tmp_path_factory.mktemp("lock")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDEN_CACHE", str(tmp / "cache"))
        (tmp / "images").mkdir()
        (tmp / "images" / "web.yaml").write_text("name: web\nhostname: web\nbase: {suite: trixie}\n")
        spec = load_spec(tmp / "images" / "web.yaml")
        (tmp / "first").mkdir()
        build_container_image(spec, TINY, tmp / "first", quiet_log(tmp / "build.log"))
        yield spec, read_packages(tmp / "first", TINY), tmp


def test_pinned_rebuild_installs_the_same_versions_from_the_package_cache(built, tmp_path, monkeypatch):
    spec, first, tmp = built
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp / "cache"))
    assert "base-files" in first and "dpkg" in first
    # The package cache also gets .debs whose own control says Priority: required while the
    # archive says optional: a minbase run from the cache would install them too.
    extra = ContainerImage(name="extra", packages=["libtext-wrapi18n-perl"])
    (tmp_path / "extra").mkdir()
    build_container_image(spec, extra, tmp_path / "extra", quiet_log(tmp_path / "extra.log"))
    control = subprocess.run(["dpkg-deb", "--field", *debs_dir("trixie").glob("libtext-wrapi18n-perl_*.deb"),
                              "Priority"], capture_output=True, text=True, check=True).stdout
    assert control.strip() == "required" and "libtext-wrapi18n-perl" not in first
    debs = sorted(p.name for p in debs_dir("trixie").glob("*.deb"))
    assert any(name.startswith("base-files_") for name in debs)  # kept for the next run

    write_lock(lock_path(spec), {"container tiny": first})
    (tmp_path / "second").mkdir()
    # The pinned rebuild runs with no network at all: everything comes from the package cache.
    code = ("import sys; from pathlib import Path; from golden.build.stages.containers import build_container_image; "
            "from golden.build.lock import lock_path, read_lock; from golden.vm.runner import BuildLog; "
            "from golden.spec import ContainerImage, load_spec; "
            f"spec = load_spec(Path({spec.path!r})); "
            f"build_container_image(spec, ContainerImage(name='tiny'), Path({str(tmp_path / 'second')!r}), "
            f"BuildLog(Path({str(tmp_path / 'build.log')!r})), read_lock(lock_path(spec))['container tiny'])")
    proc = offline_python(code, tmp / "cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr + (tmp_path / "build.log").read_text()[-3000:]
    assert "installing offline" in proc.stdout
    assert read_packages(tmp_path / "second", TINY) == first
    assert sorted(p.name for p in debs_dir("trixie").glob("*.deb")) == debs  # nothing new downloaded


def test_a_version_that_no_longer_exists_is_named(built, tmp_path, monkeypatch):
    spec, first, tmp = built
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp / "cache"))
    pins = dict(first, **{"base-files": "1.0-gone"})
    (tmp_path / "second").mkdir()
    log = quiet_log(tmp_path / "build.log")
    with pytest.raises(LockError, match=r"web.lock \[container tiny\]: base-files 1.0-gone is locked, but "
                                        r"\S+ was installed \(1.0-gone is in neither the mirror nor the package cache\)"):
        build_container_image(spec, TINY, tmp_path / "second", log, pins)


def test_first_build_writes_the_lock_and_files_its_entries_under_pinned_keys(write_spec, tmp_path, monkeypatch):
    from golden.build.archive import ArchiveState
    from golden.build.freshness import Plan
    from golden.build.pipeline import BuildContext, refresh_lock, stage_keys
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    spec = load_spec(write_spec("web", "name: web\nhostname: web\nbase: {suite: trixie}\n"
                                "container_images: [{name: tiny}]\n"))
    unpinned = stage_keys(spec, archive_digest="digest-of-the-archives")
    for kind, key in (("rootfs", unpinned["rootfs"]), ("disk", unpinned["disk"]),
                      ("container", unpinned["container"]["tiny"])):
        entry = tmp_path / "cache" / kind / key
        entry.mkdir(parents=True)
        (entry / "data").write_text(kind)
    sections = {"rootfs": {"base-files": "13.8"}, "container tiny": {"dash": "0.5.12-12"}}
    plan = Plan(None, ArchiveState([], [], "digest-of-the-archives"), "no lock yet")
    ctx = BuildContext(spec, plan, quiet_log(tmp_path / "build.log")).compute_keys()
    refresh_lock(ctx, sections)
    assert read_lock(lock_path(spec)) == sections
    pinned = stage_keys(spec, sections)
    assert pinned["rootfs"] != unpinned["rootfs"] and pinned["disk"] != unpinned["disk"]
    for kind, old, new in (("rootfs", unpinned["rootfs"], pinned["rootfs"]), ("disk", unpinned["disk"], pinned["disk"]),
                           ("container", unpinned["container"]["tiny"], pinned["container"]["tiny"])):
        a, b = tmp_path / "cache" / kind / old / "data", tmp_path / "cache" / kind / new / "data"
        assert b.read_text() == kind and a.stat().st_ino == b.stat().st_ino  # hard links, no copy


def test_the_lock_holds_where_apt_alone_would_pick_another_provider(tmp_path, monkeypatch):
    """golang-github-containers-common needs the virtual container-network-stack.
    Asked for alone, apt takes containernetworking-plugins (and iptables); a
    lock made where netavark was taken must still give netavark, online and
    from the package cache, with netavark marked automatically installed."""
    import tarfile
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "net.yaml").write_text("name: net\nhostname: net\nbase: {suite: trixie}\n")
    spec = load_spec(tmp_path / "images" / "net.yaml")
    image = ContainerImage(name="net", packages=["golang-github-containers-common"])
    log = quiet_log(tmp_path / "build.log")
    # The lock of a run where netavark was asked for too, as if apt had chosen it.
    with_netavark = ContainerImage(name="net", packages=["golang-github-containers-common", "netavark"])
    (tmp_path / "resolved").mkdir()
    build_container_image(spec, with_netavark, tmp_path / "resolved", log)
    locked = read_packages(tmp_path / "resolved", with_netavark)
    assert "netavark" in locked and "containernetworking-plugins" not in locked
    write_lock(lock_path(spec), {"container net": locked}, {"container net": {"golang-github-containers-common"}})

    def auto_installed(out) -> set[str]:
        with tarfile.open(out / "net.tar") as tar:
            states = tar.extractfile("./var/lib/apt/extended_states").read().decode()
        return {block.split("\n")[0].split(": ")[1] for block in states.split("\n\n")
                if "Auto-Installed: 1" in block}

    (tmp_path / "online").mkdir()
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "empty-cache"))  # so from the mirror
    build_container_image(spec, image, tmp_path / "online", log, locked)  # raises unless exactly the lock
    assert "installing offline" not in (tmp_path / "build.log").read_text()
    assert read_packages(tmp_path / "online", image) == locked
    assert "netavark" in auto_installed(tmp_path / "online")
    assert "golang-github-containers-common" not in auto_installed(tmp_path / "online")

    (tmp_path / "offline").mkdir()
    code = ("from pathlib import Path; from golden.build.stages.containers import build_container_image; "
            "from golden.build.lock import lock_path, read_lock; from golden.vm.runner import BuildLog; "
            "from golden.spec import ContainerImage, load_spec; "
            f"spec = load_spec(Path({str(spec.path)!r})); "
            "build_container_image(spec, ContainerImage(name='net', packages=['golang-github-containers-common']), "
            f"Path({str(tmp_path / 'offline')!r}), BuildLog(Path({str(tmp_path / 'offline.log')!r})), "
            "read_lock(lock_path(spec))['container net'])")
    proc = offline_python(code, tmp_path / "cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr + (tmp_path / "offline.log").read_text()[-3000:]
    assert "installing offline" in proc.stdout
    assert read_packages(tmp_path / "offline", image) == locked
