import datetime as dt

import pytest

from golden.build.mmdebstrap import mounts_under
from golden.build.pipeline import build_image, find_artifact, new_version
from golden.errors import GoldenError
from golden.spec import load_spec


def test_version_is_sortable_build_time():
    v = new_version(dt.datetime(2026, 11, 22, 5, 7, 9, tzinfo=dt.timezone.utc))
    assert v == "20261122.050709"
    assert new_version(dt.datetime(2026, 11, 22, 12, 0, 0, tzinfo=dt.timezone.utc)) > v


# Two packages that conflict: the real mmdebstrap run fails in the rootfs stage.
CONFLICT = "packages: [sysvinit-core]\n"  # the base set has systemd-sysv


def test_failed_build_leaves_nothing_that_looks_complete(tmp_path, write_spec, monkeypatch):
    """A real mmdebstrap run that apt cannot satisfy fails in the rootfs
    stage: no version directory, no `latest`, no cache entry; the log stays."""
    path = write_spec("broken", "name: broken\nhostname: broken\nbase: {suite: trixie}\n" + CONFLICT)
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GOLDEN_ACCEL", "tcg")
    artifacts = tmp_path / "artifacts"
    with pytest.raises(GoldenError, match="mmdebstrap failed"):
        build_image(load_spec(path), artifacts=artifacts)
    entries = list((artifacts / "broken").iterdir())
    assert len(entries) == 1 and entries[0].name.startswith(".") and entries[0].name.endswith(".partial")
    assert [p.name for p in entries[0].iterdir()] == ["build.log"]
    assert "==> rootfs" in (entries[0] / "build.log").read_text()
    assert find_artifact(load_spec(path), artifacts) is None
    cache_rootfs = tmp_path / "cache" / "rootfs"
    assert not cache_rootfs.exists() or list(cache_rootfs.iterdir()) == []


def test_unchanged_spec_reuses_its_artifact_and_starts_nothing(tmp_path, write_spec, monkeypatch):
    """A second build of an unchanged spec: `up to date`, no stage, no VM, no new
    version. Any change to what the artifact was built from (here the spec)
    makes it stale."""
    import io
    import json
    from golden.build.archive import fetch_state
    from golden.build.pipeline import build_key, requested_packages
    from golden.build.freshness import plan_build
    from golden.build.lock import lock_path, write_lock
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    path = write_spec("web")
    spec = load_spec(path)
    # A lock of what the archives serve now: the build installs exactly it.
    state = fetch_state(spec.base)
    requested = requested_packages(spec)["rootfs"]
    write_lock(lock_path(spec), {"rootfs": {p: state.candidate(p).version for p in requested}},
               {"rootfs": set(requested)})
    built = tmp_path / "artifacts" / "web" / "20261122.100000"
    built.mkdir(parents=True)
    (built / "manifest.json").write_text(json.dumps({"name": "web", "build_key": build_key(spec)}))
    (built.parent / "latest").symlink_to(built.name)
    out = io.StringIO()
    assert build_image(spec, artifacts=tmp_path / "artifacts", echo=out) == built
    assert out.getvalue().startswith("web: up to date: ")
    assert sorted(p.name for p in built.parent.iterdir()) == ["20261122.100000", "latest"]
    assert not any((tmp_path / "cache" / kind).exists() for kind in ("rootfs", "disk", "container"))  # no stage ran

    # The archives moved past a locked version: the artifact is not reused.
    locked = {p: state.candidate(p).version for p in requested}
    write_lock(lock_path(spec), {"rootfs": dict(locked, **{"base-files": "13.0"})}, {"rootfs": set(requested)})
    assert plan_build(spec, requested_packages(spec)).refresh
    write_lock(lock_path(spec), {"rootfs": locked}, {"rootfs": set(requested)})

    path.write_text(path.read_text().replace("size: 2G", "size: 3G"))
    assert find_artifact(load_spec(path), tmp_path / "artifacts") is None


