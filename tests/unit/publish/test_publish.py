"""Publishing to a directory and to a real WebDAV server (nginx on 127.0.0.1,
started by the test), with real ssh-keygen signatures and real Vagrant
reading the catalog (tiny boxes: Vagrant unpacks, never boots them)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from golden.build.manifest import record_test, write_manifest
from golden.build.stages.package import describe_files, make_box, write_sha256sums
from golden.publish.release import PublishError, check_publishable, publish, verify
from golden.errors import GoldenError
from golden.publish.repository import DirectoryRepository, HttpRepository, RepositoryError, safe_rel

from conftest import REPO, need

PUBLISH_USER, PUBLISH_PASSWORD = "publisher", "s3cret-for-tests"
NGINX_CONF = """\
{user}daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log;
events {{}}
http {{
  access_log {run}/access.log;
  client_body_temp_path {run}/body;
  client_max_body_size 0;
  types {{ application/json json; }}
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    location / {{
      dav_methods PUT DELETE MKCOL COPY MOVE;
      create_full_put_path on;
      limit_except GET HEAD {{ auth_basic "golden"; auth_basic_user_file {run}/htpasswd; }}
    }}
  }}
}}
"""


class Target:
    """A repository under test: what to pass as --to, and its files on disk."""
    def __init__(self, to: str, root):
        self.to, self.root = to, root

    def url(self, rel: str) -> str:
        return f"{self.to}/{rel}" if self.to.startswith("http") else (self.root / rel).resolve().as_uri()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def nginx(tmp_path):
    """A WebDAV server on 127.0.0.1: anyone may read, writing needs basic auth."""
    need("nginx")
    run, root = tmp_path / "nginx", tmp_path / "dav"
    (run / "body").mkdir(parents=True)
    root.mkdir()
    (run / "htpasswd").write_text(f"{PUBLISH_USER}:{{PLAIN}}{PUBLISH_PASSWORD}\n")
    port = _free_port()
    conf = run / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user="user root;\n" if os.geteuid() == 0 else "",
                                      run=run, root=root, port=port))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-e", str(run / "error.log")])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(base + "/", timeout=1)
        except urllib.error.HTTPError:
            break  # answering (403/404 for the empty root)
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, (run / "error.log").read_text()
            time.sleep(0.1)
        else:
            break
    yield Target(base, root)
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(params=["directory", "http"])
def target(request, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLDEN_PUBLISH_USER", PUBLISH_USER)
    monkeypatch.setenv("GOLDEN_PUBLISH_PASSWORD", PUBLISH_PASSWORD)
    if request.param == "http":
        return request.getfixturevalue("nginx")
    return Target(str(tmp_path / "repo"), tmp_path / "repo")


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
    def make(version="20261122.100000", passed=True, tested=True, disk_mb=16, test_only=False):
        d = tmp_path / "artifacts" / "web" / version
        d.mkdir(parents=True)
        qcow2 = d / f"web-{version}.qcow2"
        if disk_mb > 64:  # random content, so that copying takes a while, the box's too (zstd cannot shrink it)
            raw = tmp_path / f"{version}.raw"
            with raw.open("wb") as f:
                for _ in range(disk_mb):
                    f.write(os.urandom(1 << 20))
            subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)], check=True)
            raw.unlink()
        else:
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow2), f"{disk_mb}M"], check=True)
        box = d / f"web-{version}.libvirt.box"
        make_box(qcow2, 1 << 30, box, level=1)  # fast: only its bytes matter here
        files = describe_files([qcow2, box])
        write_sha256sums(files, d / "SHA256SUMS")
        write_manifest(d / "manifest.json", {
            "name": "web", "version": version, "built_at": "2026-11-22T10:00:00+00:00", "spec_sha256": "0" * 64,
            "base": {"suite": "trixie", "mirror": "http://deb.debian.org/debian"}, "packages": {},
            "files": files, "stages": {}, "accelerator": "tcg", "description": "test image", "test_only": test_only})
        if tested:
            (d / "test-report.xml").write_text(f'<testsuite tests="10" failures="{0 if passed else 2}"/>\n')
            record_test(d / "manifest.json", passed, 10, 0 if passed else 2, ["test-report.xml"])
        return d
    return make


def test_untested_and_failed_images_are_refused(artifact, keys, target):
    with pytest.raises(PublishError, match="web 20261122.100000: not tested: run ./inv test first"):
        publish(artifact(tested=False), target.to)
    with pytest.raises(PublishError, match=r"its test failed \(2 failures\)"):
        publish(artifact(version="20261122.100001", passed=False), target.to, force=True)
    assert not (target.root / "web").exists()  # refused before anything was written


def test_test_only_images_are_never_published(artifact, keys, target):
    """Images of tests/images hold the test fixtures: tested and passed, still refused."""
    with pytest.raises(PublishError, match="web 20261122.100000: built from a test-only spec"):
        publish(artifact(test_only=True), target.to, force=True)
    assert not (target.root / "web").exists()


def test_tampered_artifact_is_refused(artifact, keys, tmp_path):
    a = artifact()
    with (a / "web-20261122.100000.libvirt.box").open("r+b") as f:
        f.seek(100)
        f.write(b"tampered")
    with pytest.raises(PublishError, match="web-20261122.100000.libvirt.box does not match the checksum"):
        check_publishable(a)


def test_publish_then_verify(artifact, keys, target):
    url = publish(artifact(), target.to, say=lambda *_: None)
    assert url == target.url("web/20261122.100000/")
    final = target.root / "web" / "20261122.100000"
    assert sorted(p.name for p in final.iterdir()) == sorted([
        "SHA256SUMS", "SHA256SUMS.sig", "manifest.json", "release.json", "release.json.sig", "signing-key.pub",
        "test-report.xml", "web-20261122.100000.qcow2", "web-20261122.100000.libvirt.box"])
    left = sorted(p.name for p in (target.root / "web").iterdir() if p.name != ".publish.lock")
    assert left == ["20261122.100000", "metadata.json"]  # nothing left in staging, lock released
    assert not (target.root / "web" / ".publish.lock").is_dir()
    catalog = json.loads((target.root / "web" / "metadata.json").read_text())
    assert catalog["name"] == "golden/web" and catalog["description"] == "test image"
    (provider,) = catalog["versions"][0]["providers"]
    assert provider["name"] == "libvirt" and provider["checksum_type"] == "sha256"
    assert provider["architecture"] == "amd64"
    assert provider["url"] == target.url("web/20261122.100000/web-20261122.100000.libvirt.box")
    assert provider["checksum"] == describe_files([final / "web-20261122.100000.libvirt.box"])[0]["sha256"]
    assert verify(target.to, "web", say=lambda *_: None) == url


def test_verify_refuses_tampered_file_and_wrong_signature(artifact, keys, target, tmp_path):
    publish(artifact(), target.to, say=lambda *_: None)
    final = target.root / "web" / "20261122.100000"
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"golden {other.with_suffix('.pub').read_text()}")
    with pytest.raises(GoldenError, match="metadata.json: bad signature"):
        verify(target.to, "web", allowed_signers=signers, say=lambda *_: None)
    with (final / "web-20261122.100000.qcow2").open("r+b") as f:
        f.seek(0, 2)
        f.write(b"extra")
    with pytest.raises(PublishError, match="checksum mismatch: web-20261122.100000.qcow2: FAILED"):
        verify(target.to, "web", say=lambda *_: None)
    (final / "web-20261122.100000.qcow2").unlink()
    with pytest.raises(PublishError, match="checksum mismatch: web-20261122.100000.qcow2: MISSING"):
        verify(target.to, "web", say=lambda *_: None)


def test_same_version_with_other_content_is_refused(artifact, keys, target, tmp_path):
    publish(artifact(), target.to, say=lambda *_: None)
    publish(tmp_path / "artifacts" / "web" / "20261122.100000", target.to, say=lambda *_: None)  # same: fine
    (tmp_path / "artifacts").rename(tmp_path / "artifacts-1")
    other = artifact(disk_mb=32)
    with pytest.raises(PublishError, match="already published with different content"):
        publish(other, target.to, say=lambda *_: None)
    url = publish(other, target.to, force=True, say=lambda *_: None)  # --force replaces a tested image
    # In a directory of its own, which the catalog now points at; the old one is gone.
    (new,) = [d for d in (target.root / "web").iterdir() if d.name.startswith("20261122.100000")]
    assert new.name.startswith("20261122.100000-") and url.rstrip("/").endswith(new.name)
    assert (new / "SHA256SUMS").read_text() == (other / "SHA256SUMS").read_text()
    assert verify(target.to, "web", say=lambda *_: None) == url


def test_keep_prunes_old_versions(artifact, keys, target):
    for v in ("20261122.100000", "20261122.110000", "20261122.120000"):
        publish(artifact(version=v), target.to, keep=2, say=lambda *_: None)
    catalog = json.loads((target.root / "web" / "metadata.json").read_text())
    assert [v["version"] for v in catalog["versions"]] == ["20261122.120000", "20261122.110000"]
    assert not (target.root / "web" / "20261122.100000").exists()
    assert (target.root / "web" / "20261122.110000" / "SHA256SUMS.sig").is_file()


def test_killed_publish_leaves_previous_catalog_valid(artifact, keys, target, tmp_path):
    publish(artifact(), target.to, say=lambda *_: None)
    repo = target.root
    before = (repo / "web" / "metadata.json").read_text()
    big = artifact(version="20261122.110000", disk_mb=400)
    code = ("import sys; from pathlib import Path; from golden.publish.release import publish; "
            f"publish(Path({str(big)!r}), {target.to!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, TMPDIR=str(tmp_path)))  # its leftovers go with tmp_path
    deadline = time.monotonic() + 60
    # Killed once the first file is in staging, while the next one is on its way.
    while not list((repo / "web").glob(".20261122.110000.tmp-*/*")):
        assert proc.poll() is None and time.monotonic() < deadline, "publish finished before it could be killed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after = (repo / "web" / "metadata.json").read_text()
    assert after == before
    assert [v["version"] for v in json.loads(after)["versions"]] == ["20261122.100000"]
    assert not (repo / "web" / "20261122.110000").exists()
    # The next publish goes through: the killed one's lock is released (flock)
    # or recognised as stale (its owner's process on this host is gone).
    publish(big, target.to, say=lambda *_: None)
    assert [v["version"] for v in json.loads((repo / "web" / "metadata.json").read_text())["versions"]] == \
        ["20261122.110000", "20261122.100000"]


def test_real_vagrant_adds_from_catalog_and_sees_newer_version(artifact, keys, target, tmp_path):
    publish(artifact(), target.to, say=lambda *_: None)
    env = dict(os.environ, VAGRANT_HOME=str(tmp_path / "vagrant.d"), VAGRANT_CHECKPOINT_DISABLE="1",
               VAGRANT_NO_COLOR="1")
    catalog_url = target.url("web/metadata.json")
    add = subprocess.run(["vagrant", "box", "add", "--provider", "libvirt", catalog_url],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert add.returncode == 0, add.stdout + add.stderr
    listed = subprocess.run(["vagrant", "box", "list"], capture_output=True, text=True, env=env).stdout
    assert "golden/web (libvirt, 20261122.100000" in listed
    (tmp_path / "artifacts").rename(tmp_path / "artifacts-1")
    publish(artifact(version="20261122.110000"), target.to, say=lambda *_: None)
    outdated = subprocess.run(["vagrant", "box", "outdated", "--global"], capture_output=True, text=True, env=env)
    assert "golden/web" in outdated.stdout and "20261122.110000" in outdated.stdout, outdated.stdout
    # Revoked, the newer version is no longer offered to Vagrant.
    from golden.publish.release import revoke
    revoke(target.to, "web", "20261122.110000", "bad kernel", say=lambda *_: None)
    outdated = subprocess.run(["vagrant", "box", "outdated", "--global"], capture_output=True, text=True, env=env)
    assert "20261122.110000" not in outdated.stdout and "golden/web" in outdated.stdout, outdated.stdout


def test_http_publish_needs_credentials_and_never_shows_them(artifact, keys, nginx, monkeypatch):
    monkeypatch.setenv("GOLDEN_PUBLISH_USER", PUBLISH_USER)
    monkeypatch.setenv("GOLDEN_PUBLISH_PASSWORD", "wrong-password")
    built = artifact()
    with pytest.raises(RepositoryError, match="HTTP 401 Unauthorized .check GOLDEN_PUBLISH_USER") as err:
        publish(built, nginx.to, say=lambda *_: None)
    assert "wrong-password" not in str(err.value)
    assert not (nginx.root / "web").exists()
    with pytest.raises(RepositoryError, match="credentials in the URL are refused") as err:
        publish(built, nginx.to.replace("http://", f"http://{PUBLISH_USER}:{PUBLISH_PASSWORD}@"))
    assert PUBLISH_PASSWORD not in str(err.value)


def test_http_publish_waits_for_the_lock_and_names_it(artifact, keys, nginx, monkeypatch):
    monkeypatch.setenv("GOLDEN_PUBLISH_USER", PUBLISH_USER)
    monkeypatch.setenv("GOLDEN_PUBLISH_PASSWORD", PUBLISH_PASSWORD)
    (nginx.root / "web" / ".publish.lock").mkdir(parents=True)  # another publish holds it
    (nginx.root / "web" / ".publish.lock" / "owner").write_text("builder-7 4242\n")
    monkeypatch.setenv("GOLDEN_PUBLISH_LOCK_TIMEOUT", "3")
    built = artifact()
    with pytest.raises(RepositoryError, match=r"web/\.publish\.lock/ is held by another publish \(builder-7 4242\)"):
        publish(built, nginx.to, say=lambda *_: None)
    assert sorted(p.name for p in (nginx.root / "web").iterdir()) == [".publish.lock"]
    (nginx.root / "web" / ".publish.lock" / "owner").unlink()
    (nginx.root / "web" / ".publish.lock").rmdir()
    publish(built, nginx.to, say=lambda *_: None)
    assert not (nginx.root / "web" / ".publish.lock").exists()  # released after publishing


def _resign(catalog_path, key):
    from golden.publish.statement import canonical, sign_bytes
    catalog = json.loads(catalog_path.read_text())
    catalog["golden_signature"] = sign_bytes(canonical(catalog, "golden_signature"), key, "catalog").decode()
    catalog_path.write_text(json.dumps(catalog))


# Safe repository operations (issue 15): what an attacker with write access to
# the repository, or a tampered artifact directory, tries.

def test_a_traversal_version_in_the_catalog_is_refused_before_any_use(artifact, keys, target, tmp_path):
    publish(artifact(), target.to, say=lambda *_: None)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    catalog_path = target.root / "web" / "metadata.json"
    catalog = json.loads(catalog_path.read_text())
    catalog["versions"].append(dict(catalog["versions"][0], version="../../victim"))
    catalog_path.write_text(json.dumps(catalog))
    newer = artifact(version="20261123.100000")
    with pytest.raises(GoldenError, match="metadata.json: bad signature"):  # by someone without the key
        publish(newer, target.to, keep=1, say=lambda *_: None)
    _resign(catalog_path, keys)  # even signed (a broken tool, a stolen key): checked before any use
    with pytest.raises(GoldenError, match=r"versions\[1\]\.version: '../../victim' is not a golden version"):
        publish(newer, target.to, keep=1, say=lambda *_: None)
    with pytest.raises(GoldenError, match="is not a golden version"):
        verify(target.to, "web", say=lambda *_: None)
    assert (victim / "precious").read_text() == "keep me"
    assert not (target.root / "web" / "20261123.100000").exists()


@pytest.mark.parametrize("rel", ["../x", "web/../../x", "/etc/passwd", "web//x", "web/./x", "web/..", "",
                                 "web/x\ny", "web/x\n", "web\\..\\x"])
def test_repository_paths_never_leave_the_root(tmp_path, rel):
    with pytest.raises(RepositoryError, match="it would leave the repository"):
        safe_rel(rel)
    with pytest.raises(RepositoryError):
        DirectoryRepository(tmp_path).delete(rel)
    with pytest.raises(RepositoryError):
        HttpRepository("https://repo.example.org/boxes").url(rel)


def test_a_symlink_out_of_a_directory_repository_is_refused(tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "precious").write_text("keep me")
    (tmp_path / "repo" / "web").symlink_to(tmp_path / "outside")
    with pytest.raises(RepositoryError, match="resolves outside"):
        DirectoryRepository(tmp_path / "repo").delete("web/")
    assert (tmp_path / "outside" / "precious").is_file()


def test_credentials_only_over_https_or_to_loopback(monkeypatch):
    monkeypatch.setenv("GOLDEN_PUBLISH_USER", PUBLISH_USER)
    monkeypatch.setenv("GOLDEN_PUBLISH_PASSWORD", PUBLISH_PASSWORD)
    with pytest.raises(RepositoryError, match="refusing to send publish credentials over plain http://"):
        HttpRepository("http://repo.example.org/boxes")
    HttpRepository("https://repo.example.org/boxes")
    HttpRepository("http://127.0.0.1:8080/boxes")
    HttpRepository("http://[::1]:8080/boxes")
    monkeypatch.delenv("GOLDEN_PUBLISH_USER")
    HttpRepository("http://repo.example.org/boxes")  # reading needs no credentials


def test_sha256sums_other_than_the_tested_checksums_is_refused(artifact, keys, target):
    a = artifact()
    sums = a / "SHA256SUMS"
    sums.write_text(sums.read_text().replace("web-20261122.100000.qcow2", "web-20261122.100000.qcow2 \n" + "0" * 64
                                             + "  extra.img"))
    with pytest.raises(PublishError, match="SHA256SUMS differs from the checksums the image was tested with"):
        publish(a, target.to, say=lambda *_: None)
    assert not (target.root / "web").exists()


def test_a_file_changed_after_the_gate_is_not_published(artifact, keys, tmp_path, monkeypatch):
    """The gate runs again under the lock (and the upload hashes the bytes it sends)."""
    import fcntl
    import threading
    import golden.publish.release as release
    a, repo = artifact(), tmp_path / "repo"
    (repo / "web").mkdir(parents=True)
    errors, gates_passed = [], []
    gate = release.check_publishable

    def counted_gate(*args, **kwargs):
        manifest = gate(*args, **kwargs)
        gates_passed.append(args)
        return manifest
    monkeypatch.setattr(release, "check_publishable", counted_gate)
    with (repo / "web" / ".publish.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another publisher holds the image's lock
        thread = threading.Thread(target=lambda: errors.append(_publish_error(a, repo)))
        thread.start()
        deadline = time.monotonic() + 60
        while not gates_passed:  # past the first gate, then waiting for the lock
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.05)
        with (a / "web-20261122.100000.qcow2").open("r+b") as f:
            f.seek(0)
            f.write(b"X")  # same size, other bytes
    thread.join(60)
    assert len(gates_passed) == 1  # the second gate, under the lock, refused it
    assert errors and "web-20261122.100000.qcow2 does not match the checksum it was tested with" in errors[0]
    assert sorted(p.name for p in (repo / "web").iterdir()) == [".publish.lock"]


def _publish_error(artifact_dir, repo) -> str:
    try:
        publish(artifact_dir, repo, say=lambda *_: None)
    except PublishError as exc:
        return str(exc)
    return "published"


# The trust chain (issue 15): the signed statement binds name, version, every
# file, the manifest and its test verdict; the catalog is signed.

def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def test_a_signed_set_copied_to_another_name_is_refused(artifact, keys, tmp_path):
    """Both images are the publisher's; infra's files are replaced by infra-open's, renamed."""
    repo = tmp_path / "repo"
    publish(artifact(), repo, say=lambda *_: None)
    other = artifact(version="20261122.120000")
    _edit_json(other / "manifest.json", lambda m: m.update(name="web-open"))
    publish(other, repo, say=lambda *_: None)
    victim, source = repo / "web" / "20261122.100000", repo / "web-open" / "20261122.120000"
    for f in source.iterdir():
        target_name = f.name.replace("20261122.120000", "20261122.100000")
        shutil.copyfile(f, victim / target_name)
    _edit_json(victim / "manifest.json", lambda m: m.update(name="web", version="20261122.100000"))
    with pytest.raises(PublishError, match="the signed statement is for web-open 20261122.120000: files copied"):
        verify(repo, "web", say=lambda *_: None)


