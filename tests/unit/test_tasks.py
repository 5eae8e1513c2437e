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
    (["lab.ssh", "golden-a"], "error: no lab is up"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a[:2]) for a, _ in CASES])
def test_a_common_failure_is_one_line_without_a_traceback(args, message, tmp_path):
    artifacts = tmp_path / "artifacts"
    corrupt = artifacts / "infra" / "20261130.000000"
    corrupt.mkdir(parents=True)
    (corrupt / "manifest.json").write_text("{not json")  # a damaged artifact
    proc = subprocess.run([sys.executable, "-m", "invoke", *[a.format(tmp=tmp_path) for a in args]], cwd=REPO,
                          capture_output=True, text=True,
                          env=dict(os.environ, GOLDEN_ARTIFACTS=str(artifacts), GOLDEN_CACHE=str(tmp_path / "c")))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr
