import dataclasses
import os
import shutil

from golden.build.cache import hash_files
from golden.build.clean import clean, clean_image


def _version(image_dir, version):
    d = image_dir / version
    d.mkdir(parents=True)
    (d / "manifest.json").write_text("{}\n")
    return d


def test_clean_removes_failed_builds_and_old_versions(tmp_path):
    image_dir = tmp_path / "infra"
    old, mid, new = (_version(image_dir, v) for v in ("20261120.100000", "20261121.100000", "20261122.100000"))
    failed = image_dir / ".20261122.110000.partial"
    failed.mkdir()
    (failed / "build.log").write_text("failed\n")
    os.symlink(new.name, image_dir / "latest")
    removed = clean_image(image_dir, keep=2, say=lambda *_: None)
    assert sorted(p.name for p in removed) == [".20261122.110000.partial", "20261120.100000"]
    assert sorted(p.name for p in image_dir.iterdir()) == ["20261121.100000", "20261122.100000", "latest"]
    clean_image(image_dir, keep=1, say=lambda *_: None)
    assert (image_dir / "latest").resolve() == new and not mid.exists() and not old.exists()


def test_clean_after_a_build_keeps_builds_in_progress(tmp_path):
    image_dir = tmp_path / "infra"
    old, new = (_version(image_dir, v) for v in ("20261120.100000", "20261122.100000"))
    running = image_dir / ".20261122.110000.partial"  # another ./inv build of the same image
    running.mkdir()
    os.symlink(new.name, image_dir / "latest")
    assert clean_image(image_dir, keep=1, partials=False, say=lambda *_: None) == [old]
    assert running.is_dir() and new.is_dir()


def test_clean_never_removes_what_latest_points_to(tmp_path):
    image_dir = tmp_path / "infra"
    older = _version(image_dir, "20261120.100000")
    _version(image_dir, "20261122.100000")
    os.symlink(older.name, image_dir / "latest")  # e.g. a rebuilt version was rolled back
    clean_image(image_dir, keep=1, say=lambda *_: None)
    assert older.exists()


def test_clean_the_whole_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "rootfs" / "abc").mkdir(parents=True)
    (tmp_path / "cache" / "debs").mkdir()
    clean([], 1, [], whole_cache=True, say=lambda *_: None)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [".locks"]


def test_clean_waits_for_no_other_golden_process(tmp_path, monkeypatch):
    """./inv clean while a build runs (it holds the cache): nothing is removed,
    not even the build's .partial directory."""
    import pytest
    from golden.errors import GoldenError
    from conftest import another_golden_process
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    image_dir = tmp_path / "infra"
    old = _version(image_dir, "20261120.100000")
    _version(image_dir, "20261122.100000")
    running = image_dir / ".20261123.100000.partial"
    running.mkdir()
    (tmp_path / "cache" / "rootfs" / "0ld").mkdir(parents=True)
    with another_golden_process():
        with pytest.raises(GoldenError, match="is in use by another golden process$"):
            clean([image_dir], 1, [], say=lambda *_: None)
        assert old.is_dir() and running.is_dir() and (tmp_path / "cache" / "rootfs" / "0ld").is_dir()
    clean([image_dir], 1, [], say=lambda *_: None)
    assert not old.exists() and not running.exists() and not (tmp_path / "cache" / "rootfs" / "0ld").exists()


def test_clean_keeps_the_newest_tested_version_and_protected_ones(tmp_path):
    """The lab's box is the newest version that passed ./inv test; a build
    that reused an older version (a reverted edit) keeps it too."""
    image_dir = tmp_path / "infra"
    tested = _version(image_dir, "20261120.100000")
    (tested / "manifest.json").write_text('{"test": {"passed": true}}\n')
    reused = _version(image_dir, "20261121.100000")
    failed = _version(image_dir, "20261122.100000")
    (failed / "manifest.json").write_text('{"test": {"passed": false}}\n')
    untested = _version(image_dir, "20261123.100000")
    os.symlink(untested.name, image_dir / "latest")
    assert clean_image(image_dir, keep=1, protect=[reused], say=lambda *_: None) == [failed]
    assert tested.is_dir() and reused.is_dir() and untested.is_dir()


def test_stage_keys_follow_file_places(tmp_path, monkeypatch):
    import golden.build.cache
    monkeypatch.setattr(golden.build.cache, "REPO", tmp_path)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.conf").write_text("same content")
    assert hash_files([tmp_path / "a" / "x.conf"]) != hash_files([tmp_path / "b" / "x.conf"])
    assert hash_files([tmp_path / "a" / "x.conf"]) == hash_files([tmp_path / "a" / "x.conf"])
    (tmp_path / "a" / "x.conf").write_text("changed")
    assert hash_files([tmp_path / "a" / "x.conf"]) != hash_files([tmp_path / "b" / "x.conf"])