def test_a_rewritten_catalog_entry_is_refused(artifact, keys, target):
    publish(artifact(), target.to, say=lambda *_: None)
    catalog = target.root / "web" / "metadata.json"
    _edit_json(catalog, lambda c: c["versions"][0]["providers"][0].update(url="http://evil.example/box"))
    with pytest.raises(GoldenError, match="metadata.json: bad signature"):
        verify(target.to, "web", say=lambda *_: None)


def test_a_tampered_manifest_verdict_is_refused(artifact, keys, target):
    publish(artifact(), target.to, say=lambda *_: None)
    _edit_json(target.root / "web" / "20261122.100000" / "manifest.json",
               lambda m: m["test"].update(tests=500, failures=0))
    with pytest.raises(PublishError, match="checksum mismatch: manifest.json: FAILED"):
        verify(target.to, "web", say=lambda *_: None)


def test_a_changed_sha256sums_is_refused(artifact, keys, target):
    publish(artifact(), target.to, say=lambda *_: None)
    sums = target.root / "web" / "20261122.100000" / "SHA256SUMS"
    sums.write_text(sums.read_text() + "0" * 64 + "  extra.img\n")
    with pytest.raises(PublishError, match="SHA256SUMS does not match the signed statement"):
        verify(target.to, "web", say=lambda *_: None)


