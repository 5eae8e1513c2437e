"""Where published images go: a directory, or an HTTP(S) WebDAV server.

Both offer the few operations publishing needs, each safe to interrupt:
files are uploaded under a temporary name and moved into place (rename for
a directory, WebDAV MOVE over HTTP), and a lock serialises publishers
(flock for a directory, an MKCOL-created collection over HTTP).
Paths are relative to the repository root, with '/' separators; a path
ending in '/' is a directory (collection).
"""
from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import os
import re
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from golden import settings
from golden.errors import GoldenError, printable


class RepositoryError(GoldenError):
    pass


SEGMENT_RE = re.compile(r"(?!\.\.?\Z)[A-Za-z0-9._+-]+")  # fullmatch; not "." or ".."


def safe_rel(rel: str) -> str:
    """rel if it names a place inside the repository: '/'-separated segments
    of plain characters, none of them '.', '..' or empty; else RepositoryError.
    Every path golden reads, writes or deletes goes through here."""
    segments = rel[:-1].split("/") if rel.endswith("/") else rel.split("/")
    if not all(SEGMENT_RE.fullmatch(segment) for segment in segments):
        raise RepositoryError(f"refused repository path {rel!r}: it would leave the repository")
    return rel


def open_repository(target: str | Path) -> "DirectoryRepository | HttpRepository":
    text = str(target)
    if text.startswith(("http://", "https://")):
        return HttpRepository(text)
    if "://" in text:
        raise RepositoryError(f"{text}: expected a directory or an http(s):// URL")
    return DirectoryRepository(Path(text))


