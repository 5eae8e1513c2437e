"""The box's size by package, from a small real rootfs tar (dpkg file lists,
merged /usr) compressed by the real zstd."""
import io
import os
import tarfile

from golden.bench.packages import UNOWNED, package_sizes


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_each_packages_files_compressed_on_their_own(tmp_path):
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        _add(tar, "./var/lib/dpkg/info/libnoise1:amd64.list", b"/.\n/usr/lib/libnoise.so.1\n/lib/noise/extra\n")
        _add(tar, "./var/lib/dpkg/info/zeros.list", b"/usr/share/zeros\n")
        _add(tar, "./usr/lib/libnoise.so.1", os.urandom(1_000_000))
        _add(tar, "./usr/lib/noise/extra", os.urandom(500_000))  # listed as /lib/noise/extra: merged /usr
        _add(tar, "./usr/share/zeros", bytes(3_000_000))
        _add(tar, "./usr/lib/udev/hwdb.bin", os.urandom(200_000))  # generated: no package lists it
    rows = package_sizes(rootfs)
    by_name = {row["package"]: row for row in rows}
    assert rows[0]["package"] == "libnoise1"
    assert by_name["libnoise1"]["installed_bytes"] == 1_500_000
    assert 1_450_000 <= by_name["libnoise1"]["compressed_bytes"] <= 1_550_000  # random data does not shrink
    assert by_name["zeros"]["installed_bytes"] == 3_000_000 and by_name["zeros"]["compressed_bytes"] < 10_000
    assert 190_000 <= by_name[UNOWNED]["compressed_bytes"] <= 260_000  # hwdb.bin and the dpkg lists
