import io
import json
import os
import subprocess
import time

import pytest

from golden.build import space
from golden.build.space import GIB, free_bytes, require_free_space
from golden.errors import GoldenError
from golden.spec import load_spec

from conftest import another_golden_process


def test_a_disk_too_small_for_the_build_fails_in_one_line(tmp_path, monkeypatch):
    free = free_bytes(tmp_path)
    monkeypatch.setattr(space, "BUILD_NEEDS", {"artifacts": free * 2, "cache": 0, "tmp": 0})
    with pytest.raises(GoldenError) as err:
        require_free_space(tmp_path / "artifacts", cache=tmp_path / "cache", tmp=tmp_path)
    message = str(err.value)
    assert message.startswith(f"not enough disk space: {tmp_path / 'artifacts'} has ") and "\n" not in message
    assert message.endswith("(./inv clean removes old versions and unused cache entries)")
    assert f"1 image build at once need about {free * 2 / GIB:.0f} GiB" in message


def test_places_on_one_filesystem_add_up_and_on_two_do_not(tmp_path, monkeypatch):
    free = free_bytes(tmp_path)
    monkeypatch.setattr(space, "BUILD_NEEDS", {"artifacts": int(free * 0.3), "cache": int(free * 0.3), "tmp": 0})
    require_free_space(tmp_path / "artifacts", cache=tmp_path / "cache", tmp=tmp_path)  # 60 % of what is free
    with pytest.raises(GoldenError, match="2 image builds at once need about"):
        require_free_space(tmp_path / "artifacts", builds=2, cache=tmp_path / "cache", tmp=tmp_path)  # 120 %
    other = tmp_path / "other"  # another filesystem, smaller than tmp_path's
    other.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "none", str(other)], check=True)
    try:
        assert os.stat(other).st_dev != os.stat(tmp_path).st_dev
        part = int(free_bytes(other) * 0.6)
        monkeypatch.setattr(space, "BUILD_NEEDS", {"artifacts": part, "cache": part, "tmp": 0})
        require_free_space(tmp_path / "artifacts", cache=other, tmp=tmp_path)  # 60 % of each
        with pytest.raises(GoldenError, match=f"^not enough disk space: {other / 'a'} has"):
            require_free_space(other / "a", cache=other / "c", tmp=tmp_path)  # both on one: 120 %
    finally:
        subprocess.run(["umount", str(other)], check=True)


def test_a_warm_cache_needs_room_for_the_artifacts_only(tmp_path, monkeypatch):
    monkeypatch.setattr(space, "BUILD_NEEDS", {"artifacts": 0, "cache": 1 << 60, "tmp": 1 << 60})
    require_free_space(tmp_path / "artifacts", warm=True, cache=tmp_path / "cache", tmp=tmp_path)
    with pytest.raises(GoldenError, match="not enough disk space"):
        require_free_space(tmp_path / "artifacts", cache=tmp_path / "cache", tmp=tmp_path)


def _version(image_dir, version, build_key="old"):
    d = image_dir / version
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"name": image_dir.name, "build_key": build_key}))
    return d


def _entry(cache, kind, key, megabytes=0, used_at=None):
    d = cache / kind / key
    d.mkdir(parents=True)
    (d / "data").write_bytes(os.urandom(megabytes << 20))
    if used_at:
        os.utime(d, (used_at, used_at))
    return d


@pytest.fixture
def locked_web(write_spec):
    """The spec `web` with a lock of what the archives serve now."""
    from golden.build.archive import fetch_state
    from golden.build.lock import lock_path, write_lock
    from golden.build.pipeline import requested_packages
    spec = load_spec(write_spec("web"))
    state = fetch_state(spec.base)
    requested = requested_packages(spec)["rootfs"]
    write_lock(lock_path(spec), {"rootfs": {p: state.candidate(p).version for p in requested}},
               {"rootfs": set(requested)})
    return spec


