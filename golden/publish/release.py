"""./inv publish and ./inv verify: only tested images reach a box repository,
and users can check that what was tested is what they download.

Repository layout (a directory or an http(s):// WebDAV base URL, see
golden.publish.repository):
    <target>/<name>/<version>/   box, qcow2, manifest.json, the JUnit reports,
                                 release.json + .sig (the signed statement, see
                                 golden.publish.statement), SHA256SUMS + .sig,
                                 signing-key.pub
    <target>/<name>/metadata.json   Vagrant box catalog with its signature
                                    inside, replaced atomically, written last

Publishing refuses, before uploading anything, an image without a passing
test verdict (`--force` never bypasses that), one whose files no longer match
their checksums, and a version already published with different content.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from golden import settings
from golden.build.cache import sha256_file
from golden.build.manifest import read_manifest
from golden.build.stages.package import sha256sums_text
from golden.errors import GoldenError, printable
from golden.publish.catalog import (CATALOG, SERIAL, SIGNED_AT, VERSION_RE, box_file, catalog_serial,
                                    catalog_versions, new_catalog, remember_serial, seen_serial, utc_now,
                                    version_key,
                                    with_version)
from golden.publish.repository import open_repository
from golden.publish.statement import (SIGNER_IDENTITY, STATEMENT, canonical, make_statement, sign_bytes,
                                      statement_bytes, strict_json, verify_bytes)

REVOCATION = "revocation.json"
CATALOG_SIGNATURE = "golden_signature"  # a key of the catalog itself: catalog and signature change at once


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


def check_publishable(artifact: Path, manifest_path: Path | None = None) -> dict:
    """The gate: a passing test verdict and untouched files, or PublishError.
    manifest_path: a copy of the artifact's manifest.json (the one published)."""
    manifest_path = manifest_path or artifact / "manifest.json"
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


def _read_catalog(repo, name: str, signers: Path | None, raw: bytes | None = None) -> dict | None:
    """The repository's catalog (or raw, its bytes read before), None when
    there is none. Refused unless the allowed signer signed it, unless every
    version and release directory in it is golden's own, and when it is older
    than one seen here before: publish, revoke and verify act on nothing else."""
    url = repo.url(name + "/metadata.json")
    raw = raw if raw is not None else repo.read(f"{name}/metadata.json")
    if raw is None:
        return None
    signers = signers or _default_allowed_signers()
    catalog = strict_json(raw, url)
    signature = catalog.get(CATALOG_SIGNATURE)
    if not isinstance(signature, str):
        raise PublishError(f"{url}: the catalog is not signed (an older golden's? move it away to start anew)")
    verify_bytes(canonical(catalog, CATALOG_SIGNATURE), signature.encode(), "catalog", signers, url)
    if catalog.get("name") != f"golden/{name}":
        raise PublishError(f"{url}: the catalog of {printable(catalog.get('name'))!r}, not of golden/{name}")
    versions = catalog_versions(catalog, url)  # before any version is used
    if len(set(versions)) != len(versions):
        raise PublishError(f"{url}: a version is listed twice")
    for entry in catalog["versions"]:
        release_dir(repo, name, entry)
    remember_serial(url, catalog)
    return catalog


