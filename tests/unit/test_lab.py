"""The lab layout and the local catalog it reads by default (the lab itself
is brought up and removed by tests/lab in ./inv test)."""
import json

import pytest

from golden.publish.catalog import write_local_catalog
from golden.lab import LAB_FILE, LabError, Machine, check_catalogs, load_lab
from golden.build.manifest import record_test, write_manifest

from conftest import REPO


def test_shipped_lab_is_one_host_per_image():
    machines = load_lab(LAB_FILE)
    assert machines == [Machine("infra", "infra"), Machine("infra-open", "infra-open")]
    assert all((REPO / "images" / f"{m.image}.yaml").is_file() for m in machines)


@pytest.mark.parametrize("text, message", [
    ("", "machines: expected a non-empty list"),
    ("machines: []\n", "machines: expected a non-empty list"),
    ("machines: [{name: a}]\n", "machines[0].image: expected lowercase"),
    ("machines: [{name: a, image: infra, memory: 9}]\n", "machines[0]: expected a mapping with name and image"),
    ("machines: [{name: A, image: infra}]\n", "machines[0].name: expected lowercase"),
    ("machines: [{name: a, image: infra}, {name: a, image: infra-open}]\n", "machines: names must be unique"),
    ("machines: [a\n", "invalid YAML"),
])
def test_bad_lab_layouts_are_refused(tmp_path, text, message):
    lab = tmp_path / "lab.yaml"
    lab.write_text(text)
    with pytest.raises(LabError, match="lab.yaml: " + message.replace("[", r"\[").replace("]", r"\]")):
        load_lab(lab)


def _artifact(image_dir, version, verdict):
    d = image_dir / version
    d.mkdir(parents=True)
    box = d / f"web-{version}.libvirt.box"
    box.write_bytes(version.encode())
    write_manifest(d / "manifest.json", {
        "name": "web", "version": version, "built_at": "x", "spec_sha256": "0", "base": {}, "packages": {},
        "stages": {}, "accelerator": "tcg", "description": "web image",
        "files": [{"name": box.name, "sha256": "ab" * 32, "size": 7}]})
    if verdict is not None:
        record_test(d / "manifest.json", verdict, 5, 0 if verdict else 1, ["test-report.xml"])
    return d


def test_local_catalog_lists_only_tested_builds(tmp_path):
    image_dir = tmp_path / "artifacts" / "web"
    _artifact(image_dir, "20261122.100000", True)
    newest_passed = _artifact(image_dir, "20261122.110000", True)
    _artifact(image_dir, "20261122.120000", False)
    _artifact(image_dir, "20261122.130000", None)
    (image_dir / "latest").symlink_to("20261122.130000")
    catalog = json.loads(write_local_catalog(image_dir).read_text())
    assert catalog["name"] == "golden/web" and catalog["description"] == "web image"
    assert [v["version"] for v in catalog["versions"]] == ["20261122.110000", "20261122.100000"]
    (provider,) = catalog["versions"][0]["providers"]
    assert provider == {"name": "libvirt", "url": (newest_passed / "web-20261122.110000.libvirt.box").as_uri(),
                        "checksum_type": "sha256", "checksum": "ab" * 32, "architecture": "amd64"}
    base, versions = check_catalogs([Machine("w", "web")], str(tmp_path / "artifacts"), tmp_path / "artifacts")
    assert (base, versions) == (str(tmp_path / "artifacts"), {"web": "20261122.110000"})  # the newest tested


def test_lab_refuses_an_image_without_a_tested_build(tmp_path):
    artifacts = tmp_path / "artifacts"
    _artifact(artifacts / "web", "20261122.120000", False)
    with pytest.raises(LabError, match=r"no tested box of 'web' in the catalog .*web/metadata.json: run ./inv test"):
        check_catalogs([Machine("w", "web")], str(artifacts), artifacts)
    assert not (artifacts / "web" / "metadata.json").exists()


def test_lab_down_and_ssh_act_on_the_lab_that_was_brought_up(tmp_path, monkeypatch, capfd):
    """lab.up --lab X records X: lab.ssh (and lab.down) hand it to the real
    Vagrantfile, not the default layout (here X no longer exists, and the
    Vagrantfile says so by name)."""
    import golden.lab
    from golden.lab import lab_ssh
    monkeypatch.setattr(golden.lab, "STATE_DIR", tmp_path / ".lab")
    (tmp_path / ".lab").mkdir()
    other = tmp_path / "other-lab.yaml"
    (tmp_path / ".lab" / "state.json").write_text(json.dumps({"netns": None, "pids": {}, "lab": str(other)}))
    assert lab_ssh("golden-a", "true", tmp_path / "artifacts") != 0
    assert str(other) in capfd.readouterr().err
