"""The work directory of an mmdebstrap run, removed with whatever its chroot
left mounted (real mounts: the tests run as root)."""
import subprocess

from golden.build.mmdebstrap import mounts_under, remove_unmounting


def mount(*args):
    subprocess.run(["mount", *map(str, args)], check=True)


def test_left_mounts_are_unmounted_before_the_work_directory_is_removed(tmp_path):
    """As mmdebstrap leaves them when interrupted in its setup_mounts: a bind
    mount of a host directory (its /dev/shm) and a file system of its own;
    the path has a space, which /proc/self/mountinfo writes as \\040."""
    host_shm = tmp_path / "host shm"
    host_shm.mkdir()
    (host_shm / "segment").write_text("kept")
    work = tmp_path / "golden-mmdebstrap-x"
    chroot = work / "mmdebstrap.y"
    for d in ("dev/shm", "sys"):
        (chroot / d).mkdir(parents=True)
    mount("--bind", host_shm, chroot / "dev/shm")
    mount("-t", "tmpfs", "none", chroot / "sys")
    try:
        assert mounts_under(work) == [chroot / "dev/shm", chroot / "sys"]
        remove_unmounting(work)
        assert not work.exists()
        assert (host_shm / "segment").read_text() == "kept"  # not deleted through the bind mount
    finally:
        for point in mounts_under(tmp_path):
            subprocess.run(["umount", "--lazy", str(point)])
    assert mounts_under(tmp_path) == []


def test_nothing_mounted_beside_the_directory_counts(tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work-other").mkdir()
    mount("-t", "tmpfs", "none", tmp_path / "work-other")
    try:
        assert mounts_under(tmp_path / "work") == []
        remove_unmounting(tmp_path / "work")
        assert not (tmp_path / "work").exists()
        assert mounts_under(tmp_path) == [tmp_path / "work-other"]
    finally:
        subprocess.run(["umount", str(tmp_path / "work-other")])
