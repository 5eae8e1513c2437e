"""The archives a spec builds from: pockets, the image's apt sources, version
order, and reading the real Debian archives' signed indexes."""
import subprocess

import pytest

from golden.build.archive import (ArchiveError, ArchiveUnreachable, compare_versions, fetch_state, image_sources,
                            parse_packages, pockets)
from golden.spec import load_spec

SPEC = "name: web\nhostname: web\nbase: {{suite: trixie{extra}}}\n"


def base(write_spec, extra=""):
    return load_spec(write_spec("web", SPEC.format(extra=extra))).base


def test_a_spec_builds_from_the_release_its_updates_and_its_security_archive(write_spec):
    lines = [p.sources_line(["main"]) for p in pockets(base(write_spec))]
    assert lines == ["deb http://deb.debian.org/debian trixie main",
                     "deb http://deb.debian.org/debian trixie-updates main",
                     "deb http://deb.debian.org/debian-security trixie-security main"]
    assert [p.security for p in pockets(base(write_spec))] == [False, False, True]
    internal = base(write_spec, ", mirror: 'http://apt.internal/debian/', "
                                "security_mirror: 'https://apt.internal/security'")
    assert [p.uri for p in pockets(internal)] == ["http://apt.internal/debian", "http://apt.internal/debian",
                                                  "https://apt.internal/security"]


def test_opting_out_of_updates_or_security_is_explicit_and_the_image_sources_follow(write_spec):
    assert [p.suite for p in pockets(base(write_spec, ", security: false"))] == ["trixie", "trixie-updates"]
    assert [p.suite for p in pockets(base(write_spec, ", updates: false"))] == ["trixie", "trixie-security"]
    sources = image_sources(base(write_spec, ", security: false"))
    assert "Suites: trixie trixie-updates\n" in sources and "security" not in sources


def test_the_image_ships_deb822_sources_with_their_key(write_spec):
    sources = image_sources(base(write_spec, ", components: [main, contrib]"))
    assert sources == ("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie trixie-updates\n"
                       "Components: main contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.pgp\n\n"
                       "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: trixie-security\n"
                       "Components: main contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.pgp\n")


def test_a_snapshot_builds_from_debians_snapshot_archive_and_ships_the_mirrors(write_spec):
    snap = base(write_spec, ", snapshot: 20261130T091500Z")
    assert [p.sources_line(["main"]) for p in pockets(snap)] == [
        "deb [check-valid-until=no] https://snapshot.debian.org/archive/debian/20261130T091500Z trixie main",
        "deb [check-valid-until=no] https://snapshot.debian.org/archive/debian/20261130T091500Z trixie-updates main",
        "deb [check-valid-until=no] https://snapshot.debian.org/archive/debian-security/20261130T091500Z "
        "trixie-security main"]
    # Hosts made from the image get their updates from the mirrors, not from a frozen snapshot.
    assert "snapshot" not in image_sources(snap)


@pytest.mark.parametrize("a, b", [
    ("1.0", "1.0"), ("1.0", "1.0-1"), ("1.0~rc1", "1.0"), ("1:0.1", "2.0"), ("13.8+deb13u7", "13.8+deb13u8"),
    ("3.5.1-1", "3.5.1-1+deb13u1"), ("3.5.1-1~deb13u1", "3.5.1-1"), ("2.41-5", "2.41-12"), ("1.0a", "1.0+"),
    ("1.0.0", "1.0"), ("0.5.12-12", "0.5.12-2"), ("1.2.3~~", "1.2.3~"), ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12"),
    ("9.7-3", "9.7-3+b1"), ("1:2.41.5-0+deb13u1", "2.41.5-0+deb13u2"),
])
def test_versions_are_ordered_as_dpkg_orders_them(a, b):
    def dpkg(op):
        return subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0
    expected = 0 if dpkg("eq") else (-1 if dpkg("lt") else 1)
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected


def test_an_index_keeps_the_highest_version_and_the_source_package():
    index = parse_packages("Package: libfoo1\nSource: foo (1.2-1)\nVersion: 1.2-1+b1\nFilename: pool/f/libfoo1.deb\n"
                           "SHA256: aa\n\nPackage: libfoo1\nSource: foo\nVersion: 1.10-1\n\n"
                           "Package: bar\nVersion: 2\nDescription: x\n Version: 9\n")
    assert index["libfoo1"] == ["1.10-1", "foo", "", ""]
    assert index["bar"] == ["2", "bar", "", ""]


def test_the_real_archives_are_read_verified_and_cached(write_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    state = fetch_state(base(write_spec))
    base_files = state.candidate("base-files")
    assert base_files and base_files.version.startswith("13.") and state.serves("base-files", base_files.version)
    assert state.candidate("no-such-package-golden") is None
    # The security archive serves packages of its own, and they are flagged as such.
    security = next(i for p, i in zip(state.pockets, state.indexes) if p.security)
    assert security and all(p.security == (p.suite == "trixie-security") for p in state.pockets)
    # Indexes are kept by hash: reading unchanged archives again downloads no index.
    cached = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "archive").iterdir()}
    assert cached
    again = fetch_state(base(write_spec))
    assert again.digest == state.digest
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "archive").iterdir()} == cached


def test_a_tampered_release_is_refused(write_spec, tmp_path, monkeypatch):
    """A mirror whose InRelease was altered after signing (here one character
    of the real file) is refused before anything is read from it."""
    monkeypatch.setenv("GOLDEN_CACHE", str(tmp_path / "cache"))
    real = subprocess.run(["curl", "-sf", "http://deb.debian.org/debian/dists/trixie/InRelease"],
                          capture_output=True, check=True).stdout
    mirror = tmp_path / "mirror"
    (mirror / "dists" / "trixie").mkdir(parents=True)
    (mirror / "dists" / "trixie" / "InRelease").write_bytes(real.replace(b"Suite: stable", b"Suite: stabl3", 1))
    spec_base = base(write_spec, f", mirror: 'file://{mirror}', updates: false, security: false")
    with pytest.raises(ArchiveError, match=r"InRelease: signature not valid"):
        fetch_state(spec_base)
    missing = base(write_spec, f", mirror: 'file://{tmp_path}/none', updates: false, security: false")
    with pytest.raises(ArchiveUnreachable, match=r"none/dists/trixie/InRelease"):
        fetch_state(missing)
