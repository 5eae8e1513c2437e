"""./inv publish and ./inv verify: only tested images reach a box repository.

Repository layout (a directory or an http(s):// WebDAV base URL, see
golden.repository):
    <target>/<name>/<version>/   box, qcow2, manifest.json, SHA256SUMS, SHA256SUMS.sig
    <target>/<name>/metadata.json   Vagrant box catalog, replaced atomically, written last

Publishing refuses, before uploading anything, an image without a passing
test verdict (`--force` never bypasses that), one whose files no longer match
their checksums, and a version already published with different content.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from golden.build.cache import sha256_file
from golden.build.stages.package import sha256sums_text
from golden.publish.catalog import CATALOG, box_file, catalog_versions, new_catalog, version_key, with_version
from golden import settings
from golden.errors import GoldenError
from golden.build.manifest import read_manifest
from golden.publish.repository import open_repository

SIGNATURE_NAMESPACE = "file"
SIGNER_IDENTITY = "golden"


class PublishError(GoldenError):
    pass


def signing_key() -> Path:
    """The SSH private key SHA256SUMS is signed with: $GOLDEN_SIGNING_KEY, or
    ~/.config/golden/signing_key."""
    path = settings.signing_key()
    if not path.is_file():
        raise PublishError(f"no signing key at {path}: create one with "
                           f"`ssh-keygen -t ed25519 -N '' -f {path}` or set GOLDEN_SIGNING_KEY")
    return path


def check_publishable(artifact: Path) -> dict:
    """The gate: a passing test verdict and untouched files, or PublishError."""
    manifest_path = artifact / "manifest.json"
    if not manifest_path.is_file():
        raise PublishError(f"{artifact}: no manifest.json: not a built artifact")
    manifest = read_manifest(manifest_path)
    verdict = manifest.get("test")
    where = f"{manifest['name']} {manifest['version']}"
    if manifest.get("test_only"):
        raise PublishError(f"{where}: built from a test-only spec (tests/images): never published")
    if not verdict:
        raise PublishError(f"{where}: not tested: run ./inv test first")
    if not verdict.get("passed"):
        raise PublishError(f"{where}: its test failed ({verdict.get('failures')} failures): not publishing")
    for entry in manifest["files"]:
        path = artifact / entry["name"]
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            raise PublishError(f"{where}: {entry['name']} does not match the checksum it was tested with")
    _check_sums(artifact, manifest, where)
    return manifest


def _check_sums(artifact: Path, manifest: dict, where: str) -> bytes:
    """The artifact's SHA256SUMS, refused unless it says exactly what the manifest's tested files are."""
    sums = (artifact / "SHA256SUMS").read_bytes() if (artifact / "SHA256SUMS").is_file() else b""
    if sums != sha256sums_text(manifest["files"]).encode():
        raise PublishError(f"{where}: SHA256SUMS differs from the checksums the image was tested with")
    return sums


def sign(sums: Path, key: Path) -> Path:
    proc = subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", SIGNATURE_NAMESPACE, str(sums)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise PublishError(f"signing {sums.name} failed: {proc.stderr.strip()}")
    return sums.with_name(sums.name + ".sig")


def _read_catalog(repo, name: str) -> dict | None:
    raw = repo.read(f"{name}/metadata.json")
    if raw is None:
        return None
    try:
        catalog = json.loads(raw)
    except ValueError:
        raise PublishError(f"{repo.url(name + '/metadata.json')}: the catalog is not valid JSON") from None
    catalog_versions(catalog, repo.url(name + "/metadata.json"))  # before any version is used
    return catalog


def publish(artifact: Path, target, force: bool = False, keep: int | None = None, say=print) -> str:
    """Publishes a tested artifact; returns the URL of its version directory."""
    manifest = check_publishable(artifact)  # never bypassed, not even by force
    key = signing_key()
    repo = open_repository(target)
    name, version = manifest["name"], manifest["version"]
    final = f"{name}/{version}/"
    with repo.lock(name), tempfile.TemporaryDirectory(prefix="golden-publish-") as scratch:
        ours = _check_sums(artifact, manifest, f"{name} {version}")  # again, under the lock
        theirs = repo.read(final + "SHA256SUMS")
        if theirs is not None and theirs != ours and not force:
            raise PublishError(f"{name} {version} is already published with different content "
                               f"({repo.url(final)}); use --force to replace it")
        catalog = _read_catalog(repo, name) or new_catalog(manifest)
        sums = Path(scratch) / "SHA256SUMS"
        sums.write_bytes(ours)
        uploads = [artifact / e["name"] for e in manifest["files"]] + \
                  [artifact / "manifest.json", sums, sign(sums, key), key.with_name(key.name + ".pub")]
        staging = f"{name}/.{version}.tmp-{os.getpid()}/"
        try:
            tested = {e["name"]: e["sha256"] for e in manifest["files"]}
            for path in uploads:
                say(f"  upload {path.name}")
                remote = "signing-key.pub" if path.name == key.name + ".pub" else path.name
                sent = repo.upload(path, staging + remote)
                if path.name in tested and sent != tested[path.name]:  # the bytes sent, hashed as they went
                    raise PublishError(f"{name} {version}: {path.name} changed while publishing: not published")
            repo.move(staging, final)
        finally:
            repo.delete(staging)
        for entry in manifest["files"]:  # what was written reads back intact
            if repo.sha256(final + entry["name"]) != entry["sha256"]:
                raise PublishError(f"{repo.url(final + entry['name'])}: checksum mismatch after publishing")

        catalog, dropped = with_version(catalog, manifest, repo.url(final + box_file(manifest)["name"]), keep)
        catalog_file = Path(scratch) / CATALOG
        catalog_file.write_text(json.dumps(catalog, indent=2, sort_keys=True) + "\n")
        tmp = f"{name}/.{CATALOG}.tmp-{os.getpid()}"
        repo.upload(catalog_file, tmp)
        repo.move(tmp, f"{name}/{CATALOG}")  # last: clients never see missing files
        for old in dropped:
            repo.delete(f"{name}/{old}/")
    say(f"{name} {version}: published to {repo.url(final)}; catalog {repo.url(name + '/metadata.json')}")
    return repo.url(final)


def verify(source, name: str, version: str | None = None, allowed_signers: Path | None = None,
           say=print) -> str:
    """Checks the signature of SHA256SUMS and every file listed in it,
    streaming each published file through sha256."""
    repo = open_repository(source)
    catalog = _read_catalog(repo, name)
    if catalog is None:
        raise PublishError(f"no catalog for {name!r} at {repo.url(name + '/metadata.json')}")
    versions = catalog_versions(catalog, repo.url(name + "/metadata.json"))
    if not versions:
        raise PublishError(f"{repo.url(name + '/metadata.json')}: no published versions")
    version = version or max(versions, key=version_key)
    if version not in versions:
        raise PublishError(f"{name} {version} is not in the catalog (published: {', '.join(versions)})")
    where = f"{name}/{version}/"
    sums, sig = repo.read(where + "SHA256SUMS"), repo.read(where + "SHA256SUMS.sig")
    if sums is None:
        raise PublishError(f"{name} {version}: no SHA256SUMS at {repo.url(where)}")
    if sig is None:
        raise PublishError(f"{name} {version}: SHA256SUMS is not signed")
    with tempfile.TemporaryDirectory(prefix="golden-verify-") as scratch:
        (Path(scratch) / "SHA256SUMS.sig").write_bytes(sig)
        proc = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed_signers or _default_allowed_signers()),
                               "-I", SIGNER_IDENTITY, "-n", SIGNATURE_NAMESPACE,
                               "-s", str(Path(scratch) / "SHA256SUMS.sig")], input=sums, capture_output=True)
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        raise PublishError(f"{name} {version}: bad signature on SHA256SUMS: {why}")
    bad = []
    for line in sums.decode().splitlines():
        digest, file_name = line.split(maxsplit=1)
        file_name = file_name.lstrip("*")
        got = repo.sha256(where + file_name)
        if got != digest:
            bad.append(f"{file_name}: {'MISSING' if got is None else 'FAILED'}")
    if bad:
        raise PublishError(f"{name} {version}: checksum mismatch: {'; '.join(bad)}")
    say(f"{name} {version}: signature and checksums OK")
    return repo.url(where)
def _default_allowed_signers() -> Path:
    """$GOLDEN_ALLOWED_SIGNERS, or an allowed-signers file made from the
    signing key's public half (ssh-keygen's format: `golden <public key>`)."""
    if settings.allowed_signers():
        return settings.allowed_signers()
    public = signing_key().with_name(signing_key().name + ".pub")
    path = public.with_name("allowed_signers")
    path.write_text(f"{SIGNER_IDENTITY} {public.read_text().strip()}\n")
    return path
