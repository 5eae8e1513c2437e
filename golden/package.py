"""Stage package: compressed qcow2, libvirt Vagrant box, SHA256SUMS.

The box carries no accelerator or driver setting: vagrant/Vagrantfile picks
the libvirt driver by probing the host at `vagrant up` time.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from golden.runner import BuildLog

BOX_VAGRANTFILE = """\
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
  end
end
"""


def compress_qcow2(src: Path, dest: Path, log: BuildLog) -> None:
    # zstd: about as small as zlib (design.md) and several times faster.
    log.run(["qemu-img", "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", src, dest])


def make_box(qcow2: Path, virtual_size_bytes: int, dest: Path) -> None:
    """A libvirt box: metadata.json, Vagrantfile, box.img. Not gzipped: the
    image inside is already compressed."""
    metadata = {"provider": "libvirt", "format": "qcow2",
                "virtual_size": -(-virtual_size_bytes // (1 << 30))}
    with tarfile.open(dest, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, text in (("metadata.json", json.dumps(metadata) + "\n"), ("Vagrantfile", BOX_VAGRANTFILE)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        tar.add(qcow2, arcname="box.img")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def describe_files(paths: list[Path]) -> list[dict]:
    return [{"name": p.name, "sha256": sha256_file(p), "size": p.stat().st_size} for p in paths]


def write_sha256sums(files: list[dict], dest: Path) -> None:
    dest.write_text("".join(f"{f['sha256']}  {f['name']}\n" for f in files))
