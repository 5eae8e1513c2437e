"""What changed between two package sets, security first, with the CVEs the
Debian changelogs name (real .deb files made with dpkg-deb)."""
import gzip
import subprocess

from golden.build.archive import fetch_state
from golden.build.changes import change_line, changelog, changes_markdown, cves_between, diff_packages
from golden.build.lock import debs_dir
from golden.spec import load_spec

CHANGELOG = """\
golden-demo (1.4-1) trixie-security; urgency=high

  * Fix CVE-2026-1234 and CVE-2026-20001.

 -- Maintainer <m@example.org>  Mon, 23 Nov 2026 10:00:00 +0000

golden-demo (1.3-1) trixie; urgency=medium

  * Fix CVE-2026-1111 (closes: #1).

 -- Maintainer <m@example.org>  Mon, 02 Nov 2026 10:00:00 +0000

golden-demo (1.2-1) trixie; urgency=medium

  * CVE-2025-9999 was fixed here, before the locked version.

 -- Maintainer <m@example.org>  Mon, 05 Oct 2026 10:00:00 +0000
"""


def make_deb(directory, package, version, changelog_text, log_name="changelog.Debian.gz"):
    root = directory / f"{package}-{version}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
                                             f"Maintainer: m <m@example.org>\nDescription: demo\n")
    doc = root / "usr" / "share" / "doc" / package
    doc.mkdir(parents=True)
    (doc / log_name).write_bytes(gzip.compress(changelog_text.encode()))
    deb = directory / f"{package}_{version.replace(':', '%3a')}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


def test_cves_are_those_of_the_entries_newer_than_the_old_version():
    assert cves_between(CHANGELOG, "1.2-1") == ["CVE-2026-1111", "CVE-2026-1234", "CVE-2026-20001"]
    assert cves_between(CHANGELOG, "1.3-1") == ["CVE-2026-1234", "CVE-2026-20001"]
    assert cves_between(CHANGELOG, "1.2-1~bpo1") == ["CVE-2025-9999", "CVE-2026-1111", "CVE-2026-1234",
                                                       "CVE-2026-20001"]
    assert cves_between(CHANGELOG, "1.4-1") == []


def test_a_changelog_is_read_from_the_deb(tmp_path):
    deb = make_deb(tmp_path, "golden-demo", "1.4-1", CHANGELOG)
    assert changelog(deb, "golden-demo") == CHANGELOG
    assert changelog(deb, "another") is None
    native = make_deb(tmp_path, "golden-native", "3.0.4", CHANGELOG, log_name="changelog.gz")  # as apt's
    assert changelog(native, "golden-native") == CHANGELOG


def test_changes_name_security_updates_first_with_their_cves(write_spec, tmp_path, monkeypatch):
    """A real package the security archive serves now, updated from an older
    version, sorts before other changes; its CVEs come from its .deb in the
    package cache (here one made with that name and version)."""
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    spec = load_spec(write_spec("web", "name: web\nhostname: web\nbase: {suite: trixie}\n"))
    state = fetch_state(spec.base)
    security = next(i for p, i in zip(state.pockets, state.indexes) if p.security)
    name = next(n for n in sorted(security) if state.candidate(n).pocket.security)
    current = state.candidate(name).version
    debs_dir("trixie").mkdir(parents=True)
    # Entry versions that sort between the old version and any current one.
    text = (CHANGELOG.replace("golden-demo (1.4-1)", f"{name} ({current})").replace("(1.3-1)", "(0~2)")
            .replace("(1.2-1)", "(0~0)").replace("golden-demo", name))
    make_deb(debs_dir("trixie"), name, current, text)
    old = {name: "0~0", "aaa-golden-demo": "1.0", "gone-demo": "2.0"}
    new = {name: current, "aaa-golden-demo": "1.1", "added-demo": "3.0"}
    changes = diff_packages(old, new, state, "trixie")
    assert [c["package"] for c in changes] == [name, "aaa-golden-demo", "added-demo", "gone-demo"]
    assert changes[0]["security"] and not any(c["security"] for c in changes[1:])
    assert changes[0]["cves"] == ["CVE-2026-1111", "CVE-2026-1234", "CVE-2026-20001"]  # not the old version's
    assert change_line(changes[0]) == f"{name} 0~0 -> {current} (security: CVE-2026-1111, CVE-2026-1234, CVE-2026-20001)"
    assert change_line(changes[1]) == "aaa-golden-demo 1.0 -> 1.1"  # no .deb in the cache: no CVEs claimed
    assert change_line(changes[2]) == "added-demo (new) -> 3.0"
    assert change_line(changes[3]) == "gone-demo 2.0 -> (removed)"
    text = changes_markdown("web", "20261130.120000", changes, "web.lock refreshed.")
    assert text.index("## Security updates") < text.index(name) < text.index("## Other changes")


def test_a_binary_versioned_apart_from_its_source_counts_only_its_own_entries(tmp_path, monkeypatch):
    """postgresql 17+278+deb13u1 is built by postgresql-common 278+deb13u1: the
    changelog's versions are not the binary's, so comparing them with the old
    binary version (17+278) would count the whole changelog."""
    from golden.build.changes import package_cves
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    debs_dir("trixie").mkdir(parents=True)
    text = "".join(f"postgresql-common ({v}) trixie; urgency=medium\n\n  * Fix {cve}.\n\n -- M <m@e.org>  "
                   f"Mon, 0{i + 1} Nov 2026 10:00:00 +0000\n\n"
                   for i, (v, cve) in enumerate([("278+deb13u1", "CVE-2026-3003"), ("278", "CVE-2026-2002"),
                                                 ("277", "CVE-2026-1001")]))
    make_deb(debs_dir("trixie"), "postgresql", "17+278+deb13u1", text)
    assert package_cves("trixie", "postgresql", "postgresql-common", "17+278", "17+278+deb13u1", None) \
        == ["CVE-2026-3003"]  # no old .deb: the newest entry only
    make_deb(debs_dir("trixie"), "postgresql", "17+277", text[text.index("postgresql-common (277)"):])
    assert package_cves("trixie", "postgresql", "postgresql-common", "17+277", "17+278+deb13u1", None) \
        == ["CVE-2026-2002", "CVE-2026-3003"]  # the old .deb's changelog says where to stop
