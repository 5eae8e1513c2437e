"""SBOMs from a real dpkg database and real Debian copyright files (this
host's), checked by the reference validators: spdx-tools and
cyclonedx-python-lib."""
import io
import json
import tarfile
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from golden.errors import GoldenError
from golden.build.sbom import (Package, copyright_licenses, parse_status, read_packages, spdx_expression, spdx_id,
                               write_sboms)

STATUS = Path("/var/lib/dpkg/status")


def _fs_tar(path: Path, status: str, copyrights: dict[str, str], debian_version: str = "13.2") -> Path:
    with tarfile.open(path, "w") as tar:
        for name, text in [("./var/lib/dpkg/status", status), ("./etc/debian_version", debian_version + "\n")] + \
                [(f"./usr/share/doc/{p}/copyright", t) for p, t in copyrights.items()]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def host_rootfs(tmp_path_factory):
    """This host's installed packages and their copyright files, as a file-system tar."""
    copyrights = {p.parent.name: p.read_text(errors="replace") for p in Path("/usr/share/doc").glob("*/copyright")
                  if p.is_file()}
    return _fs_tar(tmp_path_factory.mktemp("rootfs") / "rootfs.tar", STATUS.read_text(), copyrights)


def _spdx_problems(path: Path) -> list[str]:
    return [m.validation_message for m in validate_full_spdx_document(parse_file(str(path)))]


def _cdx_problem(path: Path):
    return JsonStrictValidator(SchemaVersion.V1_5).validate_str(path.read_text())


def test_both_sboms_of_a_real_package_set_pass_the_reference_validators(host_rootfs, tmp_path):
    container = _fs_tar(tmp_path / "probe.tar", "\n\n".join(STATUS.read_text().split("\n\n")[:12]), {})
    spdx, cdx = write_sboms(tmp_path, "infra", "20261130.120000", "2026-11-30T12:00:00Z", host_rootfs,
                            {"probe": container})
    assert (spdx.name, cdx.name) == ("infra-20261130.120000.spdx.json", "infra-20261130.120000.cdx.json")
    assert _spdx_problems(spdx) == []
    assert _cdx_problem(cdx) is None

    installed = read_packages(host_rootfs)
    document = json.loads(spdx.read_text())
    image_packages = [p for p in document["packages"] if p["SPDXID"].startswith("SPDXRef-Package-image-")]
    assert len(image_packages) == len(installed) > 100
    bash = next(p for p in image_packages if p["name"] == "bash")
    (ref,) = bash["externalRefs"]
    assert ref["referenceLocator"].startswith("pkg:deb/debian/bash@") and ref["referenceLocator"].endswith(
        "?arch=amd64&distro=debian-13.2")
    assert bash["licenseDeclared"] != "NOASSERTION" and "GPL-3.0-or-later" in bash["licenseDeclared"]
    assert "source package bash" in bash["sourceInfo"]
    def contained(parent):
        return {r["relatedSpdxElement"] for r in document["relationships"]
                if r["spdxElementId"] == parent and r["relationshipType"] == "CONTAINS"}
    # image CONTAINS debian CONTAINS its packages (how scanners find the OS); likewise each container image
    assert contained("SPDXRef-Image-infra") == {"SPDXRef-OperatingSystem-image", "SPDXRef-Container-probe"}
    assert len(contained("SPDXRef-OperatingSystem-image")) == len(installed)
    assert contained("SPDXRef-Container-probe") == {"SPDXRef-OperatingSystem-container-probe"}
    assert len(contained("SPDXRef-OperatingSystem-container-probe")) == len(read_packages(container)) > 0
    (os_package,) = [p for p in document["packages"] if p["SPDXID"] == "SPDXRef-OperatingSystem-image"]
    assert (os_package["name"], os_package["versionInfo"], os_package["primaryPackagePurpose"]) == \
        ("debian", "13.2", "OPERATING-SYSTEM")

    bom = json.loads(cdx.read_text())
    assert bom["metadata"]["component"] == {"type": "platform", "bom-ref": "image:infra", "name": "infra",
                                            "version": "20261130.120000"}
    (os_component,) = [c for c in bom["components"] if c["type"] == "operating-system"]
    assert (os_component["name"], os_component["version"]) == ("debian", "13.2")
    depends = {d["ref"]: d["dependsOn"] for d in bom["dependencies"]}
    assert len(depends[os_component["bom-ref"]]) == len(installed)
    (probe,) = [c for c in bom["components"] if c["type"] == "container"]
    assert probe["name"] == "golden/probe" and len(probe["components"]) == len(read_packages(container)) + 1
    libs = {c["name"]: c for c in bom["components"] if c["type"] == "library"}
    assert len(libs) == len(installed) and libs["bash"]["purl"] == ref["referenceLocator"]
    assert {"name": "debian:source", "value": "bash"} in libs["bash"]["properties"]