def publish(artifact: Path, target, force: bool = False, keep: int | None = None, say=print) -> str:
    """Publishes a tested artifact; returns the URL of its release directory.
    A version replaced with --force goes to a new directory; the catalog then
    points there, and only then are the old files removed: at every moment
    the catalog points at complete files."""
    manifest = check_publishable(artifact)  # fails fast; checked again under the lock
    key, signers = signing_key(), _default_allowed_signers()
    repo = open_repository(target)
    name, version = manifest["name"], manifest["version"]
    with repo.lock(name), tempfile.TemporaryDirectory(prefix="golden-publish-") as scratch:
        shutil.copyfile(artifact / "manifest.json", Path(scratch) / "manifest.json")  # the bytes published
        manifest = check_publishable(artifact, Path(scratch) / "manifest.json")
        sums = _check_sums(artifact, manifest, f"{name} {version}")
        catalog = _read_catalog(repo, name, signers) or _first_catalog(repo, manifest)
        if any(r.get("version") == version for r in catalog.get("revoked", [])):
            raise PublishError(f"{name} {version} was revoked: publish the image under a new version")
        current = next((release_dir(repo, name, e) for e in catalog["versions"] if e["version"] == version), None)
        directory = _release_directory(repo, name, version, current, sums, force)
        final = f"{name}/{directory}/"
        if directory != current:
            uploads, expected = _release_files(artifact, manifest, sums, key, Path(scratch))
            _upload_version(repo, uploads, expected, final, say)
        catalog, dropped = with_version(catalog, manifest, repo.url(final + box_file(manifest)["name"]), keep)
        stale = [release_dir(repo, name, e) for e in dropped] + ([current] if current not in (None, directory) else [])
        _write_catalog(repo, name, catalog, key, Path(scratch))
        for old in stale:
            repo.delete(f"{name}/{old}/")
    say(f"{name} {version}: published to {repo.url(final)}; catalog {repo.url(name + '/metadata.json')}")
    return repo.url(final)


def _first_catalog(repo, manifest: dict) -> dict:
    """A new catalog, unless this machine has seen one at that URL: a catalog
    that disappeared is restored, not replaced by one with a lower serial."""
    url = repo.url(f"{manifest['name']}/{CATALOG}")
    if seen_serial(url) is not None:
        raise PublishError(f"{url} is gone, but serial {seen_serial(url)} was seen here: restore it (from a backup "
                           "of the repository) or, to start the repository anew, remove its entry from "
                           f"{settings.state_dir() / 'catalog-serials.json'}")
    return new_catalog(manifest)


def _release_directory(repo, name: str, version: str, current: str | None, sums: bytes, force: bool) -> str:
    """Where this release goes: <version>/ the first time; the current
    directory again when it holds exactly this release (signed); with --force,
    a new <version>-<digest>/ beside the current one."""
    if current is None:
        return version
    theirs = repo.read(f"{name}/{current}/SHA256SUMS")
    if theirs == sums and repo.read(f"{name}/{current}/{STATEMENT}.sig") is not None:
        return current
    if not force:
        raise PublishError(f"{name} {version} is already published with different content "
                           f"({repo.url(f'{name}/{current}/')}); use --force to replace it")
    return f"{version}-{hashlib.sha256(sums).hexdigest()[:12]}"


def release_dir(repo, name: str, entry: dict) -> str:
    """The directory a catalog entry's box is in: its version, or its version
    and a content digest after a --force replacement. Anything else is refused."""
    version = entry["version"]
    url = ((entry.get("providers") or [{}])[0]).get("url", "")
    prefix, box = repo.url(name).rstrip("/") + "/", f"/{name}-{version}.libvirt.box"
    directory = url[len(prefix):-len(box)] if url.startswith(prefix) and url.endswith(box) else ""
    if not re.fullmatch(rf"{re.escape(version)}(-[0-9a-f]{{12}})?", directory):
        raise PublishError(f"{repo.url(name + '/metadata.json')}: the entry of {version} points outside its "
                           f"release directory ({url!r})")
    return directory


def _release_files(artifact: Path, manifest: dict, sums: bytes, key: Path, scratch: Path):
    """What goes into the version directory, as (local file, remote name), and
    the sha256 each must have on the way. manifest.json and the reports are
    copied first, so that the bytes hashed into the statement are the bytes sent."""
    copies = {"manifest.json": scratch / "manifest.json"}  # copied when the gate ran on it
    for name in manifest["test"].get("reports", []):
        if not (artifact / name).is_file():
            raise PublishError(f"{manifest['name']} {manifest['version']}: {name}, a report of its test, is missing")
        copies[name] = scratch / name
        shutil.copyfile(artifact / name, copies[name])
    digests = {e["name"]: e["sha256"] for e in manifest["files"]} | \
        {name: sha256_file(path) for name, path in copies.items()}
    reports = {n: d for n, d in digests.items() if n in copies and n != "manifest.json"}
    statement = statement_bytes(make_statement(manifest, digests, digests["manifest.json"], reports))
    documents = {STATEMENT: statement, STATEMENT + ".sig": sign_bytes(statement, key, "release"),
                 "SHA256SUMS": sums, "SHA256SUMS.sig": sign_bytes(sums, key, "sums")}
    for name, data in documents.items():
        (scratch / name).write_bytes(data)
    uploads = [(artifact / e["name"], e["name"]) for e in manifest["files"]] + \
        [(path, name) for name, path in copies.items()] + [(scratch / name, name) for name in documents] + \
        [(key.with_name(key.name + ".pub"), "signing-key.pub")]
    return uploads, digests


