"""Software bills of materials: SPDX 2.3 and CycloneDX 1.5 JSON of every
installed package of an image, and of each container image as a component
of its own, for scanners (Trivy, Grype, Dependency-Track...).

Read from the file-system tars the build made (no VM): dpkg's status file
(name, version, architecture, source package) and each package's Debian
copyright file, whose License fields give the declared license when the file
is machine-readable (DEP-5); otherwise the license is NOASSERTION. Debian's
license names are mapped to SPDX identifiers where one exists; any other is
a LicenseRef (SPDX) or a license name (CycloneDX). Package URLs follow the
purl spec: pkg:deb/debian/<name>@<version>?arch=<arch>&distro=<suite>.
"""
from __future__ import annotations

import json
import re
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from golden.errors import GoldenError

TOOL = "golden"
SPDX_NAMESPACE = "https://golden.invalid/spdx"  # documentNamespace must be a URI; unique per release
# SPDX identifiers that Debian's copyright files name, by their Debian short name (lowercase).
SPDX_IDS = {name.lower(): name for name in (
    "Apache-2.0", "Artistic-1.0", "Artistic-2.0", "BSD-2-Clause", "BSD-3-Clause", "BSD-4-Clause", "BSL-1.0",
    "CC0-1.0", "CC-BY-3.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "curl", "FSFAP", "FSFUL", "FSFULLR",
    "FTL", "ISC", "libpng", "MIT", "MPL-1.1", "MPL-2.0", "OpenSSL", "PostgreSQL", "PSF-2.0", "Python-2.0",
    "Sleepycat", "Unicode-DFS-2016", "W3C", "X11", "Zlib", "0BSD", "Unlicense", "WTFPL", "OFL-1.1", "NTP",
    "TCL", "Beerware", "bzip2-1.0.6", "LPPL-1.3c", "OLDAP-2.8", "MIT-0", "BlueOak-1.0.0", "EPL-2.0")}
ALIASES = {"expat": "MIT", "boost-1.0": "BSL-1.0", "psf-2": "PSF-2.0", "zlib": "Zlib", "cc0": "CC0-1.0",
           "openldap-2.8": "OLDAP-2.8", "artistic": "Artistic-1.0"}
