"""What changed between two package sets: one line per package, security
updates first, with the CVE identifiers that each package's Debian changelog
names between the two versions (read from the .deb files in the package
cache; no outside service)."""
from __future__ import annotations

import gzip
import re
import subprocess
import tarfile
from pathlib import Path

from golden.build import lock
from golden.build.archive import ArchiveState, compare_versions

CVE_RE = re.compile(r"CVE-\d{4}-\d{4,7}")
ENTRY_RE = re.compile(r"^\S+ \(([^)\s]+)\) ", re.M)


def changelog(deb: Path, package: str) -> str | None:
    """The Debian changelog a .deb ships (None when it has none of its own)."""
    # A native package (apt, base-files) has changelog.gz.
    names = {f"./usr/share/doc/{package}/changelog.Debian.gz", f"./usr/share/doc/{package}/changelog.gz"}
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as proc:
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    if member.name in names and member.isfile():
                        return gzip.decompress(tar.extractfile(member).read()).decode(errors="replace")
        except tarfile.TarError:
            return None
        finally:
            proc.kill()
    return None


def _entry_versions(text: str) -> list[str]:
    return [m.group(1) for m in ENTRY_RE.finditer(text)]


def cves_between(text: str, old: str | None) -> list[str]:
    """CVEs named by the entries of a changelog newer than version old."""
    found: set[str] = set()
    headers = list(ENTRY_RE.finditer(text))
    for i, header in enumerate(headers):
        if old and compare_versions(header.group(1), old) <= 0:
            break
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        found |= set(CVE_RE.findall(text, header.start(), end))
    return sorted(found, key=lambda c: tuple(int(n) for n in c[4:].split("-")))


def package_cves(suite: str, package: str, source: str, old: str, new: str,
                 state: ArchiveState | None) -> list[str] | None:
    """CVEs fixed between old and new (None: no changelog in the package cache).
    A binary package whose docs are its source's other package's is looked up
    through the other binaries of the same source and version. The changelog's
    versions are the source's: where they are not the binary's (postgresql
    17+278 is built by postgresql-common 278), the old .deb's changelog says
    where to stop, or without it only the newest entry counts."""
    def siblings():
        yield package
        for index in state.indexes if state else []:
            yield from (name for name, entry in index.items()
                        if entry[1] == source and entry[0] == new and name != package)
    for name in siblings():
        deb = lock.cached_deb(suite, name, new)
        text = changelog(deb, name) if deb else None
        if not text:
            continue
        versions = _entry_versions(text)
        if versions[:1] == [new]:
            return cves_between(text, old)
        old_deb = lock.cached_deb(suite, name, old)
        old_versions = _entry_versions(changelog(old_deb, name) or "") if old_deb else []
        bound = old_versions[0] if old_versions else (versions[1] if len(versions) > 1 else None)
        return cves_between(text, bound)
    return None


def diff_packages(old: dict[str, str], new: dict[str, str], state: ArchiveState | None,
                  suite: str) -> list[dict]:
    """[{package, old, new, security, cves}], security updates first. old or new
    is None for a package added or removed."""
    changes = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        security = bool(after and state and any(a.pocket.security and a.version == after
                                                for a in state.available(name)))
        source = next((a.source for a in state.available(name)), name) if state else name
        cves = package_cves(suite, name, source, before, after, state) if after and before else None
        changes.append({"package": name, "old": before, "new": after, "security": security, "cves": cves})
    return sorted(changes, key=lambda c: (not c["security"], c["package"]))


def merged_sections(sections: dict[str, dict[str, str]]) -> dict[str, str]:
    """One package set of a lock's or manifest's sections (rootfs, container images)."""
    merged: dict[str, str] = {}
    for packages in sections.values():
        merged.update(packages)
    return merged


def change_line(change: dict) -> str:
    line = f"{change['package']} {change['old'] or '(new)'} -> {change['new'] or '(removed)'}"
    if change["security"]:
        known = change["cves"]
        line += f" (security: {', '.join(known)})" if known else " (security)"
    elif change["cves"]:
        line += f" ({', '.join(change['cves'])})"
    return line


def changes_markdown(name: str, version: str, changes: list[dict], note: str) -> str:
    security = [c for c in changes if c["security"]]
    text = f"# {name} {version}: changes\n\n{note}\n"
    if security:
        text += "\n## Security updates\n\n" + "".join(f"- {change_line(c)}\n" for c in security)
    others = [c for c in changes if not c["security"]]
    if others:
        text += "\n## Other changes\n\n" + "".join(f"- {change_line(c)}\n" for c in others)
    return text