def _upload_version(repo, uploads: list[tuple[Path, str]], expected: dict[str, str], final: str, say) -> None:
    """Uploads into a staging directory, then moves it into place."""
    staging = final.rstrip("/").rpartition("/")
    staging = f"{staging[0]}/.{staging[2]}.tmp-{os.getpid()}/"
    try:
        for path, remote in uploads:
            say(f"  upload {remote}")
            sent = repo.upload(path, staging + remote)
            if remote in expected and sent != expected[remote]:  # the bytes sent, hashed as they went
                raise PublishError(f"{final.rstrip('/').replace('/', ' ')}: {remote} changed while publishing: "
                                   "not published")
        repo.move(staging, final)
    finally:
        repo.delete(staging)
    for remote, digest in expected.items():  # what was written reads back intact
        if repo.sha256(final + remote) != digest:
            raise PublishError(f"{repo.url(final + remote)}: checksum mismatch after publishing")


def _write_catalog(repo, name: str, catalog: dict, key: Path, scratch: Path) -> None:
    catalog = dict(catalog)
    catalog.pop(CATALOG_SIGNATURE, None)
    catalog[SERIAL], catalog[SIGNED_AT] = catalog_serial(catalog, "the catalog") + 1, utc_now()
    catalog[CATALOG_SIGNATURE] = sign_bytes(canonical(catalog, CATALOG_SIGNATURE), key, "catalog").decode()
    catalog_file = scratch / CATALOG
    catalog_file.write_text(json.dumps(catalog, indent=2, sort_keys=True) + "\n")
    tmp = f"{name}/.{CATALOG}.tmp-{os.getpid()}"
    repo.upload(catalog_file, tmp)
    repo.move(tmp, f"{name}/{CATALOG}")  # last: clients never see missing files
    remember_serial(repo.url(f"{name}/{CATALOG}"), catalog)


def revoke(target, name: str, version: str, reason: str, say=print) -> None:
    """Withdraws a published version: a signed revocation.json in its
    directory, and the signed catalog no longer offers it (its `revoked` list
    says why). The files stay, so what was revoked can still be examined."""
    if not VERSION_RE.fullmatch(version):
        raise PublishError(f"--version: {version!r} is not a golden version (YYYYMMDD.HHMMSS)")
    if not reason.strip() or len(reason) > 300 or not reason.isprintable():
        raise PublishError("--reason: expected one line of text (at most 300 characters)")
    key, signers = signing_key(), _default_allowed_signers()
    repo = open_repository(target)
    with repo.lock(name), tempfile.TemporaryDirectory(prefix="golden-revoke-") as scratch:
        catalog = _read_catalog(repo, name, signers)
        if catalog is None or version not in catalog_versions(catalog, repo.url(name + "/metadata.json")):
            raise PublishError(f"{name} {version} is not offered by {repo.url(name + '/metadata.json')}")
        where = f"{name}/{release_dir(repo, name, next(e for e in catalog['versions'] if e['version'] == version))}/"
        notice = {"image": name, "version": version, "reason": reason.strip(),
                  "revoked_at": utc_now()}
        document = (json.dumps(notice, indent=2, sort_keys=True) + "\n").encode()
        for file_name, data in ((REVOCATION, document), (REVOCATION + ".sig", sign_bytes(document, key, "revocation"))):
            (Path(scratch) / file_name).write_bytes(data)
            repo.upload(Path(scratch) / file_name, where + file_name)
        catalog = dict(catalog, versions=[v for v in catalog["versions"] if v["version"] != version],
                       revoked=[r for r in catalog.get("revoked", []) if r.get("version") != version] + [notice])
        _write_catalog(repo, name, catalog, key, Path(scratch))
    say(f"{name} {version}: revoked ({reason.strip()}); the catalog no longer offers it")