def test_parallel_builds_report_every_failure_and_keep_each_log(tmp_path, write_spec, monkeypatch):
    """./inv build --all -j 2 with two specs whose (real) mmdebstrap fails:
    both builds ran, both failures are named, each kept its own log."""
    import io
    from golden.build.pipeline import build_images
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GOLDEN_ACCEL", "tcg")
    specs = [load_spec(write_spec(name, f"name: {name}\nhostname: {name}\nbase: {{suite: trixie}}\n{CONFLICT}"
                                  f"description: build {name}\n"))
             for name in ("one", "two")]
    out = io.StringIO()
    with pytest.raises(GoldenError, match=r"^build failed: one, two: mmdebstrap failed .*; mmdebstrap failed"):
        build_images(specs, jobs=2, echo=out, artifacts=tmp_path / "artifacts")
    assert "one: ==> rootfs" in out.getvalue() and "two: ==> rootfs" in out.getvalue()  # lines name their image
    for name in ("one", "two"):
        (partial,) = (tmp_path / "artifacts" / name).iterdir()
        assert partial.name.endswith(".partial") and f"building {name} " in (partial / "build.log").read_text()
        assert "sysvinit-core" in (partial / "build.log").read_text()


def test_unreachable_archives_and_no_lock_fail_in_one_line_before_anything(tmp_path, write_spec, monkeypatch):
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    path = write_spec("lost", f"name: lost\nhostname: lost\nbase: {{suite: trixie, mirror: 'file://{tmp_path}/none'}}\n")
    with pytest.raises(GoldenError) as err:
        build_image(load_spec(path), artifacts=tmp_path / "artifacts")
    assert str(err.value).startswith(f"lost.lock: the archives are unreachable (file://{tmp_path}/none/dists/trixie/")
    assert str(err.value).endswith("and building needs a lock file; there is none yet") and "\n" not in str(err.value)
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "cache" / "rootfs").exists()


def test_an_interrupt_stops_the_running_builds_and_starts_no_queued_one(tmp_path, write_spec):
    """./inv build --all -j 2 with four images, one and three sharing their
    rootfs: one of the two runs mmdebstrap, the other waits for it and gives
    its slot up, so a third image (two or zulu, whichever takes the slot)
    runs its own beside it; the fourth waits for a slot. Stopped once both
    chroots have a mount: nothing is left mounted (also when the interrupt
    lands inside mmdebstrap's own setup_mounts, which then unmounts nothing),
    the waiting build runs no mmdebstrap of its own, the fourth never starts."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from conftest import REPO
    for name, package in (("one", "postgresql"), ("three", "postgresql"), ("two", "valkey-server"),
                          ("zulu", "caddy")):
        write_spec(name, f"name: {name}\nhostname: {name}\nbase: {{suite: trixie}}\npackages: [{package}]\n")
    artifacts = tmp_path / "artifacts"
    code = ("import sys; from golden.spec import select_specs; from golden.build.pipeline import build_images\n"
            "build_images(select_specs(None), jobs=2, echo=sys.stderr)\n")
    env = dict(os.environ, GOLDEN_IMAGES=str(tmp_path / "images"),
               GOLDEN_ARTIFACTS=str(artifacts), GOLDEN_CACHE=str(tmp_path / "cache"), GOLDEN_ACCEL="tcg",
               PYTHONPATH=str(REPO), TMPDIR=str(tmp_path))  # its mmdebstrap work directories: ours alone

    def mmdebstraps(*names: str) -> int:
        return sum(p.read_text().count("\n$ mmdebstrap ") for n in names
                   for p in (artifacts / n).glob(".*.partial/build.log"))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while mmdebstraps("one", "three", "two", "zulu") < 2 or len(
                {m.parts[len(tmp_path.parts)] for m in mounts_under(tmp_path)}) < 2:  # both chroots at work
            assert time.monotonic() < deadline and proc.poll() is None, "two mmdebstraps did not start"
            time.sleep(0.2)
        assert mmdebstraps("one", "three") == 1  # the other waits, its slot given to two or zulu
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) != 0
        assert [(artifacts / n).exists() for n in ("two", "zulu")].count(True) == 1  # the fourth never started
        assert mmdebstraps("one", "three") == 1  # the waiting one, once interrupted, ran none
    finally:
        while proc.poll() is None:  # a build left running: interrupted until it ends (mmdebstrap unmounts)
            proc.send_signal(signal.SIGINT)
            time.sleep(5)
    assert mounts_under(tmp_path) == []