def test_a_build_gives_back_old_versions_and_unused_cache_entries(tmp_path, locked_web, monkeypatch):
    """./inv build of an image that is up to date, whose artifact is older than
    two later builds of other inputs (an edit reverted): nothing is built; the
    versions past GOLDEN_KEEP_VERSIONS go but not the artifact it returned; the
    cache entries no spec uses go, the built spec's own stay."""
    from golden.build.pipeline import build_images, build_key, stage_keys
    from golden.build.lock import lock_path, read_lock
    cache = tmp_path / "cache"
    monkeypatch.setenv("GOLDEN_CACHE", str(cache))
    monkeypatch.setenv("GOLDEN_KEEP_VERSIONS", "2")
    monkeypatch.setenv("GOLDEN_CACHE_MAX_GB", "0")
    spec = locked_web
    image_dir = tmp_path / "artifacts" / "web"
    oldest = _version(image_dir, "20261119.100000")
    reused = _version(image_dir, "20261120.100000", build_key(spec))
    older, newer = _version(image_dir, "20261121.100000"), _version(image_dir, "20261122.100000")
    (image_dir / "latest").symlink_to(newer.name)
    running = image_dir / ".20261123.110000.partial"  # another ./inv build of web, now
    running.mkdir()
    own = _entry(cache, "rootfs", stage_keys(spec, read_lock(lock_path(spec)))["rootfs"])
    unused = _entry(cache, "rootfs", "0123456789abcdef0123")
    out = io.StringIO()
    assert build_images([spec], echo=out, artifacts=tmp_path / "artifacts") == [reused]
    assert out.getvalue().startswith(f"web: up to date: {reused}")
    assert sorted(p.name for p in image_dir.iterdir()) == sorted([reused.name, older.name, newer.name, "latest",
                                                                  running.name])
    assert f"removed {oldest}" in out.getvalue()
    assert own.is_dir() and not unused.exists(), out.getvalue()


def test_no_pruning_while_another_process_uses_the_cache(tmp_path, locked_web, monkeypatch):
    from golden.build.pipeline import build_images, build_key
    cache = tmp_path / "cache"
    monkeypatch.setenv("GOLDEN_CACHE", str(cache))
    monkeypatch.setenv("GOLDEN_CACHE_MAX_GB", "0")
    _version(tmp_path / "artifacts" / "web", "20261120.100000", build_key(locked_web))
    unused = _entry(cache, "disk", "0123456789abcdef0123")
    with another_golden_process():  # a build elsewhere, between two stages
        out = io.StringIO()
        build_images([locked_web], echo=out, artifacts=tmp_path / "artifacts")
        assert f"cache not pruned: the stage cache {cache} is in use by another golden process" in out.getvalue()
        assert unused.is_dir()
    build_images([locked_web], echo=io.StringIO(), artifacts=tmp_path / "artifacts")
    assert not unused.exists()


def test_pruning_down_to_a_size_takes_the_least_recently_used_first(tmp_path, locked_web, monkeypatch):
    from golden.build.clean import prune_cache
    cache = tmp_path / "cache"
    monkeypatch.setenv("GOLDEN_CACHE", str(cache))
    now = time.time()
    oldest = _entry(cache, "rootfs", "a" * 20, megabytes=2, used_at=now - 3000)
    old = _entry(cache, "disk", "b" * 20, megabytes=1, used_at=now - 2000)
    recent = _entry(cache, "container", "c" * 20, megabytes=1, used_at=now - 1000)
    assert prune_cache([locked_web], max_bytes=(4 << 20) + (64 << 10), say=lambda *_: None) == []  # under the size
    assert prune_cache([locked_web], max_bytes=(3 << 20), say=lambda *_: None) == [oldest]
    assert old.is_dir() and recent.is_dir()
    assert prune_cache([locked_web], max_bytes=0, say=lambda *_: None) == [old, recent]


def test_bad_disk_settings_fail_before_any_work(tmp_path, write_spec, monkeypatch):
    from golden.build.pipeline import build_images
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    for name, bad in [("GOLDEN_KEEP_VERSIONS", "0"), ("GOLDEN_KEEP_VERSIONS", "-1"), ("GOLDEN_KEEP_VERSIONS", "two"),
                      ("GOLDEN_KEEP_VERSIONS", "3.5"), ("GOLDEN_KEEP_VERSIONS", "\u0663"),
                      ("GOLDEN_CACHE_MAX_GB", "-1"), ("GOLDEN_CACHE_MAX_GB", "10G")]:
        with monkeypatch.context() as m:
            m.setenv(name, bad)
            with pytest.raises(GoldenError, match=f"^{name}: expected a whole number of at least"):
                build_images([load_spec(write_spec("web"))], artifacts=tmp_path / "artifacts")
    assert not (tmp_path / "artifacts").exists()