def test_a_release_without_a_signed_statement_is_refused(artifact, keys, target):
    publish(artifact(), target.to, say=lambda *_: None)
    (target.root / "web" / "20261122.100000" / "release.json.sig").unlink()
    with pytest.raises(PublishError, match="no signed release statement"):
        verify(target.to, "web", say=lambda *_: None)


def test_openssh_alone_checks_the_statement_and_the_files(artifact, keys, tmp_path):
    """What the README tells a user without golden to run."""
    repo = tmp_path / "repo"
    publish(artifact(), repo, say=lambda *_: None)
    release = repo / "web" / "20261122.100000"
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"golden {(keys.with_name(keys.name + '.pub')).read_text()}")
    for document, namespace in (("release.json", "golden-release"), ("SHA256SUMS", "golden-sha256sums")):
        with (release / document).open("rb") as f:
            check = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", "golden", "-n",
                                    namespace, "-s", str(release / f"{document}.sig")], stdin=f, capture_output=True)
        assert check.returncode == 0, check.stderr
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=release, capture_output=True, text=True)
    assert sums.returncode == 0 and sums.stdout.count(": OK") == 2
    statement = json.loads((release / "release.json").read_text())
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicate"]["image"] == "web" and statement["predicate"]["test"]["passed"] is True
    assert {s["name"] for s in statement["subject"]} == {"web-20261122.100000.qcow2", "web-20261122.100000.libvirt.box",
                                                         "manifest.json", "test-report.xml"}
    wrong_namespace = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", "golden", "-n", "file",
                                      "-s", str(release / "release.json.sig")],
                                     stdin=(release / "release.json").open("rb"), capture_output=True)
    assert wrong_namespace.returncode != 0  # a signature for golden releases is nothing else


