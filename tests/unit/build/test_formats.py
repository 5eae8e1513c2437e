"""Each extra output is made by real qemu-img from a real disk and proven to
hold the same disk; one that differs is refused."""
import subprocess

import pytest

from golden.build.formats import check_same_disk, format_of, make_format
from golden.errors import GoldenError

from conftest import need, quiet_log


@pytest.fixture
def sealed(tmp_path):
    disk = tmp_path / "sealed.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 1M 3M", "-c", "write -P 0x17 40M 1M", str(disk)],
                   check=True, capture_output=True)
    return disk


@pytest.mark.parametrize("fmt, suffix, info_format", [("raw", "raw.zst", None), ("vmdk", "vmdk", "vmdk"),
                                                      ("vhdx", "vhdx", "vhdx")])
def test_each_format_holds_the_sealed_disk(sealed, tmp_path, fmt, suffix, info_format):
    for tool in ("qemu-img", "zstd"):
        need(tool)
    out = tmp_path / "out"
    out.mkdir()
    made = make_format(fmt, sealed, out, "web-20261130.120000", quiet_log(tmp_path / "build.log"))
    assert made == out / f"web-20261130.120000.{suffix}" and format_of(made) == fmt
    assert [p.name for p in out.iterdir()] == [made.name]  # nothing left behind
    if info_format:
        info = subprocess.run(["qemu-img", "info", "--output=json", str(made)], capture_output=True, text=True)
        assert f'"format": "{info_format}"' in info.stdout
        if fmt == "vmdk":
            assert "streamOptimized" in info.stdout
    else:
        assert subprocess.run(["zstd", "-t", str(made)], capture_output=True).returncode == 0
    check_same_disk(sealed, made, fmt, quiet_log(tmp_path / "check.log"))


def test_a_format_that_differs_is_refused(sealed, tmp_path):
    vhdx = tmp_path / "web.vhdx"
    subprocess.run(["qemu-img", "convert", "-O", "vhdx", str(sealed), str(vhdx)], check=True)
    subprocess.run(["qemu-io", "-f", "vhdx", "-c", "write -P 0x01 40M 4k", str(vhdx)], check=True,
                   capture_output=True)
    with pytest.raises(GoldenError, match="web.vhdx does not hold the disk of sealed.qcow2: Content mismatch"):
        check_same_disk(sealed, vhdx, "vhdx", quiet_log(tmp_path / "check.log"))
    raw, packed = tmp_path / "web.raw", tmp_path / "web.raw.zst"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(sealed), str(raw)], check=True)
    with raw.open("r+b") as f:
        f.seek(2 << 20)
        f.write(b"X")
    subprocess.run(["zstd", "-q", "--rm", "-o", str(packed), str(raw)], check=True)
    with pytest.raises(GoldenError, match="web.raw.zst does not hold the disk of sealed.qcow2"):
        check_same_disk(sealed, packed, "raw", quiet_log(tmp_path / "check.log"))