GNU_RE = re.compile(r"^(A|L)?GPL-?v?(\d(?:\.\d)?)(\+|\.0\+)?$", re.IGNORECASE)
GFDL_RE = re.compile(r"^GFDL-(\d\.\d)(\+)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str
    source: str
    source_version: str
    licenses: tuple[str, ...]   # Debian license expressions, one per License field (DEP-5)


def parse_status(text: str) -> list[dict]:
    """The installed packages of a dpkg status file, each a dict of its fields."""
    packages = []
    for paragraph in text.split("\n\n"):
        fields, key = {}, None
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed"):
            packages.append(fields)
    return sorted(packages, key=lambda f: (f["Package"], f.get("Architecture", "")))


def copyright_licenses(text: str) -> tuple[str, ...]:
    """The License fields' first lines of a machine-readable (DEP-5) copyright
    file, in order, without repeats; () for any other file."""
    if not text.startswith("Format:"):
        return ()
    found = []
    for line in text.splitlines():
        if line.startswith("License:"):
            value = line[len("License:"):].strip()
            if value and value not in found:
                found.append(value)
    return tuple(found)


def read_packages(tar_path: Path) -> list[Package]:
    """The installed packages of a file-system tar (rootfs or container image)."""
    status, copyrights = None, {}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if name == "var/lib/dpkg/status":
                status = tar.extractfile(member).read().decode(errors="replace")
            elif member.isfile() and re.fullmatch(r"usr/share/doc/[^/]+/copyright", name):
                copyrights[name.split("/")[3]] = tar.extractfile(member).read().decode(errors="replace")
    if status is None:
        raise GoldenError(f"{tar_path}: no var/lib/dpkg/status: not a Debian file system")
    packages = []
    for fields in parse_status(status):
        source, _, source_version = fields.get("Source", fields["Package"]).partition(" ")
        packages.append(Package(fields["Package"], fields["Version"], fields.get("Architecture", ""), source,
                                source_version.strip("()") or fields["Version"],
                                copyright_licenses(copyrights.get(fields["Package"], ""))))
    return packages


def spdx_id(debian_name: str) -> str | None:
    """The SPDX identifier of one Debian license name, None when there is none."""
    name = debian_name.strip()
    if name.lower() in SPDX_IDS:
        return SPDX_IDS[name.lower()]
    if name.lower() in ALIASES:
        return ALIASES[name.lower()]
    gnu = GNU_RE.match(name)
    if gnu:
        prefix, number, plus = gnu.groups()
        if prefix is None or prefix.upper() != "A" or number == "3":
            number = number if "." in number else number + ".0"
            return f"{(prefix or '').upper()}GPL-{number}-{'or-later' if plus else 'only'}"
    gfdl = GFDL_RE.match(name)
    if gfdl:
        return f"GFDL-{gfdl.group(1)}-{'or-later' if gfdl.group(2) else 'only'}"
    return None


def license_terms(expression: str) -> list[tuple[str, str | None]]:
    """A Debian License expression ("GPL-2+ or Artistic") as (operator, term)
    pairs; the first operator is empty."""
    parts = re.split(r"\s+(or|and)\s+", expression.strip(), flags=re.IGNORECASE)
    return [("", parts[0])] + [(parts[i].upper(), parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def license_ref(debian_name: str) -> str:
    return "LicenseRef-" + (re.sub(r"[^A-Za-z0-9.]+", "-", debian_name).strip("-") or "unnamed")


def spdx_expression(licenses: tuple[str, ...]) -> str:
    """The SPDX expression of a package's License fields (all apply: AND)."""
    if not licenses:
        return "NOASSERTION"
    fields = []
    for expression in licenses:
        terms = [f"{op} {spdx_id(t) or license_ref(t)}".strip() for op, t in license_terms(expression)]
        fields.append(" ".join(terms))
    fields = list(dict.fromkeys(fields))  # "BSD-3-clause" and "BSD-3-Clause" are one
    return " AND ".join(f"({f})" if len(fields) > 1 and (" OR " in f or " AND " in f) else f for f in fields)


def purl(package: Package, suite: str) -> str:
    version = quote(package.version, safe="")
    return f"pkg:deb/debian/{quote(package.name, safe='')}@{version}?arch={package.arch}&distro={suite}"


def _spdx_ref(*parts: str) -> str:
    return "SPDXRef-" + "-".join(re.sub(r"[^A-Za-z0-9.]+", "-", p) for p in parts)


def spdx_document(name: str, version: str, created: str, suite: str, packages: list[Package],
                  containers: dict[str, list[Package]]) -> dict:
    image_ref = _spdx_ref("Image", name)
    described, relationships, refs = [], [], {}

    def add(package: Package, parent: str, scope: str) -> None:
        ref = _spdx_ref("Package", scope, package.name, package.arch)
        expression = spdx_expression(package.licenses)
        for lic in re.findall(r"LicenseRef-[A-Za-z0-9.-]+", expression):
            refs.setdefault(lic, package.name)
        described.append({
            "SPDXID": ref, "name": package.name, "versionInfo": package.version,
            "supplier": "Organization: Debian", "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
            "licenseConcluded": "NOASSERTION", "licenseDeclared": expression, "copyrightText": "NOASSERTION",
            "sourceInfo": f"built from the Debian source package {package.source} {package.source_version}",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": purl(package, suite)}]})
        relationships.append({"spdxElementId": parent, "relationshipType": "CONTAINS", "relatedSpdxElement": ref})

    top = [{"SPDXID": image_ref, "name": name, "versionInfo": version, "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False, "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION", "primaryPackagePurpose": "OPERATING-SYSTEM"}]
    relationships.append({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                          "relatedSpdxElement": image_ref})
    for package in packages:
        add(package, image_ref, "image")
    for container, container_packages in sorted(containers.items()):
        container_ref = _spdx_ref("Container", container)
        top.append({"SPDXID": container_ref, "name": f"golden/{container}", "versionInfo": version,
                    "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "licenseConcluded": "NOASSERTION",
                    "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION",
                    "primaryPackagePurpose": "CONTAINER"})
        relationships.append({"spdxElementId": image_ref, "relationshipType": "CONTAINS",
                              "relatedSpdxElement": container_ref})
        for package in container_packages:
            add(package, container_ref, f"container-{container}")
    document = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{name}-{version}",
        "documentNamespace": f"{SPDX_NAMESPACE}/{name}/{version}/{uuid.uuid5(uuid.NAMESPACE_URL, name + version)}",
        "creationInfo": {"created": created, "creators": [f"Tool: {TOOL}"]},
        "packages": top + described, "relationships": relationships}
    if refs:
        document["hasExtractedLicensingInfos"] = [
            {"licenseId": lic, "name": lic.removeprefix("LicenseRef-"),
             "extractedText": f"As named in the Debian copyright file of {package} "
                              f"(/usr/share/doc/{package}/copyright), where its full text is."}
            for lic, package in sorted(refs.items())]
    return document


def _cdx_licenses(licenses: tuple[str, ...]) -> list[dict]:
    terms = [t for expression in licenses for _, t in license_terms(expression)]
    if not terms:
        return []
    if all(spdx_id(t) for t in terms):
        expression = spdx_expression(licenses)
        return [{"license": {"id": expression}}] if len(terms) == 1 else [{"expression": expression}]
    return [{"license": {"name": t}} for t in dict.fromkeys(terms)]


def _cdx_component(package: Package, suite: str, scope: str) -> dict:
    component = {"type": "library", "bom-ref": f"{scope}:{purl(package, suite)}", "name": package.name,
                 "version": package.version, "supplier": {"name": "Debian"}, "purl": purl(package, suite),
                 "properties": [{"name": "debian:architecture", "value": package.arch},
                                {"name": "debian:source", "value": package.source},
                                {"name": "debian:source_version", "value": package.source_version}]}
    if _cdx_licenses(package.licenses):
        component["licenses"] = _cdx_licenses(package.licenses)
    return component


def cyclonedx_document(name: str, version: str, created: str, suite: str, packages: list[Package],
                       containers: dict[str, list[Package]]) -> dict:
    components = [_cdx_component(p, suite, "image") for p in packages]
    for container, container_packages in sorted(containers.items()):
        components.append({"type": "container", "bom-ref": f"container:{container}", "name": f"golden/{container}",
                           "version": version,
                           "components": [_cdx_component(p, suite, f"container:{container}")
                                          for p in container_packages]})
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'cyclonedx:{name}:{version}')}",
        "version": 1,
        "metadata": {"timestamp": created, "tools": {"components": [{"type": "application", "name": TOOL}]},
                     "component": {"type": "operating-system", "bom-ref": f"image:{name}", "name": name,
                                   "version": version}},
        "components": components}


def write_sboms(out_dir: Path, name: str, version: str, created: str, suite: str, rootfs_tar: Path,
                container_tars: dict[str, Path]) -> list[Path]:
    """<name>-<version>.spdx.json and .cdx.json in out_dir; returns their paths."""
    packages = read_packages(rootfs_tar)
    containers = {image: read_packages(tar) for image, tar in container_tars.items()}
    paths = []
    for suffix, make in (("spdx.json", spdx_document), ("cdx.json", cyclonedx_document)):
        path = out_dir / f"{name}-{version}.{suffix}"
        path.write_text(json.dumps(make(name, version, created, suite, packages, containers), indent=2) + "\n")
        paths.append(path)
    return paths
