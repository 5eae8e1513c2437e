"""Software bills of materials: SPDX 2.3 and CycloneDX 1.5 JSON of every
installed package of an image, and of each container image as a component
of its own, for scanners (Trivy, Grype, Dependency-Track...).

Read from the file-system tars the build made (no VM): dpkg's status file
(name, version, architecture, source package) and each package's Debian
copyright file, whose License fields give the declared license when the file
is machine-readable (DEP-5); otherwise the license is NOASSERTION. Debian's
license names are mapped to SPDX identifiers where one exists; any other is
a LicenseRef (SPDX) or a license name (CycloneDX). Package URLs follow the
purl spec: pkg:deb/debian/<name>@<version>?arch=<arch>&distro=debian-<version>, and the
operating system (debian, its /etc/debian_version) is a component that
contains them, as scanners expect.
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
    "FTL", "ISC", "libpng", "MIT", "Artistic-1.0-Perl", "MPL-1.1", "MPL-2.0", "OpenSSL", "PostgreSQL", "PSF-2.0", "Python-2.0",
    "Sleepycat", "Unicode-DFS-2016", "W3C", "X11", "Zlib", "0BSD", "Unlicense", "WTFPL", "OFL-1.1", "NTP",
    "TCL", "Beerware", "bzip2-1.0.6", "LPPL-1.3c", "OLDAP-2.8", "MIT-0", "BlueOak-1.0.0", "EPL-2.0")}
ALIASES = {"expat": "MIT", "boost-1.0": "BSL-1.0", "psf-2": "PSF-2.0", "zlib": "Zlib", "cc0": "CC0-1.0",
           "openldap-2.8": "OLDAP-2.8", "artistic": "Artistic-1.0-Perl"}  # Debian's Artistic: Perl's
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


@dataclass(frozen=True)
class System:
    debian_version: str        # /etc/debian_version, e.g. 13.2
    packages: list[Package]

    @property
    def distro(self) -> str:
        """The purl distro qualifier, as scanners (Trivy, Grype) write and read it."""
        return f"debian-{self.debian_version}"


def read_system(tar_path: Path) -> System:
    """The Debian version and installed packages of a file-system tar (rootfs or container image)."""
    status, debian_version, copyrights = None, "", {}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if name == "var/lib/dpkg/status":
                status = tar.extractfile(member).read().decode(errors="replace")
            elif name == "etc/debian_version" and member.isfile():
                debian_version = tar.extractfile(member).read().decode(errors="replace").strip()
            elif member.isfile() and re.fullmatch(r"usr/share/doc/[^/]+/copyright", name):
                copyrights[name.split("/")[3]] = tar.extractfile(member).read().decode(errors="replace")
    if status is None:
        raise GoldenError(f"{tar_path}: no var/lib/dpkg/status: not a Debian file system")
    installed = parse_status(status)
    # A package whose doc directory is a symlink (to its source's other binary
    # package, e.g. libgcc-s1 to gcc-14-base) has its copyright file there.
    by_source = {}
    for fields in installed:
        if fields["Package"] in copyrights:
            by_source.setdefault(fields.get("Source", fields["Package"]).partition(" ")[0],
                                 copyrights[fields["Package"]])
    packages = []
    for fields in installed:
        source, _, source_version = fields.get("Source", fields["Package"]).partition(" ")
        text = copyrights.get(fields["Package"]) or by_source.get(source, "")
        packages.append(Package(fields["Package"], fields["Version"], fields.get("Architecture", ""), source,
                                source_version.strip("()") or fields["Version"], copyright_licenses(text)))
    return System(debian_version or "unknown", packages)


def read_packages(tar_path: Path) -> list[Package]:
    return read_system(tar_path).packages


def spdx_id(debian_name: str) -> str | None:
    """The SPDX identifier of one Debian license name, None when there is none."""
    name = debian_name.strip()
    if name.lower() in SPDX_IDS:
        return SPDX_IDS[name.lower()]
    if name.lower() in ALIASES:
        return ALIASES[name.lower()]
    spdx_form = re.fullmatch(r"((?:A|L)?GPL|GFDL)-(\d\.\d)-(only|or-later)", name, re.IGNORECASE)
    if spdx_form:  # already an SPDX identifier
        return f"{spdx_form.group(1).upper()}-{spdx_form.group(2)}-{spdx_form.group(3).lower()}"
    gnu = GNU_RE.match(name)
    if gnu:
        prefix, number, plus = gnu.groups()
        if prefix is None or prefix.upper() != "A" or number.startswith("3"):
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


def purl(package: Package, distro: str) -> str:
    version = quote(package.version, safe="")
    return f"pkg:deb/debian/{quote(package.name, safe='')}@{version}?arch={package.arch}&distro={distro}"


def _spdx_ref(*parts: str) -> str:
    return "SPDXRef-" + "-".join(re.sub(r"[^A-Za-z0-9.]+", "-", p.replace("+", "plus")) for p in parts)


def _spdx_package(ref: str, name: str, version: str, purpose: str) -> dict:
    return {"SPDXID": ref, "name": name, "versionInfo": version, "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False, "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION", "primaryPackagePurpose": purpose}


def spdx_document(name: str, version: str, created: str, system: System, containers: dict[str, System]) -> dict:
    """The image CONTAINS its operating system (debian), which CONTAINS its
    packages; each container image likewise."""
    image_ref = _spdx_ref("Image", name)
    packages = [_spdx_package(image_ref, name, version, "OTHER")]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": image_ref}]
    refs = {}

    def contains(parent: str, child: str) -> None:
        relationships.append({"spdxElementId": parent, "relationshipType": "CONTAINS", "relatedSpdxElement": child})

    def add_system(parent: str, scope: str, found: System) -> None:
        os_ref = _spdx_ref("OperatingSystem", scope)
        packages.append(_spdx_package(os_ref, "debian", found.debian_version, "OPERATING-SYSTEM"))
        contains(parent, os_ref)
        for package in found.packages:
            ref = _spdx_ref("Package", scope, package.name, package.arch)
            expression = spdx_expression(package.licenses)
            for lic in re.findall(r"LicenseRef-[A-Za-z0-9.-]+", expression):
                refs.setdefault(lic, package.name)
            packages.append(dict(
                _spdx_package(ref, package.name, package.version, "LIBRARY"), licenseDeclared=expression,
                supplier="Organization: Debian",
                sourceInfo=f"built from the Debian source package {package.source} {package.source_version}",
                externalRefs=[{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                               "referenceLocator": purl(package, found.distro)}]))
            contains(os_ref, ref)

    add_system(image_ref, "image", system)
    for container, found in sorted(containers.items()):
        container_ref = _spdx_ref("Container", container)
        packages.append(_spdx_package(container_ref, f"golden/{container}", version, "CONTAINER"))
        contains(image_ref, container_ref)
        add_system(container_ref, f"container-{container}", found)
    ids = [p["SPDXID"] for p in packages]
    if len(set(ids)) != len(ids):
        raise GoldenError(f"SBOM of {name}: two packages share an SPDX identifier")
    document = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{name}-{version}",
        "documentNamespace": f"{SPDX_NAMESPACE}/{name}/{version}/{uuid.uuid5(uuid.NAMESPACE_URL, name + version)}",
        "creationInfo": {"created": created, "creators": [f"Tool: {TOOL}"]},
        "packages": packages, "relationships": relationships}
    if refs:
        document["hasExtractedLicensingInfos"] = _extracted_licenses(refs)
    return document


def _extracted_licenses(refs: dict[str, str]) -> list[dict]:
    """SPDX's entry for each LicenseRef: where its text is (refs: LicenseRef -> a package naming it)."""
    return [{"licenseId": lic, "name": lic.removeprefix("LicenseRef-"),
             "extractedText": f"As named in the Debian copyright file of {package} "
                              f"(/usr/share/doc/{package}/copyright), where its full text is."}
            for lic, package in sorted(refs.items())]


