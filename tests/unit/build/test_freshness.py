"""Current by default, exact on demand: the plan a build makes from its lock
and the real archives, and a stale lock refreshed by a real mmdebstrap run
of a tiny container image (its own package cache, so nothing is warm)."""
import io
import os
import subprocess
import sys

import pytest

from golden.build.archive import fetch_state
from golden.build.pipeline import BuildContext, refresh_lock
from golden.build.stages.containers import build_container_image, read_packages
from golden.errors import GoldenError
from golden.build.freshness import check_current, plan_build
from golden.build.lock import LockError, lock_path, read_lock, write_lock
from golden.vm.runner import BuildLog
from golden.spec import ContainerImage, load_spec

from conftest import REPO, offline_python, quiet_log

TINY = ContainerImage(name="tiny")
SECTION = "container tiny"
REQUESTED = {SECTION: []}


@pytest.fixture(scope="module")
def current(tmp_path_factory):
    """The tiny image's packages as the archives serve them now (a real,
    unpinned run), with its own package cache and spec directory."""
    tmp = tmp_path_factory.mktemp("fresh")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLDEN_CACHE", str(tmp / "cache"))
        (tmp / "images").mkdir()
        (tmp / "images" / "web.yaml").write_text("name: web\nhostname: web\nbase: {suite: trixie}\n"
                                                 "container_images: [{name: tiny}]\n")
        spec = load_spec(tmp / "images" / "web.yaml")
        (tmp / "first").mkdir()
        build_container_image(spec, TINY, tmp / "first", quiet_log(tmp / "build.log"))
        yield spec, read_packages(tmp / "first", TINY), tmp


@pytest.fixture
def env(current, monkeypatch):
    spec, packages, tmp = current
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp / "cache"))
    lock_path(spec).unlink(missing_ok=True)
    return spec, packages, tmp


def test_a_lock_of_the_current_versions_is_built_exactly(env):
    spec, packages, _ = env
    write_lock(lock_path(spec), {SECTION: packages})
    plan = plan_build(spec, REQUESTED)
    assert plan.pins == {SECTION: packages} and not plan.refresh
    assert plan.reason == "every locked version is current: building exactly the lock"


def test_a_stale_lock_is_refreshed_and_the_changes_named(env, tmp_path):
    """A copy of the lock edited to versions no archive has: the build takes
    the current versions, rewrites the lock and names each package."""
    spec, packages, _ = env
    stale = dict(packages, **{"base-files": "1.0-gone", "dash": "0.1-gone"})
    write_lock(lock_path(spec), {SECTION: stale})
    plan = plan_build(spec, REQUESTED)
    assert plan.refresh and plan.reason.startswith("the archives moved: 2 locked versions are not current "
                                                   f"(base-files 1.0-gone -> {packages['base-files']}, dash 0.1-gone")
    out = io.StringIO()
    log = BuildLog(tmp_path / "build.log", echo=out)
    build_container_image(spec, TINY, tmp_path, log, (plan.pins or {}).get(SECTION))
    check_current(read_packages(tmp_path, TINY), plan.state, "container image tiny")
    changes, note = refresh_lock(BuildContext(spec, plan, log).compute_keys(), {SECTION: read_packages(tmp_path, TINY)})
    assert read_lock(lock_path(spec))[SECTION] == packages
    assert {c["package"] for c in changes} == {"base-files", "dash"}
    assert f"base-files 1.0-gone -> {packages['base-files']}" in out.getvalue()
    assert f"dash 0.1-gone -> {packages['dash']}" in out.getvalue()
    assert note.startswith("web.lock refreshed: 2 packages changed")
    assert plan_build(spec, REQUESTED).reason.startswith("every locked version is current")


def test_a_spec_whose_packages_changed_is_resolved_again(env):
    spec, packages, _ = env
    write_lock(lock_path(spec), {SECTION: packages})
    plan = plan_build(spec, {SECTION: ["socat"]})
    assert plan.refresh and "the spec's packages changed ([container tiny] socat is in the spec" in plan.reason


def test_locked_fails_before_any_stage_naming_every_missing_version(env, tmp_path):
    spec, packages, tmp = env
    write_lock(lock_path(spec), {SECTION: dict(packages, **{"base-files": "1.0-gone", "dash": "0.1-gone"})})
    with pytest.raises(LockError) as err:
        plan_build(spec, REQUESTED, locked=True)
    message = str(err.value)
    assert message.startswith("web.lock: 2 locked versions are in neither the archives nor the package cache: "
                              "base-files 1.0-gone, dash 0.1-gone. ")
    assert "base.snapshot" in message and "without --locked" in message and "\n" not in message
    write_lock(lock_path(spec), {SECTION: packages})
    assert plan_build(spec, REQUESTED, locked=True).pins == {SECTION: packages}
    with pytest.raises(LockError, match=r"socat is in the spec, but not in the lock"):
        plan_build(spec, {SECTION: ["socat"]}, locked=True)


def test_no_lock_builds_current_versions_and_locked_needs_one(env):
    spec, _, _ = env
    assert plan_build(spec, REQUESTED).refresh
    with pytest.raises(LockError, match="web.lock: --locked needs a lock file; there is none yet"):
        plan_build(spec, REQUESTED, locked=True)


def offline_plan(spec, tmp):
    code = ("from pathlib import Path; from golden.build.freshness import plan_build; from golden.spec import load_spec; "
            f"print(plan_build(load_spec(Path({spec.path!r})), {REQUESTED!r}).reason)")
    return offline_python(code, tmp / "cache")


def test_unreachable_archives_build_the_lock_from_the_package_cache(env):
    spec, packages, tmp = env
    write_lock(lock_path(spec), {SECTION: packages})
    proc = offline_plan(spec, tmp)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("the archives are unreachable: building the lock from the package cache")
    write_lock(lock_path(spec), {SECTION: dict(packages, dash="0.1-gone")})
    proc = offline_plan(spec, tmp)
    assert proc.returncode != 0
    assert ("web.lock: 1 locked versions are in neither the package cache (the archives are unreachable): "
            "dash 0.1-gone") in proc.stderr


def test_an_image_is_never_built_behind_its_archives(env):
    spec, packages, _ = env
    state = fetch_state(spec.base)
    check_current(packages, state, "container image tiny")
    check_current({"golden-not-in-any-archive": "1"}, state, "x")  # not from the archives: nothing to compare
    with pytest.raises(GoldenError) as err:
        check_current(dict(packages, **{"base-files": "1.0"}), state, "container image tiny")
    assert str(err.value) == ("container image tiny: installed behind the archives: "
                              f"base-files 1.0 (the archives serve {packages['base-files']})")
