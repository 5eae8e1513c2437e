"""The package's shape: the layers import only downward, stage cache keys
follow the code, and no function grows past 50 lines."""
import ast
import shutil
from pathlib import Path

import pytest

from golden.build.pipeline import STAGES, code_digest, code_files

from conftest import REPO

# Lowest first. A module may import from its own layer or a lower one; vm is
# a leaf: it imports only from the first layer.
LAYERS = [{"errors", "files", "paths", "settings"}, {"vm", "spec"}, {"build"}, {"publish"}, {"lab"}, {"verify"}, {"bench"}]


def layer(part: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if part in names)


def golden_modules():
    return sorted((REPO / "golden").rglob("*.py"))


def imported(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("golden"):
            found |= {node.module} if node.module != "golden" else {f"golden.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("golden.")}
    return found


@pytest.mark.parametrize("path", golden_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_only_point_down(path):
    parts = path.relative_to(REPO / "golden").with_suffix("").parts
    own = parts[0]
    if own == "__init__":
        return
    for name in imported(path):
        other = name.split(".")[1]
        assert layer(other) <= layer(own), f"{path.name} ({own}) imports {name}, a higher layer"
        if own == "vm":
            assert layer(other) == 0 or other == "vm", f"vm is a leaf, but {path.name} imports {name}"


def test_the_layer_rule_catches_an_upward_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("from golden.build.pipeline import build_image\n")
    assert layer(next(iter(imported(bad))).split(".")[1]) > layer("vm")


def test_editing_any_module_a_stage_uses_changes_its_key(tmp_path):
    for name in ("golden", "provision"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    # Once missed by a hand-kept list: the code each of these stages runs.
    named = {"rootfs": {"golden/build/lock.py", "golden/vm/runner.py", "provision/rootfs/customize.sh",
                        "provision/rootfs/import-images.sh",
                        "golden/build/lock_mark_auto.sh"},
             "provision": {"golden/build/templates.py", "golden/vm/runner.py"}}
    for stage in STAGES:
        module = stage.module.__name__
        files = code_files(module, tmp_path)
        before = code_digest(module, tmp_path)
        for path in sorted(files):
            original = path.read_bytes()
            path.write_bytes(original + b"\n# edited\n")
            assert code_digest(module, tmp_path) != before, f"{stage.name}: editing {path} left its key"
            path.write_bytes(original)
        assert code_digest(module, tmp_path) == before
        assert {str(p.relative_to(tmp_path)) for p in files} >= named.get(stage.name, set())
    lab = tmp_path / "golden" / "lab.py"  # not used by any stage
    before = code_digest("golden.build.stages.rootfs", tmp_path)
    lab.write_text(lab.read_text() + "\n# edited\n")
    assert code_digest("golden.build.stages.rootfs", tmp_path) == before


def test_no_function_is_longer_than_50_lines():
    long = [f"{path.relative_to(REPO)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in golden_modules() for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 50]
    assert long == []


def test_every_unit_test_file_is_collected():
    """pytest skips folders named build by default: tests/unit/build must not be lost."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          str(REPO / "tests" / "unit")], cwd=REPO, capture_output=True, text=True).stdout
    collected = {line.split("::")[0] for line in out.splitlines() if "::" in line}
    files = {str(p.relative_to(REPO)) for p in (REPO / "tests" / "unit").rglob("test_*.py")}
    assert files and files <= collected, sorted(files - collected)
