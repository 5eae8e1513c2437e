"""Every task's common failure is one line (`error: ...`) and a non-zero
exit, never a traceback."""
import os
import subprocess
import sys

import pytest

from conftest import REPO

CASES = [
    (["build", "--image", "nope"], "error: unknown image 'nope'"),
    (["build", "--locked", "--image", "nope"], "error: unknown image 'nope'"),
    (["test", "--image", "nope"], "error: unknown image 'nope'"),
    (["publish", "--to", "{tmp}/repo", "--image", "infra"], "error: infra: no built artifact"),
    (["publish", "--to", "{tmp}/repo", "--image", "infra", "--version", "20261130.000000"], "error: "),
    (["verify", "--from", "{tmp}/repo", "--image", "infra"], "error: no catalog for 'infra'"),
    (["releases", "--from", "{tmp}/repo", "--image", "infra"], "error: no catalog for 'infra'"),
    (["revoke", "--to", "{tmp}/repo", "--image", "infra", "--version", "../x", "--reason", "r"],
     "error: --version: '../x' is not a golden version"),
    (["clean", "--image", "nope"], "error: unknown image 'nope'"),
    (["lock", "--image", "nope"], "error: unknown image 'nope'"),
    (["outdated", "--image", "nope"], "error: unknown image 'nope'"),
    (["bench", "--image", "nope"], "error: unknown image 'nope'"),
    (["lab.up", "--lab", "{tmp}/no-lab.yaml"], "error: "),
    (["lab.up"], "error: {tmp}/artifacts/infra/20261130.000000/manifest.json: not a valid manifest"),
    (["lab.ssh", "golden-a"], "error: no lab is up"),
]


def _inv(args: list[str], artifacts, cache) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, GOLDEN_ARTIFACTS=str(artifacts), GOLDEN_CACHE=str(cache)))


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a[:2]) for a, _ in CASES])
def test_a_common_failure_is_one_line_without_a_traceback(args, message, tmp_path):
    artifacts = tmp_path / "artifacts"
    corrupt = artifacts / "infra" / "20261130.000000"
    corrupt.mkdir(parents=True)
    (corrupt / "manifest.json").write_text("{not json")  # a damaged artifact
    proc = _inv([a.format(tmp=tmp_path) for a in args], artifacts, tmp_path / "c")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(message.format(tmp=tmp_path)) and proc.stderr.count("\n") == 1, proc.stderr


def test_lab_up_refuses_an_image_with_no_tested_build(tmp_path):
    """Nothing built and validated yet: the shipped lab's first image is
    refused in one line, naming the catalog and what to run."""
    proc = _inv(["lab.up"], tmp_path / "artifacts", tmp_path / "c")
    catalog = (tmp_path / "artifacts" / "infra" / "metadata.json").as_uri()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr == (f"error: no tested box of 'infra' in the catalog {catalog}: run ./inv test to build and "
                           "validate it, or set GOLDEN_CATALOG to a published repository\n")