def test_no_room_fails_before_any_stage(tmp_path, write_spec, monkeypatch):
    from golden.build.pipeline import build_image
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(space, "BUILD_NEEDS", {"artifacts": 1 << 60, "cache": 0, "tmp": 0})
    with pytest.raises(GoldenError, match="^not enough disk space: "):
        build_image(load_spec(write_spec("web")), artifacts=tmp_path / "artifacts")
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "cache" / "rootfs").exists()


def test_force_counts_the_cache_even_when_it_holds_every_stage(tmp_path, locked_web, monkeypatch):
    """--force rebuilds every stage: the cache and $TMPDIR need room again."""
    from golden.build.lock import lock_path, read_lock
    from golden.build.pipeline import _cache_holds, build_image, stage_keys
    cache = tmp_path / "cache"
    monkeypatch.setenv("GOLDEN_CACHE", str(cache))
    keys = stage_keys(locked_web, read_lock(lock_path(locked_web)))
    for kind, key in [("rootfs", keys["rootfs"]), ("disk", keys["disk"])] + \
            [("container", k) for k in keys["container"].values()]:
        _entry(cache, kind, key)
    assert _cache_holds(locked_web)
    monkeypatch.setattr(space, "BUILD_NEEDS", {"artifacts": 0, "cache": 1 << 60, "tmp": 0})
    with pytest.raises(GoldenError, match="^not enough disk space: "):
        build_image(locked_web, artifacts=tmp_path / "artifacts", force=True)
    assert not (tmp_path / "artifacts").exists()


def test_a_problem_giving_space_back_never_fails_the_build(tmp_path, locked_web, monkeypatch):
    from golden.build.pipeline import build_images, build_key

    def broken(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/cache/rootfs/x")
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    built = _version(tmp_path / "artifacts" / "web", "20261120.100000", build_key(locked_web))
    monkeypatch.setattr(space, "prune_cache", broken)
    monkeypatch.setattr(space, "clean_image", broken)
    out = io.StringIO()
    assert build_images([locked_web], echo=out, artifacts=tmp_path / "artifacts") == [built]
    assert "old versions not removed: [Errno 13] Permission denied: '/cache/rootfs/x'" in out.getvalue()
    assert "cache not pruned: [Errno 13] Permission denied: '/cache/rootfs/x'" in out.getvalue()


def test_an_alias_frees_its_bytes_only_with_its_last_link(tmp_path, locked_web, monkeypatch):
    """A refreshed build files its rootfs under the pinned key too (hard links):
    removing one of the two frees nothing, so pruning down to a size takes both."""
    from golden.build.cache import alias
    from golden.build.clean import prune_cache
    cache = tmp_path / "cache"
    monkeypatch.setenv("GOLDEN_CACHE", str(cache))
    now = time.time()
    unpinned = _entry(cache, "rootfs", "a" * 20, megabytes=2, used_at=now - 3000)
    alias("rootfs", "a" * 20, "b" * 20)
    pinned = cache / "rootfs" / ("b" * 20)
    os.utime(pinned, (now - 2000, now - 2000))
    newer = _entry(cache, "disk", "c" * 20, megabytes=1, used_at=now - 1000)
    assert prune_cache([locked_web], max_bytes=(1 << 20) + (64 << 10), say=lambda *_: None) == [unpinned, pinned]
    assert newer.is_dir()


def test_leftovers_of_ended_stages_go_whatever_the_size(tmp_path, locked_web, monkeypatch):
    from golden.build.clean import prune_cache
    cache = tmp_path / "cache"
    monkeypatch.setenv("GOLDEN_CACHE", str(cache))
    leftover = _entry(cache, "disk", f"{'d' * 20}.tmp-{2 ** 23 + 1}")  # its process has ended
    entry = _entry(cache, "disk", "e" * 20)
    assert prune_cache([locked_web], max_bytes=1 << 40, say=lambda *_: None) == [leftover]
    assert entry.is_dir()


def test_builds_side_by_side_are_checked_once_for_all_of_them(tmp_path, write_spec, monkeypatch):
    """--jobs 2 with two images to build: room for two at once, before either
    starts (each alone would fit)."""
    from golden.build.pipeline import build_images
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    free = free_bytes(tmp_path)
    monkeypatch.setattr(space, "BUILD_NEEDS", {"artifacts": int(free * 0.6), "cache": 0, "tmp": 0})
    specs = [load_spec(write_spec(name)) for name in ("one", "two")]
    with pytest.raises(GoldenError, match="^not enough disk space: .* 2 image builds at once need about"):
        build_images(specs, jobs=2, artifacts=tmp_path / "artifacts")
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "cache" / "rootfs").exists()