def test_lab_up_verifies_boxes_from_a_catalog_when_signers_are_configured(artifact, keys, tmp_path, monkeypatch):
    from golden.lab import Machine, check_catalogs
    repo = tmp_path / "repo"
    publish(artifact(), repo, say=lambda *_: None)
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"golden {(keys.with_name(keys.name + '.pub')).read_text()}")
    monkeypatch.setenv("GOLDEN_ALLOWED_SIGNERS", str(signers))
    machines = [Machine("a", "web")]
    check_catalogs(machines, str(repo), tmp_path / "artifacts")  # signed and intact
    with (repo / "web" / "20261122.100000" / "web-20261122.100000.libvirt.box").open("r+b") as f:
        f.write(b"X")
    with pytest.raises(GoldenError, match="checksum mismatch: web-20261122.100000.libvirt.box: FAILED"):
        check_catalogs(machines, str(repo), tmp_path / "artifacts")


def test_a_revoked_version_is_withdrawn_and_refused(artifact, keys, target, tmp_path, monkeypatch):
    from golden.publish.release import revoke
    publish(artifact(), target.to, say=lambda *_: None)
    publish(artifact(version="20261123.100000"), target.to, say=lambda *_: None)
    signed_before = (target.root / "web" / "metadata.json").read_bytes()
    revoke(target.to, "web", "20261123.100000", "CVE-2026-0001 in the kernel", say=lambda *_: None)
    catalog = json.loads((target.root / "web" / "metadata.json").read_text())
    assert [v["version"] for v in catalog["versions"]] == ["20261122.100000"]  # Vagrant no longer offers it
    assert catalog["revoked"][0]["reason"] == "CVE-2026-0001 in the kernel"
    with pytest.raises(PublishError, match="web 20261123.100000 was revoked at .*: CVE-2026-0001 in the kernel"):
        verify(target.to, "web", "20261123.100000", say=lambda *_: None)
    assert verify(target.to, "web", say=lambda *_: None).rstrip("/").endswith("20261122.100000")  # newest offered
    with pytest.raises(PublishError, match="was revoked: publish the image under a new version"):
        publish(tmp_path / "artifacts" / "web" / "20261123.100000", target.to, force=True, say=lambda *_: None)
    # The old signed catalog served again (still offering it) does not bring it back: here its serial is
    # older than the one seen; on a machine that never saw the newer one, the version's own signed notice.
    (target.root / "web" / "metadata.json").write_bytes(signed_before)
    with pytest.raises(GoldenError, match="a rolled-back catalog"):
        verify(target.to, "web", "20261123.100000", say=lambda *_: None)
    monkeypatch.setenv("GOLDEN_STATE", str(tmp_path / "other-machine"))
    with pytest.raises(PublishError, match="web 20261123.100000 was revoked at .*: CVE-2026-0001"):
        verify(target.to, "web", "20261123.100000", say=lambda *_: None)


