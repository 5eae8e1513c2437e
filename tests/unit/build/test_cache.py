"""The stage cache: entries are reused only when intact; damaged ones and
--force rebuild; a failing stage leaves nothing behind."""
import os
import time

import pytest

from golden.build.cache import cached_stage


class Log:
    def __init__(self):
        self.lines = []

    def say(self, text):
        self.lines.append(text)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _entries(kind_dir):
    return sorted(p.name for p in kind_dir.iterdir())


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
    assert _entries(cache / "rootfs") == ["k1"]
    cached_stage("rootfs", "k1", _stage(calls), log)
    assert len(calls) == 2  # the rebuilt entry is intact


def test_force_rebuilds_an_intact_entry(cache):
    calls, log = [], Log()
    cached_stage("disk", "k2", _stage(calls), log)
    entry = cached_stage("disk", "k2", _stage(calls), log, force=True)
    assert len(calls) == 2 and (entry / "sub" / "packages.tsv").read_text() == "build 2\n"
    assert _entries(cache / "disk") == ["k2"]


def test_failing_stage_leaves_no_entry(cache):
    def broken(d):
        (d / "half.tar").write_bytes(b"half")
        raise RuntimeError("mmdebstrap failed")
    with pytest.raises(RuntimeError):
        cached_stage("rootfs", "k3", broken, Log())
    assert _entries(cache / "rootfs") == []


def test_parallel_builds_share_an_entry_built_once(cache):
    """Two image builds needing the same stage (as infra and infra-open do):
    one builds it, the other waits and reuses it."""
    import threading
    import time
    calls, results = [], []

    def slow(d):
        calls.append(d)
        time.sleep(1)
        (d / "rootfs.tar").write_bytes(b"tar")

    threads = [threading.Thread(target=lambda: results.append(cached_stage("rootfs", "shared", slow, Log())))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert results == [cache / "rootfs" / "shared"] * 2


def test_a_build_waiting_for_anothers_entry_gives_its_slot_to_a_third(cache):
    """Two slots, three builds: A makes an entry, B needs the same one and
    waits, C has work of its own. C runs while A is still building (B gave
    its slot up); B then takes a slot again before it goes on."""
    import threading
    from golden.build.slots import in_a_slot
    slots = threading.Semaphore(2)
    a_building, b_in_slot, c_ran, b_back = (threading.Event() for _ in range(4))
    seen, b_log = {}, Log()

    def make(d):
        a_building.set()
        seen["c ran while a built"] = c_ran.wait(20)
        (d / "rootfs.tar").write_bytes(b"tar")

    def a():
        with in_a_slot(slots):
            cached_stage("rootfs", "shared", make, Log())

    def b():
        a_building.wait(20)
        with in_a_slot(slots):  # both slots are taken now
            b_in_slot.set()
            cached_stage("rootfs", "shared", make, b_log)
            free = slots.acquire(blocking=False)
            if free:
                slots.release()
            seen["b holds a slot again"] = not free  # C holds the other
            b_back.set()

    def c():
        b_in_slot.wait(20)
        with in_a_slot(slots):
            c_ran.set()
            b_back.wait(20)

    threads = [threading.Thread(target=f) for f in (a, b, c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert seen == {"c ran while a built": True, "b holds a slot again": True}
    assert b_log.lines == ["    rootfs: another build is making it; waiting, its job slot free meanwhile",
                           "    rootfs: cached (shared)"]
    assert slots.acquire(blocking=False) and slots.acquire(blocking=False)  # both free again
    assert not slots.acquire(blocking=False)


def test_a_cache_hit_is_a_use(tmp_path, monkeypatch):
    """Pruning down to a size goes by last use: a hit renews the entry's time."""
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    log = Log()
    entry = cached_stage("disk", "k" * 20, lambda d: (d / "disk.img").write_bytes(b"x"), log)
    os.utime(entry, (1_000_000, 1_000_000))
    assert cached_stage("disk", "k" * 20, lambda d: pytest.fail("rebuilt"), log) == entry
    assert entry.stat().st_mtime > time.time() - 60


def _another_process_is_sole_user() -> bool:
    import subprocess
    import sys
    from conftest import REPO
    code = "from golden.build.cache import sole_user\nwith sole_user() as sole: print(sole)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=30,
                         env=dict(os.environ, PYTHONPATH=str(REPO))).stdout
    return {"True\n": True, "False\n": False}[out]


def test_this_process_keeps_using_the_cache_after_asking_to_be_its_sole_user(cache):
    """Whether the write lock was refused (another user) or granted, this
    process still holds its read lock afterwards: no other process may prune."""
    from conftest import another_golden_process
    from golden.build.cache import sole_user
    assert _another_process_is_sole_user()  # nobody uses this cache yet
    with another_golden_process():
        with sole_user() as sole:
            assert not sole
    assert not _another_process_is_sole_user()  # the refused attempt left our read lock
    with sole_user() as sole:  # alone now (another process would wait to start using it)
        assert sole
    assert not _another_process_is_sole_user()  # back to a read lock, still held


def test_a_build_waiting_for_another_process_stops_waiting_when_interrupted(cache):
    """Another process holds the entry's lock (its build runs on). Interrupted,
    this run stops waiting at once: its builds are threads, which never see
    the interrupt themselves, so a blocking wait would hold the run until the
    other process's stage ended."""
    import subprocess
    import sys
    import threading
    from golden.errors import GoldenError
    from golden.vm.runner import stop_all_running
    (cache / ".locks").mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\nf = open(sys.argv[1], 'w')\n"
         "fcntl.flock(f, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)",
         str(cache / ".locks" / "rootfs-held")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        calls, log, outcome = [], Log(), {}

        def waiting_build():
            try:
                cached_stage("rootfs", "held", _stage(calls), log)
            except GoldenError as exc:
                outcome["error"] = str(exc)
        thread = threading.Thread(target=waiting_build)
        thread.start()
        deadline = time.monotonic() + 20
        while not log.lines and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.lines == ["    rootfs: another build is making it; waiting, its job slot free meanwhile"]
        time.sleep(0.5)
        assert thread.is_alive()  # still waiting: the other process holds the lock
        stopped = time.monotonic()
        stop_all_running()
        thread.join(10)
        assert not thread.is_alive() and time.monotonic() - stopped < 2
        assert outcome == {"error": "interrupted: the rest of this build not started"}
        assert calls == [] and not (cache / "rootfs" / "held").exists()
    finally:
        holder.kill()
        holder.wait()