def test_the_validators_refuse_what_is_wrong(host_rootfs, tmp_path):
    """The checks above can fail: a broken identifier or license is caught."""
    spdx, cdx = write_sboms(tmp_path, "infra", "20261130.120000", "2026-11-30T12:00:00Z", host_rootfs, {})
    document = json.loads(spdx.read_text())
    document["packages"][1]["licenseDeclared"] = "Not A License"
    spdx.write_text(json.dumps(document))
    assert _spdx_problems(spdx)
    bom = json.loads(cdx.read_text())
    bom["components"][1]["licenses"] = [{"license": {"id": "GPL-2+"}}]  # a Debian name, not an SPDX id
    cdx.write_text(json.dumps(bom))
    assert _cdx_problem(cdx) is not None


@pytest.mark.parametrize("debian, spdx", [
    ("GPL-2", "GPL-2.0-only"), ("GPL-2+", "GPL-2.0-or-later"), ("LGPL-2.1+", "LGPL-2.1-or-later"),
    ("LGPL-2", "LGPL-2.0-only"), ("GPLv3+", "GPL-3.0-or-later"), ("GPL-2.0+", "GPL-2.0-or-later"),
    ("AGPL-3+", "AGPL-3.0-or-later"), ("Expat", "MIT"), ("BSD-3-clause", "BSD-3-Clause"), ("zlib", "Zlib"),
    ("GFDL-1.3+", "GFDL-1.3-or-later"), ("Apache-2.0", "Apache-2.0"), ("public-domain", None), ("GPL", None),
    ("AGPL-3.0+", "AGPL-3.0-or-later"), ("Artistic", "Artistic-1.0-Perl"), ("GPL-2.0-or-later", "GPL-2.0-or-later"),
    ("lgpl-2.1-only", "LGPL-2.1-only"),
])
def test_debian_license_names_map_to_spdx(debian, spdx):
    assert spdx_id(debian) == spdx


def test_license_expressions():
    assert spdx_expression(()) == "NOASSERTION"
    assert spdx_expression(("GPL-1+ or Artistic",)) == "GPL-1.0-or-later OR Artistic-1.0-Perl"
    assert spdx_expression(("Expat", "BSD-3-clause", "BSD-3-Clause")) == "MIT AND BSD-3-Clause"
    assert spdx_expression(("GPL-2+ with Autoconf exception", "MIT or GPL-2")) == \
        "LicenseRef-GPL-2-with-Autoconf-exception AND (MIT OR GPL-2.0-only)"


def test_only_machine_readable_copyright_files_declare_licenses():
    dep5 = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
            "Files: *\nCopyright: someone\nLicense: GPL-2+\n\nFiles: lib/*\nLicense: Expat\n\n"
            "License: GPL-2+\n This program is free software\n")
    assert copyright_licenses(dep5) == ("GPL-2+", "Expat")
    assert copyright_licenses("This package was debianized by ...\nLicense: GPL\n") == ()


def test_only_installed_packages_count():
    status = ("Package: a\nStatus: install ok installed\nVersion: 1:2.0-1\nArchitecture: amd64\n"
              "Source: a-src (2.0-0.1)\n\n"
              "Package: b\nStatus: deinstall ok config-files\nVersion: 1\nArchitecture: amd64\n")
    assert [p["Package"] for p in parse_status(status)] == ["a"]


def test_epochs_and_sources_reach_the_purl(tmp_path):
    tar = _fs_tar(tmp_path / "fs.tar", "Package: a\nStatus: install ok installed\nVersion: 1:2.0+dfsg-1\n"
                                       "Architecture: amd64\nSource: a-src (2.0+dfsg-0.1)\n", {})
    (package,) = read_packages(tar)
    assert package == Package("a", "1:2.0+dfsg-1", "amd64", "a-src", "2.0+dfsg-0.1", ())
    from golden.build.sbom import purl, read_system
    assert purl(package, read_system(tar).distro) == "pkg:deb/debian/a@1%3A2.0%2Bdfsg-1?arch=amd64&distro=debian-13.2"


def test_a_package_whose_doc_directory_is_its_sources_gets_that_copyright(tmp_path):
    """dpkg path-excludes drop doc symlinks (libgcc-s1 -> gcc-14-base): the source's copyright file counts."""
    dep5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: GPL-3+\n"
    status = "".join(f"Package: {p}\nStatus: install ok installed\nVersion: 14.2-1\nArchitecture: amd64\n"
                     f"Source: gcc-14\n\n" for p in ("gcc-14-base", "libgcc-s1"))
    packages = read_packages(_fs_tar(tmp_path / "fs.tar", status, {"gcc-14-base": dep5}))
    assert [p.licenses for p in packages] == [("GPL-3+",), ("GPL-3+",)]


def test_a_tar_without_a_dpkg_database_is_refused(tmp_path):
    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    with pytest.raises(GoldenError, match="no var/lib/dpkg/status"):
        read_packages(tmp_path / "empty.tar")