def list_releases(source, name: str, allowed_signers: Path | None = None) -> dict:
    """What the signed catalog says of every version: offered (newest first,
    with its release directory) or revoked (when and why). Nothing downloaded
    but the catalog."""
    repo = open_repository(source)
    url = repo.url(f"{name}/{CATALOG}")
    catalog = _read_catalog(repo, name, allowed_signers)
    if catalog is None:
        raise PublishError(f"no catalog for {name!r} at {url}")
    rows = [{"version": e["version"], "state": "offered", "url": repo.url(f"{name}/{release_dir(repo, name, e)}/")}
            for e in catalog["versions"]] + \
           [{"version": r["version"], "state": "revoked", "revoked_at": r.get("revoked_at"), "reason": r.get("reason")}
            for r in catalog.get("revoked", [])]
    rows.sort(key=lambda r: version_key(r["version"]), reverse=True)
    return {"catalog": url, "serial": catalog_serial(catalog, url), "signed_at": catalog.get(SIGNED_AT),
            "releases": rows}


def releases_text(listing: dict) -> str:
    lines = [f"{listing['catalog']} (serial {listing['serial']}, signed {listing['signed_at'] or 'before serials'})"]
    for r in listing["releases"]:
        lines.append(f"  {r['version']}  offered  {r['url']}" if r["state"] == "offered" else
                     f"  {r['version']}  REVOKED  {printable(r['revoked_at'])}: {printable(r['reason'])}")
    return "\n".join(lines)


def check_offered(source, name: str, version: str, allowed_signers: Path | None = None) -> None:
    """Refused (PublishError) unless the signed catalog offers version and
    no signed revocation notice in its directory withdraws it. Reads no image."""
    repo = open_repository(source)
    url = repo.url(f"{name}/{CATALOG}")
    catalog = _read_catalog(repo, name, allowed_signers)
    if catalog is None:
        raise PublishError(f"no catalog for {name!r} at {url}")
    signers = allowed_signers or _default_allowed_signers()
    _check_not_revoked(repo, catalog, None, signers, name, version)
    entry = next((e for e in catalog["versions"] if e["version"] == version), None)
    if entry is None:
        raise PublishError(f"{name} {version} is not offered by {url}")
    _check_not_revoked(repo, catalog, f"{name}/{release_dir(repo, name, entry)}/", signers, name, version)


def _check_not_revoked(repo, catalog: dict, where: str | None, signers: Path, name: str, version: str) -> None:
    """Refused when the catalog's revoked list names the version, or (an old
    catalog still offering it) the version's own signed notice does."""
    notice = next((r for r in catalog.get("revoked", []) if r.get("version") == version), None)
    document, sig = (repo.read(where + REVOCATION), repo.read(where + REVOCATION + ".sig")) if where else (None, None)
    if notice is None and document is not None and sig is not None:
        verify_bytes(document, sig, "revocation", signers, repo.url(where + REVOCATION))
        notice = strict_json(document, repo.url(where + REVOCATION))
    if notice is not None:
        raise PublishError(f"{name} {version} was revoked at {printable(notice.get('revoked_at'))}: "
                           f"{printable(notice.get('reason'))}")