def _cdx_licenses(licenses: tuple[str, ...]) -> list[dict]:
    terms = [t for expression in licenses for _, t in license_terms(expression)]
    if not terms:
        return []
    if len(terms) == 1:
        return [{"license": {"id": spdx_id(terms[0])} if spdx_id(terms[0]) else {"name": terms[0]}}]
    return [{"expression": spdx_expression(licenses)}]  # LicenseRefs keep the structure


def _cdx_system(found: System, scope: str) -> tuple[dict, list[dict], dict]:
    """The operating system's component, its packages' components, and its dependency entry."""
    os_component = {"type": "operating-system", "bom-ref": f"{scope}:os:debian", "name": "debian",
                    "version": found.debian_version}
    libraries = []
    for package in found.packages:
        component = {"type": "library", "bom-ref": f"{scope}:{purl(package, found.distro)}", "name": package.name,
                     "version": package.version, "supplier": {"name": "Debian"},
                     "purl": purl(package, found.distro),
                     "properties": [{"name": "debian:architecture", "value": package.arch},
                                    {"name": "debian:source", "value": package.source},
                                    {"name": "debian:source_version", "value": package.source_version}]}
        if _cdx_licenses(package.licenses):
            component["licenses"] = _cdx_licenses(package.licenses)
        libraries.append(component)
    return os_component, libraries, {"ref": os_component["bom-ref"], "dependsOn": [c["bom-ref"] for c in libraries]}


def cyclonedx_document(name: str, version: str, created: str, system: System,
                       containers: dict[str, System]) -> dict:
    os_component, components, os_dependencies = _cdx_system(system, "image")
    components = [os_component] + components
    dependencies = [os_dependencies]
    image_depends = [os_component["bom-ref"]]
    for container, found in sorted(containers.items()):
        inner_os, inner, inner_dependencies = _cdx_system(found, f"container:{container}")
        components.append({"type": "container", "bom-ref": f"container:{container}", "name": f"golden/{container}",
                           "version": version, "components": [inner_os] + inner})
        dependencies += [{"ref": f"container:{container}", "dependsOn": [inner_os["bom-ref"]]}, inner_dependencies]
        image_depends.append(f"container:{container}")
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'cyclonedx:{name}:{version}')}",
        "version": 1,
        "metadata": {"timestamp": created, "tools": {"components": [{"type": "application", "name": TOOL}]},
                     "component": {"type": "platform", "bom-ref": f"image:{name}", "name": name, "version": version}},
        "components": components,
        "dependencies": [{"ref": f"image:{name}", "dependsOn": image_depends}] + dependencies}


def write_sboms(out_dir: Path, name: str, version: str, created: str, rootfs_tar: Path,
                container_tars: dict[str, Path]) -> list[Path]:
    """<name>-<version>.spdx.json and .cdx.json in out_dir; returns their paths."""
    system = read_system(rootfs_tar)
    containers = {image: read_system(tar) for image, tar in container_tars.items()}
    paths = []
    for suffix, make in (("spdx.json", spdx_document), ("cdx.json", cyclonedx_document)):
        path = out_dir / f"{name}-{version}.{suffix}"
        path.write_text(json.dumps(make(name, version, created, system, containers), indent=2) + "\n")
        paths.append(path)
    return paths
