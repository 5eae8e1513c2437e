"""The signed statement of a release, and SSH signatures with golden's own
namespaces.

release.json is an in-toto Statement (v1): its subjects are every published
file with its sha256 (the images, manifest.json, the JUnit reports of the
test run), its predicate names the image and version, the test verdict, the
build key and the lock's digest. release.json.sig is its SSH signature
(`ssh-keygen -Y sign -n golden-release`), so that anyone with OpenSSH and the
publisher's public key can check what was tested is what they download.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from golden.errors import GoldenError

STATEMENT = "release.json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://github.com/golden-images/golden/release/v1"
SIGNER_IDENTITY = "golden"
# One namespace per kind of document: a signature made for one never passes as another.
NAMESPACES = {"release": "golden-release", "sums": "golden-sha256sums", "catalog": "golden-catalog",
              "revocation": "golden-revocation"}


class SignatureError(GoldenError):
    pass


def make_statement(manifest: dict, subjects: dict[str, str], manifest_sha256: str, reports: dict[str, str]) -> dict:
    """subjects: every published file's name and sha256 (reports included)."""
    verdict = manifest["test"]
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": n, "digest": {"sha256": d}} for n, d in sorted(subjects.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "image": manifest["name"], "version": manifest["version"],
            "manifest": {"name": "manifest.json", "sha256": manifest_sha256},
            "test": {"passed": verdict["passed"], "tests": verdict["tests"], "failures": verdict["failures"],
                     "reports": dict(sorted(reports.items()))},
            "build_key": manifest.get("build_key", ""), "lock_sha256": manifest.get("lock_sha256", ""),
        },
    }


def strict_json(raw: bytes | None, where: str) -> dict:
    """A JSON object, refused when invalid or when a key repeats (parsers
    disagree on which one wins: what is verified must be what is used)."""
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise SignatureError(f"{where}: a key appears twice")
        return dict(pairs)
    try:
        data = json.loads(raw or b"", object_pairs_hook=no_duplicates)
    except ValueError:
        raise SignatureError(f"{where}: not valid JSON") from None
    if not isinstance(data, dict):
        raise SignatureError(f"{where}: expected a JSON object")
    return data


def statement_bytes(statement: dict) -> bytes:
    return (json.dumps(statement, indent=2, sort_keys=True) + "\n").encode()


def canonical(document: dict, without: str) -> bytes:
    """document minus its own signature field, in one fixed spelling."""
    return json.dumps({k: v for k, v in document.items() if k != without}, sort_keys=True,
                      separators=(",", ":")).encode()


def sign_bytes(data: bytes, key: Path, kind: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="golden-sign-") as scratch:
        message = Path(scratch) / "message"
        message.write_bytes(data)
        proc = subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", NAMESPACES[kind],
                               str(message)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SignatureError(f"signing the {kind} failed: {proc.stderr.strip()}")
        return message.with_name("message.sig").read_bytes()


def verify_bytes(data: bytes, signature: bytes, kind: str, allowed_signers: Path, what: str) -> None:
    """SignatureError naming `what` unless signature is the allowed signer's, for this kind."""
    with tempfile.TemporaryDirectory(prefix="golden-verify-") as scratch:
        sig = Path(scratch) / "message.sig"
        sig.write_bytes(signature)
        proc = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed_signers), "-I", SIGNER_IDENTITY,
                               "-n", NAMESPACES[kind], "-s", str(sig)], input=data, capture_output=True)
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
        raise SignatureError(f"{what}: bad signature ({why[0] if why else 'ssh-keygen refused it'})")