def verify(source, name: str, version: str | None = None, allowed_signers: Path | None = None,
           say=print, catalog_raw: bytes | None = None) -> str:
    """Checks a published version end to end: the catalog's signature, serial
    and entry, the signed statement (for this name and version, tested and
    passed), every file against it, manifest.json and SHA256SUMS.
    catalog_raw: the catalog's bytes as the caller read them (and will use)."""
    repo = open_repository(source)
    catalog_url = repo.url(name + "/metadata.json")
    catalog = _read_catalog(repo, name, allowed_signers, catalog_raw)
    if catalog is None:
        raise PublishError(f"no catalog for {name!r} at {catalog_url}")
    signers = allowed_signers or _default_allowed_signers()
    versions = catalog_versions(catalog, catalog_url)
    if version is None and not versions:
        raise PublishError(f"{catalog_url}: no published versions")
    version = version or max(versions, key=version_key)
    _check_not_revoked(repo, catalog, None, signers, name, version)
    if version not in versions:
        raise PublishError(f"{name} {version} is not in the catalog (published: {', '.join(versions)})")
    entry = next(v for v in catalog["versions"] if v["version"] == version)
    where = f"{name}/{release_dir(repo, name, entry)}/"
    _check_not_revoked(repo, catalog, where, signers, name, version)
    statement = _verified_statement(repo, where, signers, name, version)
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    box = f"{name}-{version}.libvirt.box"
    if not {box, f"{name}-{version}.qcow2", "manifest.json"} <= set(subjects):
        raise PublishError(f"{name} {version}: the signed statement does not cover the box, qcow2 and manifest")
    provider = (entry.get("providers") or [{}])[0]
    if (provider.get("url"), provider.get("checksum")) != (repo.url(where + box), subjects.get(box)):
        raise PublishError(f"{catalog_url}: the entry of {version} does not point at the signed box "
                           f"{repo.url(where + box)} with its signed checksum")
    bad = [f"{n}: {'MISSING' if got is None else 'FAILED'}" for n, digest in sorted(subjects.items())
           if (got := repo.sha256(where + n)) != digest]
    if bad:
        raise PublishError(f"{name} {version}: checksum mismatch: {'; '.join(bad)}")
    manifest = strict_json(repo.read(where + "manifest.json"), repo.url(where + "manifest.json"))
    _check_published_sums(repo, where, signers, manifest, f"{name} {version}")
    say(f"{name} {version}: signed statement, catalog and checksums OK")
    return repo.url(where)


def _verified_statement(repo, where: str, signers: Path, name: str, version: str) -> dict:
    statement, sig = repo.read(where + STATEMENT), repo.read(where + STATEMENT + ".sig")
    if statement is None or sig is None:
        raise PublishError(f"{name} {version}: no signed release statement at {repo.url(where + STATEMENT)}")
    verify_bytes(statement, sig, "release", signers, repo.url(where + STATEMENT))
    statement = strict_json(statement, repo.url(where + STATEMENT))
    predicate = statement.get("predicate") or {}
    if (predicate.get("image"), predicate.get("version")) != (name, version):
        raise PublishError(f"{name} {version}: the signed statement is for {predicate.get('image')} "
                           f"{predicate.get('version')}: files copied from another release")
    if not predicate.get("test", {}).get("passed"):
        raise PublishError(f"{name} {version}: the signed statement does not say its test passed")
    return statement


def _check_published_sums(repo, where: str, signers: Path, manifest: dict, what: str) -> None:
    """manifest.json (already checked against the statement) names this
    release; SHA256SUMS, for OpenSSH-only users, says the same and is signed."""
    if f"{manifest.get('name')} {manifest.get('version')}" != what:
        raise PublishError(f"{what}: manifest.json is of another release")
    sums, sig = repo.read(where + "SHA256SUMS"), repo.read(where + "SHA256SUMS.sig")
    if sums != sha256sums_text(manifest["files"]).encode() or sig is None:
        raise PublishError(f"{what}: SHA256SUMS does not match the signed statement")
    verify_bytes(sums, sig, "sums", signers, repo.url(where + "SHA256SUMS"))


def _default_allowed_signers() -> Path:
    """$GOLDEN_ALLOWED_SIGNERS, or an allowed-signers file made from the
    signing key's public half (ssh-keygen's format: `golden <public key>`)."""
    if settings.allowed_signers():
        return settings.allowed_signers()
    public = signing_key().with_name(signing_key().name + ".pub")
    path = public.with_name("allowed_signers")
    path.write_text(f"{SIGNER_IDENTITY} {public.read_text().strip()}\n")
    return path
