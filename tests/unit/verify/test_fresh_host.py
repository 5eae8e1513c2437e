"""The fresh-host test runs the README's own recipe: read from the README,
filled in, and refused with a clear message when the README no longer has
what the test fills in."""
import subprocess

import pytest

from golden.errors import GoldenError
from golden.verify.fresh_host import HOSTNAME, USER, readme_recipe, recipe_script


def test_the_recipe_comes_from_the_readme_and_is_filled_in(tmp_path):
    recipe = readme_recipe()
    assert recipe.startswith("cat > user-data") and recipe.rstrip().endswith(f"ssh -p 2222 {USER}@127.0.0.1")
    script = recipe_script(recipe, tmp_path / "infra-20261130.000000.qcow2", "ssh-ed25519 AAAAC3Nz test\n", 40022)
    assert "ssh-ed25519 AAAAC3Nz test]" in script and "AAAA..." not in script
    assert f"-b {tmp_path}/infra-20261130.000000.qcow2 db1.qcow2" in script
    assert "-nic user,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22" in script and "2222" not in script
    assert "ssh -p" not in script  # the test logs in with its own key
    # Everything else is the README's, line for line.
    kept = [line for line in recipe.splitlines()[:-1] if not any(p in line for p in ("AAAA...", "<version>", "2222"))]
    assert all(line in script.splitlines() for line in kept)
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert f"local-hostname: {HOSTNAME}" in script


@pytest.mark.parametrize("change, message", [
    (lambda r: r.replace("AAAA... you@example.org", "KEY"), "no longer has 'ssh-ed25519 AAAA... you@example.org'"),
    (lambda r: r.replace("-nic user,", "-nic tap,"), "no longer has '-nic user,'"),
    (lambda r: r.replace("ssh -p 2222", "ssh -p 22"), "no longer ends with 'ssh -p 2222 ops@127.0.0.1'"),
    (lambda r: r.replace("-pidfile db1.pid ", ""), "no longer has '-pidfile db1.pid'"),
])
def test_a_recipe_the_test_cannot_fill_in_is_refused(tmp_path, change, message):
    with pytest.raises(GoldenError, match=message):
        recipe_script(change(readme_recipe()), tmp_path / "x.qcow2", "ssh-ed25519 AAAA test", 40022)


def test_a_readme_without_the_recipe_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# nothing here\n")
    with pytest.raises(GoldenError, match="no fresh-host recipe"):
        readme_recipe(readme)
