"""./inv publish and ./inv verify: only tested images reach a box repository.

Repository layout (a directory; HTTP targets are not supported yet):
    <target>/<name>/<version>/   box, qcow2, manifest.json, SHA256SUMS, SHA256SUMS.sig
    <target>/<name>/metadata.json   Vagrant box catalog, replaced atomically, written last

Publishing refuses, before copying anything, an image without a passing test
verdict (`--force` never bypasses that), one whose files no longer match
their checksums, and a version already published with different content.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

from golden.errors import GoldenError
from golden.manifest import read_manifest
from golden.package import sha256_file

SIGNATURE_NAMESPACE = "file"
SIGNER_IDENTITY = "golden"


class PublishError(GoldenError):
    pass


def signing_key() -> Path:
    """The SSH private key SHA256SUMS is signed with: $GOLDEN_SIGNING_KEY, or
    ~/.config/golden/signing_key."""
    path = Path(os.environ.get("GOLDEN_SIGNING_KEY") or Path.home() / ".config" / "golden" / "signing_key")
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
    if not verdict:
        raise PublishError(f"{where}: not tested: run ./inv test first")
    if not verdict.get("passed"):
        raise PublishError(f"{where}: its test failed ({verdict.get('failures')} failures): not publishing")
    for entry in manifest["files"]:
        path = artifact / entry["name"]
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            raise PublishError(f"{where}: {entry['name']} does not match the checksum it was tested with")
    return manifest


@contextmanager
def _lock(image_dir: Path):
    image_dir.mkdir(parents=True, exist_ok=True)
    with (image_dir / ".publish.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # concurrent publishes of one image take turns
        yield


def sign(sums: Path, key: Path) -> Path:
    proc = subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", SIGNATURE_NAMESPACE, str(sums)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise PublishError(f"signing {sums.name} failed: {proc.stderr.strip()}")
    return sums.with_name(sums.name + ".sig")


def _box_file(manifest: dict) -> dict:
    return next(f for f in manifest["files"] if f["name"].endswith(".libvirt.box"))


def _write_json_atomically(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _catalog_entry(manifest: dict, version_dir: Path) -> dict:
    box = _box_file(manifest)
    return {"version": manifest["version"],
            "providers": [{"name": "libvirt", "url": (version_dir / box["name"]).resolve().as_uri(),
                           "checksum_type": "sha256", "checksum": box["sha256"], "architecture": "amd64"}]}


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def publish(artifact: Path, target: Path, force: bool = False, keep: int | None = None, say=print) -> Path:
    manifest = check_publishable(artifact)  # never bypassed, not even by force
    key = signing_key()
    name, version = manifest["name"], manifest["version"]
    image_dir = Path(target) / name
    with _lock(image_dir):
        final = image_dir / version
        ours = (artifact / "SHA256SUMS").read_text()
        if final.exists():
            theirs = (final / "SHA256SUMS").read_text() if (final / "SHA256SUMS").is_file() else ""
            if theirs != ours and not force:
                raise PublishError(f"{name} {version} is already published with different content "
                                   f"({final}); use --force to replace it")
        staging = image_dir / f".{version}.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            for entry in manifest["files"]:
                shutil.copyfile(artifact / entry["name"], staging / entry["name"])
            for extra in ("SHA256SUMS", "manifest.json"):
                shutil.copyfile(artifact / extra, staging / extra)
            sign(staging / "SHA256SUMS", key)
            shutil.copyfile(key.with_name(key.name + ".pub"), staging / "signing-key.pub")
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _verify_files(final, manifest)  # what was written reads back intact

        catalog_path = image_dir / "metadata.json"
        catalog = json.loads(catalog_path.read_text()) if catalog_path.is_file() else \
            {"name": f"golden/{name}", "description": manifest.get("description", ""), "versions": []}
        catalog["versions"] = [v for v in catalog["versions"] if v["version"] != version]
        catalog["versions"].append(_catalog_entry(manifest, final))
        catalog["versions"].sort(key=lambda v: _version_key(v["version"]), reverse=True)
        dropped = catalog["versions"][keep:] if keep else []
        catalog["versions"] = catalog["versions"][:keep] if keep else catalog["versions"]
        _write_json_atomically(catalog_path, catalog)  # last: clients never see missing files
        for old in dropped:
            shutil.rmtree(image_dir / old["version"], ignore_errors=True)
    say(f"{name} {version}: published to {final}; catalog {catalog_path}")
    return final


def _verify_files(version_dir: Path, manifest: dict) -> None:
    for entry in manifest["files"]:
        if sha256_file(version_dir / entry["name"]) != entry["sha256"]:
            raise PublishError(f"{version_dir / entry['name']}: checksum mismatch after publishing")


def verify(source: Path, name: str, version: str | None = None, allowed_signers: Path | None = None,
           say=print) -> Path:
    """Checks the signature of SHA256SUMS and every file listed in it."""
    catalog_path = Path(source) / name / "metadata.json"
    if not catalog_path.is_file():
        raise PublishError(f"no catalog for {name!r} at {catalog_path}")
    versions = [v["version"] for v in json.loads(catalog_path.read_text())["versions"]]
    if not versions:
        raise PublishError(f"{catalog_path}: no published versions")
    version = version or max(versions, key=_version_key)
    if version not in versions:
        raise PublishError(f"{name} {version} is not in the catalog (published: {', '.join(versions)})")
    version_dir = Path(source) / name / version
    sums, sig = version_dir / "SHA256SUMS", version_dir / "SHA256SUMS.sig"
    if not sig.is_file():
        raise PublishError(f"{name} {version}: SHA256SUMS is not signed")
    signers = allowed_signers or _default_allowed_signers()
    with sums.open("rb") as data:
        proc = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", SIGNER_IDENTITY,
                               "-n", SIGNATURE_NAMESPACE, "-s", str(sig)], stdin=data, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PublishError(f"{name} {version}: bad signature on SHA256SUMS: {proc.stderr.strip() or proc.stdout.strip()}")
    check = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=version_dir,
                           capture_output=True, text=True)
    if check.returncode != 0:
        bad = [l for l in check.stdout.splitlines() if not l.endswith(": OK")]
        raise PublishError(f"{name} {version}: checksum mismatch: {'; '.join(bad) or check.stderr.strip()}")
    say(f"{name} {version}: signature and checksums OK")
    return version_dir


def _default_allowed_signers() -> Path:
    """$GOLDEN_ALLOWED_SIGNERS, or an allowed-signers file made from the
    signing key's public half (ssh-keygen's format: `golden <public key>`)."""
    if os.environ.get("GOLDEN_ALLOWED_SIGNERS"):
        return Path(os.environ["GOLDEN_ALLOWED_SIGNERS"])
    public = signing_key().with_name(signing_key().name + ".pub")
    path = public.with_name("allowed_signers")
    path.write_text(f"{SIGNER_IDENTITY} {public.read_text().strip()}\n")
    return path
