"""Real iPXE builds from the upstream archive in ../shared/ipxe/ (or $LAB_IPXE_ARCHIVE_DIR).

Marker ``ipxe_build``.  The archive is a build input for tests only; where it is absent
every test here is skipped with one line saying so.  The builds go to the user's cache
(``~/.cache/netboot-lab/ipxe``), so a second run reuses them: the first run compiles
iPXE once (about 1,040 objects, 1.5-2 min on 2 cores); the patched build and the bisect
step are seeded from it and compile only the files that differ.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from roms.catalog import CATALOG
from roms.header import bios_header_ids
from roms.ipxe_bisect import bisect, shell_verdict
from roms.ipxe_build import BuildRequest, BuildResult, Patch, build_romset, copy_for, remove_copy
from roms.ipxe_tree import cache_root, open_source
from roms.manifest import read_manifest, sha256_file
from roms.payload import rom_has_feature, rom_ipxe_version
from roms.romset import DEBIAN_ROM_DIR, RomSet
from tests.roms.upstream_archive import ARCHIVES, HAVE_ARCHIVE, MISSING, PATCH, fix_then_revert, git

FIX_LINE = "memset ( &socket, 0, sizeof ( socket ) );"
TFTP_C = "src/net/udp/tftp.c"

pytestmark = [
    pytest.mark.ipxe_build,
    pytest.mark.timeout(1800),  # the first run compiles iPXE (the module's shared build)
    pytest.mark.skipif(not HAVE_ARCHIVE, reason=f"{MISSING}: the real ROM build tests need them"),
]


def _progress(text: str) -> None:
    print(f"roms build: {text}")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The archive's e1000 ROM with SLAM, as published: one build shared by the tests below."""
    request = BuildRequest(open_source(ARCHIVES[-1]), (), ("slam",), ("e1000",))
    return build_romset(request, tmp_path_factory.mktemp("upstream"), progress=_progress)


def test_a_rom_built_from_the_archive_names_its_nic_and_carries_slam(upstream: BuildResult) -> None:
    rom = upstream.out / "8086100e.rom"
    assert bios_header_ids(rom) == [(0x8086, 0x100E)]
    assert rom_has_feature(rom, "SLAM") is True
    commit = open_source(ARCHIVES[-1]).commit
    version = rom_ipxe_version(rom)
    assert version is not None and (commit is None or f"(g{commit[:5]})" in version)
    manifest = read_manifest(upstream.out)
    assert manifest is not None and manifest.ipxe_version == version
    assert manifest.roms[0].sha256 == sha256_file(rom) and manifest.options == ("slam",)
    # The lab takes the folder as it is: the NIC's own ID, so no retargeted copy.
    assert RomSet.parse(f"upstream={upstream.out}").checked_rom(CATALOG["e1000"]) == rom
    debian = DEBIAN_ROM_DIR / "pxe-e1000.rom"
    if debian.is_file():
        assert rom_has_feature(debian, "SLAM") is False  # the check can tell a ROM without SLAM


def test_the_same_request_again_reuses_the_cached_rom_without_make(
    upstream: BuildResult, tmp_path: Path
) -> None:
    request = BuildRequest(open_source(ARCHIVES[-1]), (), ("slam",), ("e1000",))
    again = build_romset(request, tmp_path / "again", progress=_progress)
    assert not again.ran_make and again.copy == upstream.copy
    assert sha256_file(tmp_path / "again" / "8086100e.rom") == sha256_file(upstream.out / "8086100e.rom")


def test_the_patched_build_compiles_only_what_the_patch_touches(
    upstream: BuildResult, tmp_path: Path
) -> None:
    # A copy of the patch with a note above it: patch(1) skips the note, but the cache key
    # differs, so this test owns its build copy (CI's upstream-fix set keeps its own) and can
    # remove it to measure a seeded build rather than a cached one.
    patch = tmp_path / PATCH.name
    patch.write_text(f"netboot-lab test copy of {PATCH}\n\n" + PATCH.read_text())
    request = BuildRequest(open_source(ARCHIVES[-1]), (Patch.read(patch),), ("slam",), ("e1000",))
    remove_copy(copy_for(request, cache_root()).directory)
    fixed = build_romset(request, tmp_path / "fixed", progress=_progress)
    assert fixed.seeded_from == upstream.copy.name
    compiled = [line.split()[-1] for line in (fixed.copy / "logs" / "make.log").read_text().splitlines()
                if line.strip().startswith("[BUILD]")]  # fmt: skip
    assert compiled == ["bin/tftp.o"]
    assert FIX_LINE in (fixed.copy / "ipxe" / TFTP_C).read_text()
    assert sha256_file(tmp_path / "fixed" / "8086100e.rom") != sha256_file(upstream.out / "8086100e.rom")
    assert rom_has_feature(tmp_path / "fixed" / "8086100e.rom", "SLAM") is True


def test_bisect_names_the_commit_that_reverted_the_fix(upstream: BuildResult, tmp_path: Path) -> None:
    history = fix_then_revert(tmp_path / "ipxe")
    repo, fix, unrelated, revert = history.repo, history.fix, history.unrelated, history.revert
    head_before, status_before = git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")

    verdict = shell_verdict(f"grep -qF '{FIX_LINE}' {TFTP_C}")
    result = bisect(repo, fix, revert, verdict, options=("slam",), nics=("e1000",), progress=_progress)
    for number, step in enumerate(result.steps, 1):
        took = f"build {step.build_seconds:.1f} s"
        print(f"step {number}: {step.commit[:12]} {step.verdict} ({took}) {step.subject}")
    print(f"first bad commit: {result.first_bad} {result.first_bad_subject}; total {result.seconds:.1f} s")
    assert result.first_bad == revert
    assert [(s.commit, s.verdict) for s in result.steps] == [(unrelated, "good")]
    step_rom = result.steps[0].step_dir / "roms" / "8086100e.rom"
    assert rom_has_feature(step_rom, "SLAM") is True
    assert f"(g{unrelated[:5]})" in (rom_ipxe_version(step_rom) or "")  # built from that commit, not a seed
    assert (git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")) == (
        head_before,
        status_before,
    )
    assert git(repo, "worktree", "list").count("\n") == 0
