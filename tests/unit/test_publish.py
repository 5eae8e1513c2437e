"""Publishing to a directory repository, with real ssh-keygen signatures and
real Vagrant reading the catalog (tiny boxes: Vagrant unpacks, never boots them)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from golden.manifest import record_test, write_manifest
from golden.package import describe_files, make_box, write_sha256sums
from golden.publish import PublishError, check_publishable, publish, verify

from conftest import REPO


@pytest.fixture
def keys(tmp_path, monkeypatch):
    key = tmp_path / "keys" / "signing_key"
    key.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "golden test", "-f", str(key)], check=True)
    monkeypatch.setenv("GOLDEN_SIGNING_KEY", str(key))
    monkeypatch.delenv("GOLDEN_ALLOWED_SIGNERS", raising=False)
    return key


@pytest.fixture
def artifact(tmp_path):
    """A built artifact of a tiny image, as ./inv build lays it out."""
    def make(version="20261122.100000", passed=True, tested=True, disk_mb=16):
        d = tmp_path / "artifacts" / "web" / version
        d.mkdir(parents=True)
        qcow2 = d / f"web-{version}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), f"{disk_mb}M"], check=True)
        if disk_mb > 64:  # real content, so that copying takes a while
            subprocess.run(["qemu-io", "-c", f"write -P 0x5a 0 {disk_mb - 1}M", str(qcow2)],
                           check=True, capture_output=True)
        box = d / f"web-{version}.libvirt.box"
        make_box(qcow2, 1 << 30, box)
        files = describe_files([qcow2, box])
        write_sha256sums(files, d / "SHA256SUMS")
        write_manifest(d / "manifest.json", {
            "name": "web", "version": version, "built_at": "2026-11-22T10:00:00+00:00", "spec_sha256": "0" * 64,
            "base": {"suite": "trixie", "mirror": "http://deb.debian.org/debian"}, "packages": {},
            "files": files, "stages": {}, "accelerator": "tcg", "description": "test image"})
        if tested:
            record_test(d / "manifest.json", passed, 10, 0 if passed else 2, "test-report.xml")
        return d
    return make


def test_untested_and_failed_images_are_refused(artifact, keys, tmp_path):
    repo = tmp_path / "repo"
    with pytest.raises(PublishError, match="web 20261122.100000: not tested: run ./inv test first"):
        publish(artifact(tested=False), repo)
    with pytest.raises(PublishError, match=r"its test failed \(2 failures\)"):
        publish(artifact(version="20261122.100001", passed=False), repo, force=True)
    assert not (repo / "web").exists()  # refused before anything was written


def test_tampered_artifact_is_refused(artifact, keys, tmp_path):
    a = artifact()
    with (a / "web-20261122.100000.libvirt.box").open("r+b") as f:
        f.seek(100)
        f.write(b"tampered")
    with pytest.raises(PublishError, match="web-20261122.100000.libvirt.box does not match the checksum"):
        check_publishable(a)


def test_publish_then_verify(artifact, keys, tmp_path):
    repo = tmp_path / "repo"
    final = publish(artifact(), repo, say=lambda *_: None)
    assert sorted(p.name for p in final.iterdir()) == sorted([
        "SHA256SUMS", "SHA256SUMS.sig", "manifest.json", "signing-key.pub",
        "web-20261122.100000.qcow2", "web-20261122.100000.libvirt.box"])
    catalog = json.loads((repo / "web" / "metadata.json").read_text())
    assert catalog["name"] == "golden/web" and catalog["description"] == "test image"
    (provider,) = catalog["versions"][0]["providers"]
    assert provider["name"] == "libvirt" and provider["checksum_type"] == "sha256"
    assert provider["architecture"] == "amd64"
    assert provider["url"] == (final / "web-20261122.100000.libvirt.box").as_uri()
    assert verify(repo, "web", say=lambda *_: None) == final


def test_verify_refuses_tampered_file_and_wrong_signature(artifact, keys, tmp_path):
    repo = tmp_path / "repo"
    final = publish(artifact(), repo, say=lambda *_: None)
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"golden {other.with_suffix('.pub').read_text()}")
    with pytest.raises(PublishError, match="bad signature on SHA256SUMS"):
        verify(repo, "web", allowed_signers=signers, say=lambda *_: None)
    with (final / "web-20261122.100000.qcow2").open("r+b") as f:
        f.seek(0, 2)
        f.write(b"extra")
    with pytest.raises(PublishError, match="checksum mismatch: web-20261122.100000.qcow2: FAILED"):
        verify(repo, "web", say=lambda *_: None)


def test_same_version_with_other_content_is_refused(artifact, keys, tmp_path):
    repo = tmp_path / "repo"
    publish(artifact(), repo, say=lambda *_: None)
    publish(tmp_path / "artifacts" / "web" / "20261122.100000", repo, say=lambda *_: None)  # same: fine
    (tmp_path / "artifacts").rename(tmp_path / "artifacts-1")
    with pytest.raises(PublishError, match="already published with different content"):
        publish(artifact(disk_mb=32), repo, say=lambda *_: None)


def test_keep_prunes_old_versions(artifact, keys, tmp_path):
    repo = tmp_path / "repo"
    for v in ("20261122.100000", "20261122.110000", "20261122.120000"):
        publish(artifact(version=v), repo, keep=2, say=lambda *_: None)
    catalog = json.loads((repo / "web" / "metadata.json").read_text())
    assert [v["version"] for v in catalog["versions"]] == ["20261122.120000", "20261122.110000"]
    assert not (repo / "web" / "20261122.100000").exists()


def test_killed_publish_leaves_previous_catalog_valid(artifact, keys, tmp_path):
    repo = tmp_path / "repo"
    publish(artifact(), repo, say=lambda *_: None)
    before = (repo / "web" / "metadata.json").read_text()
    big = artifact(version="20261122.110000", disk_mb=400)
    code = ("import sys; from pathlib import Path; from golden.publish import publish; "
            f"publish(Path({str(big)!r}), Path({str(repo)!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ))
    deadline = time.monotonic() + 60
    while not list((repo / "web").glob(".20261122.110000.tmp-*")):
        assert proc.poll() is None and time.monotonic() < deadline, "publish finished before it could be killed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after = (repo / "web" / "metadata.json").read_text()
    assert after == before
    assert [v["version"] for v in json.loads(after)["versions"]] == ["20261122.100000"]
    assert not (repo / "web" / "20261122.110000").exists()


def test_real_vagrant_adds_from_catalog_and_sees_newer_version(artifact, keys, tmp_path):
    repo = tmp_path / "repo"
    publish(artifact(), repo, say=lambda *_: None)
    env = dict(os.environ, VAGRANT_HOME=str(tmp_path / "vagrant.d"), VAGRANT_CHECKPOINT_DISABLE="1",
               VAGRANT_NO_COLOR="1")
    catalog_url = (repo / "web" / "metadata.json").as_uri()
    add = subprocess.run(["vagrant", "box", "add", "--provider", "libvirt", catalog_url],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert add.returncode == 0, add.stdout + add.stderr
    listed = subprocess.run(["vagrant", "box", "list"], capture_output=True, text=True, env=env).stdout
    assert "golden/web (libvirt, 20261122.100000" in listed
    (tmp_path / "artifacts").rename(tmp_path / "artifacts-1")
    publish(artifact(version="20261122.110000"), repo, say=lambda *_: None)
    outdated = subprocess.run(["vagrant", "box", "outdated", "--global"], capture_output=True, text=True, env=env)
    assert "golden/web" in outdated.stdout and "20261122.110000" in outdated.stdout, outdated.stdout
