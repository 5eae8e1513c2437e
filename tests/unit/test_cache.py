"""The stage cache: entries are reused only when intact; damaged ones and
--force rebuild; a failing stage leaves nothing behind."""
import pytest

from golden.cache import cached_stage


class Log:
    def __init__(self):
        self.lines = []

    def say(self, text):
        self.lines.append(text)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _stage(calls):
    def build(d):
        calls.append(d)
        (d / "sub").mkdir()
        (d / "rootfs.tar").write_bytes(b"tar" * 1000)
        (d / "sub" / "packages.tsv").write_text(f"build {len(calls)}\n")
    return build


def test_entry_is_reused_while_intact(cache):
    calls, log = [], Log()
    first = cached_stage("rootfs", "k1", _stage(calls), log)
    second = cached_stage("rootfs", "k1", _stage(calls), log)
    assert first == second == cache / "rootfs" / "k1"
    assert len(calls) == 1 and log.lines == ["    rootfs: cached (k1)"]
    assert (first / "sub" / "packages.tsv").read_text() == "build 1\n"


@pytest.mark.parametrize("damage", [
    lambda e: (e / "rootfs.tar").write_bytes(b"tar" * 999),      # a changed file
    lambda e: (e / "sub" / "packages.tsv").unlink(),              # a missing file
    lambda e: (e / "extra").write_text("x"),                      # a stray file
    lambda e: (e / ".sha256sums").unlink(),                       # no checksums (half-copied cache)
])
def test_damaged_entry_is_rebuilt_not_used(cache, damage):
    calls, log = [], Log()
    entry = cached_stage("rootfs", "k1", _stage(calls), log)
    damage(entry)
    again = cached_stage("rootfs", "k1", _stage(calls), log)
    assert len(calls) == 2
    assert log.lines == ["    rootfs: cache entry k1 is damaged (checksums differ): rebuilding it"]
    assert (again / "rootfs.tar").read_bytes() == b"tar" * 1000 and not (again / "extra").exists()
    assert sorted(p.name for p in (cache / "rootfs").iterdir()) == ["k1"]
    cached_stage("rootfs", "k1", _stage(calls), log)
    assert len(calls) == 2  # the rebuilt entry is intact


def test_force_rebuilds_an_intact_entry(cache):
    calls, log = [], Log()
    cached_stage("disk", "k2", _stage(calls), log)
    entry = cached_stage("disk", "k2", _stage(calls), log, force=True)
    assert len(calls) == 2 and (entry / "sub" / "packages.tsv").read_text() == "build 2\n"
    assert sorted(p.name for p in (cache / "disk").iterdir()) == ["k2"]


def test_failing_stage_leaves_no_entry(cache):
    def broken(d):
        (d / "half.tar").write_bytes(b"half")
        raise RuntimeError("mmdebstrap failed")
    with pytest.raises(RuntimeError):
        cached_stage("rootfs", "k3", broken, Log())
    assert list((cache / "rootfs").iterdir()) == []
