"""The work directory of an mmdebstrap run, removed with whatever its chroot
left mounted (real mounts: the tests run as root)."""
import subprocess
import sys
from pathlib import Path

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


def test_a_mount_that_cannot_be_unmounted_keeps_the_directory(tmp_path):
    """In a user namespace the mounts it inherited are locked: umount fails
    there, so the removal must refuse and leave the mounted file alone."""
    work = tmp_path / "work"
    (work / "shm").mkdir(parents=True)
    mount("-t", "tmpfs", "none", work / "shm")
    (work / "shm" / "segment").write_text("kept")
    try:
        removal = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-c",
             "import sys; from pathlib import Path; from golden.build.mmdebstrap import remove_unmounting; "
             "remove_unmounting(Path(sys.argv[1]))", str(work)],
            capture_output=True, text=True, cwd=Path(__file__).parents[3])
        assert removal.returncode != 0
        assert f"{work}: could not unmount {work / 'shm'}; left in place" in removal.stderr
        assert (work / "shm" / "segment").read_text() == "kept"
    finally:
        subprocess.run(["umount", str(work / "shm")])