@pytest.mark.parametrize("version, reason, message", [
    ("../../x", "why", "is not a golden version"), ("20261122.100000", "two\nlines", "--reason: expected one line"),
    ("20261122.100000", " ", "--reason: expected one line"), ("20261124.100000", "why", "is not offered by"),
    ("20261122.100000", "esc \x1b[2J", "--reason: expected one line"),
    ("20261122.100000", "bidi \u202e", "--reason: expected one line"),
])
def test_revoke_refuses_bad_input(artifact, keys, tmp_path, version, reason, message):
    from golden.publish.release import revoke
    repo = tmp_path / "repo"
    publish(artifact(), repo, say=lambda *_: None)
    before = (repo / "web" / "metadata.json").read_text()
    with pytest.raises(PublishError, match=message):
        revoke(repo, "web", version, reason, say=lambda *_: None)
    assert (repo / "web" / "metadata.json").read_text() == before


def test_a_crash_in_the_middle_of_force_leaves_the_catalog_valid_and_complete(artifact, keys, target, tmp_path):
    publish(artifact(), target.to, say=lambda *_: None)
    before = (target.root / "web" / "metadata.json").read_text()
    (tmp_path / "artifacts").rename(tmp_path / "artifacts-1")
    big = artifact(disk_mb=400)  # the same version, other content
    code = ("import sys; from pathlib import Path; from golden.publish.release import publish; "
            f"publish(Path({str(big)!r}), {target.to!r}, force=True)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, TMPDIR=str(tmp_path)))  # its leftovers go with tmp_path
    deadline = time.monotonic() + 60
    while not list((target.root / "web").glob(".20261122.100000-*.tmp-*/*")):
        assert proc.poll() is None and time.monotonic() < deadline, "publish finished before it could be killed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (target.root / "web" / "metadata.json").read_text() == before
    verify(target.to, "web", say=lambda *_: None)  # the old release, whole and signed
    publish(big, target.to, force=True, say=lambda *_: None)  # and the replacement goes through afterwards
    assert verify(target.to, "web", say=lambda *_: None).rstrip("/").split("/")[-1].startswith("20261122.100000-")


def test_publish_refuses_a_catalog_someone_else_wrote(artifact, keys, tmp_path):
    repo = tmp_path / "repo"
    publish(artifact(), repo, say=lambda *_: None)
    catalog_path = repo / "web" / "metadata.json"
    _edit_json(catalog_path, lambda c: c["versions"].insert(0, dict(c["versions"][0], version="20991231.000000")))
    with pytest.raises(GoldenError, match="metadata.json: bad signature"):
        publish(artifact(version="20261123.100000"), repo, keep=1, say=lambda *_: None)
    assert (repo / "web" / "20261122.100000" / "release.json").is_file()  # nothing deleted


def test_keep_never_drops_the_version_being_published(artifact, keys, tmp_path):
    repo = tmp_path / "repo"
    publish(artifact(version="20261123.100000"), repo, say=lambda *_: None)
    with pytest.raises(GoldenError, match="--keep 1 would drop 20261122.100000, the version being published"):
        publish(artifact(), repo, keep=1, say=lambda *_: None)
    assert (repo / "web" / "20261123.100000" / "release.json").is_file()


def test_a_lock_symlinked_out_of_the_repository_is_refused(artifact, keys, tmp_path):
    repo, outside = tmp_path / "repo", tmp_path / "precious"
    outside.write_text("keep me")
    (repo / "web").mkdir(parents=True)
    (repo / "web" / ".publish.lock").symlink_to(outside)
    with pytest.raises(RepositoryError, match="cannot open the lock"):
        publish(artifact(), repo, say=lambda *_: None)
    assert outside.read_text() == "keep me"


def test_a_catalog_with_a_repeated_key_is_refused(artifact, keys, tmp_path):
    """Parsers disagree on which of two `versions` wins: golden takes neither."""
    repo = tmp_path / "repo"
    publish(artifact(), repo, say=lambda *_: None)
    catalog_path = repo / "web" / "metadata.json"
    text = catalog_path.read_text()
    catalog_path.write_text(text.replace('{', '{"versions": [], ', 1))
    with pytest.raises(GoldenError, match="metadata.json: a key appears twice"):
        verify(repo, "web", say=lambda *_: None)


def test_a_rolled_back_catalog_is_refused(artifact, keys, target, tmp_path, monkeypatch):
    """An older signed catalog served again, with its old files, would hide a
    newer version or a revocation: its serial is lower than one seen here."""
    from golden.publish.release import revoke
    catalog = target.root / "web" / "metadata.json"
    publish(artifact(), target.to, say=lambda *_: None)
    first = catalog.read_bytes()
    publish(artifact(version="20261123.100000"), target.to, say=lambda *_: None)
    before_revocation = catalog.read_bytes()
    revoke(target.to, "web", "20261123.100000", "bad kernel", say=lambda *_: None)
    assert json.loads(catalog.read_text())["golden_serial"] == 3
    verify(target.to, "web", say=lambda *_: None)
    catalog.write_bytes(before_revocation)  # the revoked version offered again, its notice gone
    (target.root / "web" / "20261123.100000" / "revocation.json").unlink()
    with pytest.raises(GoldenError, match=r"metadata.json: serial 2 \(signed .*\) is older than serial 3, seen here "
                                          r"on .*: a rolled-back catalog"):
        verify(target.to, "web", "20261123.100000", say=lambda *_: None)
    catalog.write_bytes(first)
    with pytest.raises(GoldenError, match="serial 1 .* is older than serial 3"):
        verify(target.to, "web", say=lambda *_: None)
    with pytest.raises(GoldenError, match="a rolled-back catalog"):  # nor does the publisher sign over it
        publish(artifact(version="20261124.100000"), target.to, say=lambda *_: None)
    assert catalog.read_bytes() == first
    # The limit the README states: a machine that never saw a newer catalog accepts this one.
    monkeypatch.setenv("GOLDEN_STATE", str(tmp_path / "other-machine"))
    verify(target.to, "web", say=lambda *_: None)


def test_a_damaged_serial_record_is_named(artifact, keys, tmp_path):
    repo = tmp_path / "repo"
    publish(artifact(), repo, say=lambda *_: None)
    (tmp_path / "state" / "catalog-serials.json").write_text("{not json")
    with pytest.raises(GoldenError, match=r"state/catalog-serials.json: damaged .*: move it away"):
        verify(repo, "web", say=lambda *_: None)
    (tmp_path / "state" / "catalog-serials.json").write_text('{"file:///x": {"serial": "5"}}')
    with pytest.raises(GoldenError, match=r"state/catalog-serials.json: damaged"):
        verify(repo, "web", say=lambda *_: None)


def test_releases_lists_offered_and_revoked_versions(artifact, keys, tmp_path):
    from golden.publish.release import list_releases, revoke
    repo = tmp_path / "repo"
    for version in ("20261122.100000", "20261123.100000", "20261124.100000"):
        publish(artifact(version=version), repo, say=lambda *_: None)
    revoke(repo, "web", "20261123.100000", "CVE-2026-0002 in openssl", say=lambda *_: None)
    listing = list_releases(repo, "web")
    assert listing["serial"] == 4 and listing["signed_at"]
    assert [(r["version"], r["state"]) for r in listing["releases"]] == [
        ("20261124.100000", "offered"), ("20261123.100000", "revoked"), ("20261122.100000", "offered")]
    assert listing["releases"][1]["reason"] == "CVE-2026-0002 in openssl"

    def releases(*args):
        return subprocess.run([sys.executable, "-m", "invoke", "releases", "--from", str(repo), "--image", "web",
                               *args], cwd=REPO, capture_output=True, text=True, env=dict(os.environ))
    shown = releases()
    assert shown.returncode == 0, shown.stderr
    assert "20261123.100000  REVOKED  " in shown.stdout and ": CVE-2026-0002 in openssl" in shown.stdout
    assert "20261124.100000  offered  " in shown.stdout and "(serial 4, signed " in shown.stdout
    assert releases("--version", "20261122.100000").returncode == 0
    revoked = releases("--version", "20261123.100000")
    assert revoked.returncode == 1 and "error: web 20261123.100000 was revoked at " in revoked.stderr
    unknown = releases("--version", "20261125.100000")
    assert unknown.returncode == 1 and "error: web 20261125.100000 is not offered by" in unknown.stderr
    assert json.loads(releases("--json").stdout)["releases"][1]["state"] == "revoked"


def test_the_upload_refuses_bytes_other_than_the_ones_hashed(artifact, keys, target, tmp_path):
    """What the upload sent is hashed on the way; bytes other than the ones
    the statement names (a file changed after hashing) are never moved into place."""
    from golden.publish.release import _upload_version
    from golden.publish.repository import open_repository
    data = tmp_path / "disk.img"
    data.write_bytes(b"changed after it was hashed\n")
    repo = open_repository(target.to)
    with pytest.raises(PublishError, match="web 20261122.100000: disk.img changed while publishing: not published"):
        _upload_version(repo, [(data, "disk.img")], {"disk.img": "0" * 64}, "web/20261122.100000/",
                        say=lambda *_: None)
    assert repo.read("web/20261122.100000/disk.img") is None
    assert not (target.root / "web").exists() or not any((target.root / "web").iterdir())  # no staging left


def test_lab_hands_vagrant_the_catalog_it_checked(artifact, keys, tmp_path, monkeypatch):
    """lab.up reads a published catalog once, checks it and gives Vagrant that
    copy: a box changed in the repository after the check fails Vagrant's own
    checksum test against the checked catalog."""
    import golden.lab
    from golden.lab import Machine, check_catalogs
    monkeypatch.setattr(golden.lab, "STATE_DIR", tmp_path / ".lab")
    repo = tmp_path / "repo"
    publish(artifact(), repo, say=lambda *_: None)
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"golden {(keys.with_name(keys.name + '.pub')).read_text()}")
    monkeypatch.setenv("GOLDEN_ALLOWED_SIGNERS", str(signers))
    base, versions = check_catalogs([Machine("a", "web")], str(repo), tmp_path / "artifacts")
    assert versions == {"web": "20261122.100000"}  # Vagrant is held to the version checked
    copy = tmp_path / ".lab" / "catalog" / "web" / "metadata.json"
    assert base == str(copy.parent.parent) and copy.read_bytes() == (repo / "web" / "metadata.json").read_bytes()

    def box_add(home):
        env = dict(os.environ, VAGRANT_HOME=str(tmp_path / home), VAGRANT_CHECKPOINT_DISABLE="1",
                   VAGRANT_NO_COLOR="1")
        return subprocess.run(["vagrant", "box", "add", "--provider", "libvirt", copy.as_uri()],
                              capture_output=True, text=True, env=env, cwd=tmp_path)
    added = box_add("vagrant.d")
    assert added.returncode == 0, added.stdout + added.stderr
    with (repo / "web" / "20261122.100000" / "web-20261122.100000.libvirt.box").open("ab") as f:
        f.write(b"swapped after the check")
    swapped = box_add("vagrant-2.d")
    assert swapped.returncode != 0
    assert "checksum" in (swapped.stdout + swapped.stderr).lower(), swapped.stdout + swapped.stderr