class DirectoryRepository:
    def __init__(self, root: Path):
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def _path(self, rel: str) -> Path:
        path = self.root / safe_rel(rel).rstrip("/")
        if not path.resolve().is_relative_to(self.root.resolve()):  # a symlink pointing out
            raise RepositoryError(f"refused repository path {rel!r}: it resolves outside {self.root}")
        return path

    def url(self, rel: str) -> str:
        return self._path(rel).resolve().as_uri()

    def read(self, rel: str) -> bytes | None:
        try:
            return self._path(rel).read_bytes()
        except FileNotFoundError:
            return None

    def upload(self, local: Path, rel: str) -> str:
        """Copies local to rel; returns the sha256 of the bytes written."""
        dest = self._path(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with Path(local).open("rb") as src, dest.open("wb") as out:
            body = _HashingReader(src)
            shutil.copyfileobj(body, out, 1 << 20)
        return body.sha256.hexdigest()

    def move(self, src: str, dest: str) -> None:
        """Replaces dest with src; a directory dest is removed first."""
        source, target = self._path(src), self._path(dest)
        if source.is_dir() and target.exists():
            shutil.rmtree(target)
        os.replace(source, target)

    def delete(self, rel: str) -> None:
        path = self._path(rel)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def sha256(self, rel: str) -> str | None:
        path = self._path(rel)
        return _sha256_chunks(path.open("rb")) if path.is_file() else None

    @contextmanager
    def lock(self, rel: str):
        path = self._path(rel)
        path.mkdir(parents=True, exist_ok=True)
        try:  # never through a symlink planted in the repository
            fd = os.open(path / ".publish.lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise RepositoryError(f"{path / '.publish.lock'}: cannot open the lock: {exc.strerror}") from None
        with os.fdopen(fd, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released by the kernel even after kill -9
            yield


class HttpRepository:
    """A WebDAV server (e.g. nginx's dav module): GET, PUT, MOVE, MKCOL, DELETE.

    Credentials come from the environment only: GOLDEN_PUBLISH_TOKEN (a
    bearer token) or GOLDEN_PUBLISH_USER and GOLDEN_PUBLISH_PASSWORD (basic
    auth). They never appear in URLs, messages or logs.
    """
    def __init__(self, base: str):
        import requests  # only HTTP targets need it
        parts = urlsplit(base)
        if parts.username or parts.password:
            raise RepositoryError("credentials in the URL are refused: set GOLDEN_PUBLISH_USER and "
                                  "GOLDEN_PUBLISH_PASSWORD (or GOLDEN_PUBLISH_TOKEN) instead")
        self.base = base.rstrip("/") + "/"
        self.session = requests.Session()
        credentials = settings.publish_credentials()
        if credentials and parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
            raise RepositoryError(f"{base}: refusing to send publish credentials over plain http:// "
                                  "(use https://; plain http is allowed to loopback only)")
        if "token" in credentials:
            self.session.headers["Authorization"] = f"Bearer {credentials['token']}"
        elif "user" in credentials:
            self.session.auth = (credentials["user"], credentials["password"])

    def __str__(self) -> str:
        return self.base

    def url(self, rel: str) -> str:
        return self.base + safe_rel(rel)

    def _request(self, method: str, rel: str, ok=(200, 201, 204), **kwargs):
        import requests
        try:
            response = self.session.request(method, self.url(rel), timeout=(10, 300), **kwargs)
        except requests.RequestException as exc:
            raise RepositoryError(f"{method} {self.url(rel)}: {type(exc).__name__}: {exc}") from None
        if response.status_code not in ok:
            hint = " (check GOLDEN_PUBLISH_USER/GOLDEN_PUBLISH_PASSWORD or GOLDEN_PUBLISH_TOKEN)" \
                if response.status_code in (401, 403) else ""
            raise RepositoryError(f"{method} {self.url(rel)}: HTTP {response.status_code} {printable(response.reason or '')}{hint}")
        return response

    def read(self, rel: str) -> bytes | None:
        response = self._request("GET", rel, ok=(200, 404))
        return None if response.status_code == 404 else response.content

    def upload(self, local: Path, rel: str) -> str:
        """PUTs local to rel; returns the sha256 of the bytes sent."""
        with Path(local).open("rb") as f:
            body = _HashingReader(f)
            self._request("PUT", rel, data=body)
        return body.sha256.hexdigest()

    def move(self, src: str, dest: str) -> None:
        self._request("MOVE", src, headers={"Destination": self.url(dest), "Overwrite": "T"})

    def delete(self, rel: str) -> None:
        self._request("DELETE", rel, ok=(200, 204, 404), headers={"Depth": "infinity"} if rel.endswith("/") else {})

    def sha256(self, rel: str) -> str | None:
        response = self._request("GET", rel, ok=(200, 404), stream=True)
        if response.status_code == 404:
            return None
        with response:
            return _sha256_chunks(response.raw, read=lambda f: f.read(1 << 20, decode_content=True))

    @contextmanager
    def lock(self, rel: str):
        """MKCOL creates a collection only if it does not exist yet: the lock.
        Its `owner` file names the holder; a holder on this machine whose
        process is gone (killed mid-publish) left a stale lock, removed here."""
        self._request("MKCOL", rel.rstrip("/") + "/", ok=(201, 405))  # the image's collection
        lock = rel.rstrip("/") + "/.publish.lock/"
        deadline = time.monotonic() + settings.publish_lock_timeout()
        while self._request("MKCOL", lock, ok=(201, 405)).status_code == 405:
            owner = (self.read(lock + "owner") or b"").decode(errors="replace").strip()
            if _is_stale(owner):
                self.delete(lock)
                continue
            if time.monotonic() > deadline:
                raise RepositoryError(f"{self.url(lock)} is held by another publish ({printable(owner) or 'owner unknown'}). "
                                      f"If none is running, remove it: curl -X DELETE {self.url(lock)}")
            time.sleep(2)
        try:
            self._request("PUT", lock + "owner", data=f"{socket.gethostname()} {os.getpid()}\n".encode())
            yield
        finally:
            self.delete(lock)


class _HashingReader:
    """A file whose bytes are hashed as they are read (and sent)."""
    def __init__(self, f):
        self.f, self.sha256 = f, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self.f.read(size)
        self.sha256.update(chunk)
        return chunk

    def __len__(self) -> int:  # requests sends a Content-Length, not a chunked body
        return os.fstat(self.f.fileno()).st_size


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _is_stale(owner: str) -> bool:
    """An owner "<host> <pid>" on this host whose process no longer exists."""
    host, _, pid = owner.partition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _sha256_chunks(f, read=lambda f: f.read(1 << 20)) -> str:
    h = hashlib.sha256()
    with f:
        while chunk := read(f):
            h.update(chunk)
    return h.hexdigest()