def test_prune_keeps_only_entries_of_current_specs(tmp_path, monkeypatch):
    from golden.build.pipeline import stage_keys
    from golden.build.clean import prune_cache
    from golden.build.lock import lock_path, read_lock
    from golden.spec import load_spec
    from conftest import REPO
    cache = tmp_path / "cache"
    monkeypatch.setenv("GOLDEN_CACHE", str(cache))
    # The test-only images (the products plus a container image), each with infra's lock beside it.
    infra_lock = lock_path(load_spec(REPO / "images" / "infra.yaml"))
    specs = []
    for name in ("infra-apps", "infra-open-apps"):
        spec = load_spec(REPO / "tests" / "images" / f"{name}.yaml")
        specs.append(dataclasses.replace(spec, path=str(tmp_path / f"{name}.yaml")))
        shutil.copy(infra_lock, tmp_path / f"{name}.lock")
    # The entries a build with the lock uses; with the same lock both images share every stage.
    keys = stage_keys(specs[0], read_lock(infra_lock))
    assert keys == stage_keys(specs[1], read_lock(infra_lock))
    assert keys["rootfs"] != stage_keys(specs[0], archive_digest="d")["rootfs"]  # unpinned entries are not current
    used = [cache / "rootfs" / keys["rootfs"], cache / "disk" / keys["disk"],
            cache / "container" / keys["container"]["probe"]]
    gone_pid = 2 ** 23 + 1  # above any pid_max: no such process
    stale = [cache / "rootfs" / "0ld", cache / "disk" / f"{keys['disk']}.tmp-{gone_pid}",
             cache / "container" / f"{keys['container']['probe']}.old-{gone_pid}"]
    running = cache / "rootfs" / f"{keys['rootfs']}.tmp-{os.getpid()}"  # another build's work, this moment
    for d in used + stale + [running]:
        d.mkdir(parents=True)
    (cache / "debs" / "trixie").mkdir(parents=True)  # the package cache is not a stage
    (cache / "debs" / "trixie" / "base-files_13.8_amd64.deb").write_bytes(b"deb")
    removed = prune_cache(specs, say=lambda *_: None)
    assert sorted(removed) == sorted(stale)
    assert all(d.is_dir() for d in used) and running.is_dir()
    # A spec no longer present: its entries go too.
    assert sorted(prune_cache([], say=lambda *_: None)) == sorted(used)
    assert (cache / "debs" / "trixie" / "base-files_13.8_amd64.deb").is_file()


def test_clean_removes_the_packages_no_lock_pins(tmp_path, monkeypatch):
    """./inv clean keeps in the package cache every version a lock pins (two
    images' locks, one of them older) and removes the others, and the local
    repository made of the cache (it holds links to them)."""
    from golden.build.lock import cached_deb, lock_path, read_lock
    from golden.spec import load_spec
    from conftest import REPO
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    infra_lock = lock_path(load_spec(REPO / "images" / "infra.yaml"))
    specs = []
    for name in ("infra", "infra-open"):
        spec = load_spec(REPO / "images" / f"{name}.yaml")
        specs.append(dataclasses.replace(spec, path=str(tmp_path / f"{name}.yaml")))
    lock = infra_lock.read_text()
    base_files, bsdutils = (read_lock(infra_lock)["rootfs"][p] for p in ("base-files", "bsdutils"))
    assert ":" in bsdutils  # an epoch: %3a in the file name
    (tmp_path / "infra.lock").write_text(lock)
    (tmp_path / "infra-open.lock").write_text(lock.replace(f"base-files {base_files}\n", "base-files 13.8+deb13u1\n"))
    debs = tmp_path / "cache" / "debs" / "trixie"
    pinned = [f"base-files_{base_files}_amd64.deb", "base-files_13.8+deb13u1_amd64.deb",
              f"bsdutils_{bsdutils.replace(':', '%3a')}_amd64.deb"]
    stale = ["base-files_13.8+deb13u0_amd64.deb", "bsdutils_1%3a2.40.0-1_amd64.deb", "not-locked_1.0_all.deb"]
    (debs / "partial").mkdir(parents=True)
    (debs / "lock").write_text("")
    for name in pinned + stale:
        (debs / name).write_bytes(b"deb " + name.encode())
    repo = debs.with_name("trixie-repo")
    repo.mkdir()
    os.link(debs / stale[0], repo / stale[0])
    said = []
    clean([], 1, specs, say=said.append)
    assert sorted(p.name for p in debs.iterdir()) == sorted(pinned + ["lock", "partial"])
    assert not repo.exists()
    assert cached_deb("trixie", "bsdutils", bsdutils) == debs / pinned[2]
    assert f"removed 3 packages no lock pins from {debs} (0.0 MB)" in said and f"removed {repo}" in said
    said.clear()
    clean([], 1, specs, say=said.append)  # nothing left to remove
    assert said == [] and sorted(p.name for p in debs.iterdir()) == sorted(pinned + ["lock", "partial"])
    (debs / stale[2]).write_bytes(b"deb")
    clean([], 1, specs, say=said.append)
    assert said == [f"removed 1 package no lock pins from {debs} (0.0 MB)"]
