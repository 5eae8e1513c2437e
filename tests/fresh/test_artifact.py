"""The artifact beside the qcow2 this run booted: every other format holds
exactly that disk, and both SBOMs pass the reference validators and list
exactly the image's packages. Checked on the build host; no VM needed."""
import json
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from golden.build.formats import SUFFIXES, check_same_disk, format_of
from golden.vm.runner import BuildLog


@pytest.fixture(scope="module")
def qcow2(request) -> Path:
    return Path(request.config.getoption("golden_qcow2"))


def test_every_other_format_holds_the_tested_disk(qcow2, manifest, tmp_path):
    stem = f"{manifest['name']}-{manifest['version']}"
    made = {f["name"] for f in manifest["files"]}
    for fmt in set(manifest["outputs"]) & set(SUFFIXES):
        path = qcow2.parent / f"{stem}.{SUFFIXES[fmt]}"
        assert path.name in made and format_of(path) == fmt
        check_same_disk(qcow2, path, fmt, BuildLog(tmp_path / "compare.log", echo=open("/dev/null", "w")))


def test_the_sboms_pass_the_reference_validators_and_list_the_images_packages(qcow2, manifest):
    stem = qcow2.parent / f"{manifest['name']}-{manifest['version']}"
    spdx_path, cdx_path = Path(f"{stem}.spdx.json"), Path(f"{stem}.cdx.json")
    assert [m.validation_message for m in validate_full_spdx_document(parse_file(str(spdx_path)))] == []
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(cdx_path.read_text()) is None
    spdx = json.loads(spdx_path.read_text())
    listed = {p["name"]: p["versionInfo"] for p in spdx["packages"] if p["SPDXID"].startswith("SPDXRef-Package-image-")}
    assert listed == manifest["packages"]
    bom = json.loads(cdx_path.read_text())
    assert {c["name"]: c["version"] for c in bom["components"] if c["type"] == "library"} == manifest["packages"]
    assert {spdx_path.name, cdx_path.name} <= {f["name"] for f in manifest["files"]}