def test_a_deleted_catalog_is_not_replaced_by_a_lower_serial(artifact, keys, tmp_path):
    """Someone deletes metadata.json: publishing a new catalog (serial 1, no
    revoked list) would undo history; the publisher is told to restore it."""
    repo = tmp_path / "repo"
    publish(artifact(), repo, say=lambda *_: None)
    (repo / "web" / "metadata.json").unlink()
    with pytest.raises(PublishError, match=r"metadata.json is gone, but serial 1 was seen here: restore it"):
        publish(artifact(version="20261123.100000"), repo, say=lambda *_: None)
    assert not (repo / "web" / "metadata.json").exists() and not (repo / "web" / "20261123.100000").exists()


def test_another_images_catalog_is_refused(artifact, keys, tmp_path):
    """Signed by the same key, but of another image: never read as this one's."""
    from golden.publish.release import _write_catalog
    repo = tmp_path / "repo"
    publish(artifact(), repo, say=lambda *_: None)
    # web-open's catalog after its only version was revoked: signed, no versions in it.
    (repo / "web-open").mkdir()
    _write_catalog(DirectoryRepository(repo), "web-open", {"name": "golden/web-open", "description": "",
                                                            "versions": []}, keys, tmp_path)
    shutil.copyfile(repo / "web-open" / "metadata.json", repo / "web" / "metadata.json")
    with pytest.raises(PublishError, match=r"web/metadata.json: the catalog of 'golden/web-open', not of golden/web"):
        verify(repo, "web", say=lambda *_: None)


