import io
import json
import os

import pytest

from golden.build import space
from golden.build.space import GIB, free_bytes, require_free_space
from golden.errors import GoldenError
from golden.spec import load_spec


def test_free_space_is_read_from_the_filesystem(tmp_path):
    stat = os.statvfs(tmp_path)
    assert free_bytes(tmp_path / "not" / "made" / "yet") == pytest.approx(stat.f_bavail * stat.f_frsize, rel=0.01)


def test_a_disk_too_small_for_the_build_fails_in_one_line(tmp_path, monkeypatch):
    free = free_bytes(tmp_path)
    monkeypatch.setattr(space, "BUILD_NEEDS", {"artifacts": free * 2, "cache": 0})
    with pytest.raises(GoldenError) as err:
        require_free_space(tmp_path / "artifacts", cache=tmp_path / "cache")
    message = str(err.value)
    assert message.startswith(f"not enough disk space: {tmp_path / 'artifacts'} has ") and "\n" not in message
    assert message.endswith("(./inv clean removes old versions and unused cache entries)")
    assert f"1 image build need about {free * 2 / GIB:.0f} GiB" in message


def test_artifacts_and_cache_on_one_filesystem_add_up(tmp_path, monkeypatch):
    free = free_bytes(tmp_path)
    monkeypatch.setattr(space, "BUILD_NEEDS", {"artifacts": int(free * 0.3), "cache": int(free * 0.3)})
    require_free_space(tmp_path / "artifacts", cache=tmp_path / "cache")  # 60 % of what is free: room
    with pytest.raises(GoldenError, match="2 image builds need about"):
        require_free_space(tmp_path / "artifacts", builds=2, cache=tmp_path / "cache")  # 120 %


def _version(image_dir, version, build_key="old"):
    d = image_dir / version
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"name": image_dir.name, "build_key": build_key}))
    return d


def test_a_build_gives_back_old_versions_and_unused_cache_entries(tmp_path, write_spec, images_dir, monkeypatch):
    """./inv build of an image that is up to date: nothing is built, the
    versions past GOLDEN_KEEP_VERSIONS and the cache entries no spec uses go;
    the newest versions, `latest` and a build in progress stay."""
    from golden.build.archive import fetch_state
    from golden.build.lock import lock_path, write_lock
    from golden.build.pipeline import build_images, build_key, requested_packages
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GOLDEN_IMAGES", str(images_dir))
    monkeypatch.setenv("GOLDEN_KEEP_VERSIONS", "2")
    spec = load_spec(write_spec("web"))
    state = fetch_state(spec.base)
    requested = requested_packages(spec)["rootfs"]
    write_lock(lock_path(spec), {"rootfs": {p: state.candidate(p).version for p in requested}},
               {"rootfs": set(requested)})
    image_dir = tmp_path / "artifacts" / "web"
    oldest, older = _version(image_dir, "20261120.100000"), _version(image_dir, "20261121.100000")
    kept = _version(image_dir, "20261122.100000")
    newest = _version(image_dir, "20261123.100000", build_key(spec))
    (image_dir / "latest").symlink_to(newest.name)
    running = image_dir / ".20261123.110000.partial"
    running.mkdir()
    unused = tmp_path / "cache" / "rootfs" / "0123456789abcdef0123"
    unused.mkdir(parents=True)
    out = io.StringIO()
    # The test images extend infra, which is not in this images directory: no spec
    # list to prune by, so the cache stays whole.
    assert build_images([spec], echo=out, artifacts=tmp_path / "artifacts") == [newest]
    assert sorted(p.name for p in image_dir.iterdir()) == sorted([kept.name, newest.name, "latest", running.name])
    assert f"removed {oldest}" in out.getvalue() and f"removed {older}" in out.getvalue()
    assert "cache not pruned: tests/images/infra-apps.yaml: extends: no image spec 'infra'" in out.getvalue()
    assert unused.is_dir()
    monkeypatch.delenv("GOLDEN_IMAGES")  # the repository's images: they and the built spec are current
    build_images([spec], echo=io.StringIO(), artifacts=tmp_path / "artifacts")
    assert not unused.exists() and newest.is_dir() and kept.is_dir()


def test_a_bad_keep_setting_fails_before_any_work(tmp_path, write_spec, monkeypatch):
    from golden.build.pipeline import build_images
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    for bad in ("0", "-1", "two", "3.5", "\u0663"):
        monkeypatch.setenv("GOLDEN_KEEP_VERSIONS", bad)
        with pytest.raises(GoldenError, match=r"^GOLDEN_KEEP_VERSIONS: expected a whole number of at least 1"):
            build_images([load_spec(write_spec("web"))], artifacts=tmp_path / "artifacts")
    assert not (tmp_path / "artifacts").exists()


def test_no_room_fails_before_any_stage(tmp_path, write_spec, monkeypatch):
    from golden.build.pipeline import build_image
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(space, "BUILD_NEEDS", {"artifacts": 1 << 60, "cache": 0})
    with pytest.raises(GoldenError, match="^not enough disk space: "):
        build_image(load_spec(write_spec("web")), artifacts=tmp_path / "artifacts")
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "cache" / "rootfs").exists()