def test_releases_version_check_reads_the_revocation_notice(artifact, keys, tmp_path, monkeypatch):
    """On a machine that never saw the newer catalog (a CI host), an old
    catalog still offering a revoked version: its signed notice refuses it."""
    from golden.publish.release import check_offered, revoke
    repo = tmp_path / "repo"
    publish(artifact(), repo, say=lambda *_: None)
    old = (repo / "web" / "metadata.json").read_bytes()
    revoke(repo, "web", "20261122.100000", "bad kernel", say=lambda *_: None)
    (repo / "web" / "metadata.json").write_bytes(old)
    monkeypatch.setenv("GOLDEN_STATE", str(tmp_path / "ci-host"))
    with pytest.raises(PublishError, match="web 20261122.100000 was revoked at .*: bad kernel"):
        check_offered(repo, "web", "20261122.100000")


def test_a_catalog_with_a_bad_signature_leaves_the_serials_alone(artifact, keys, tmp_path):
    repo = tmp_path / "repo"
    publish(artifact(), repo, say=lambda *_: None)
    serials = (tmp_path / "state" / "catalog-serials.json").read_text()
    _edit_json(repo / "web" / "metadata.json", lambda c: c.update(golden_serial=99))
    with pytest.raises(GoldenError, match="metadata.json: bad signature"):
        verify(repo, "web", say=lambda *_: None)
    assert (tmp_path / "state" / "catalog-serials.json").read_text() == serials


@pytest.mark.parametrize("serial", [True, 1.0, -1, "2"])
def test_a_serial_that_is_not_a_whole_number_is_refused(serial):
    from golden.publish.catalog import CatalogError, catalog_serial
    with pytest.raises(CatalogError, match="golden_serial: expected a whole number"):
        catalog_serial({"golden_serial": serial}, "metadata.json")
