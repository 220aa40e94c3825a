"""ROM set builds from an iPXE tree, on a stand-in tree (tests/roms/fake_ipxe.py): fast, no compiler run.

The real archive is built in test_ipxe_real.py; here the machinery around make is
checked: which ROMs, the user's tree left alone, reuse without make, a patched copy
seeded from the unpatched one, and the errors a user sees.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import pytest

from roms import build_cli
from roms.catalog import CATALOG
from roms.ipxe_build import (
    BuildError,
    BuildRequest,
    Patch,
    RomDef,
    build_romset,
    choose_roms,
    parse_rom_defs,
    timed_progress,
)
from roms.ipxe_tree import TreeError, extract, open_source
from roms.manifest import ManifestError, read_manifest, verify_manifest
from tests.roms.fake_ipxe import commit_all, compiled, driver_text, git, make_repo, make_tree

QUIET = lambda text: None  # noqa: E731 - progress sink

ROM_DEFS = """\
# NIC\t8086100e\t8086,100e\t82540EM
DRIVER_8086100e = intel
ROM_TYPE_8086100e = pci
ROM_DESCRIPTION_8086100e = "82540EM"
PCI_VENDOR_8086100e = 0x8086
PCI_DEVICE_8086100e = 0x100e
ROMS += 8086100e
ROMS_intel += 8086100e

# NIC\t3c509-eisa\t-\t3c509 (EISA)
DRIVER_3c509-eisa = 3c509-eisa
ROM_TYPE_3c509-eisa = isa
ROMS += 3c509-eisa
"""


def test_rom_defs_are_read_as_iPXE_writes_them() -> None:
    defs = parse_rom_defs(ROM_DEFS)
    assert defs == {"8086100e": RomDef("8086100e", "intel", "8086:100e")}  # the ISA ROM is left out


def test_each_nic_gets_its_own_id_else_a_family_id_else_a_reason() -> None:
    defs = {
        "8086100e": RomDef("8086100e", "intel", "8086:100e"),
        "80861229": RomDef("80861229", "eepro100", "8086:1229"),
    }
    nics = [CATALOG[n] for n in ("e1000", "e1000-82545em", "i82550", "rtl8139", "ne2k_isa")]
    chosen, absent = choose_roms(nics, defs)
    assert {k: v[1] for k, v in chosen.items()} == {
        "8086100e": ["e1000", "e1000-82545em"],  # 82545EM's own ID is not offered: its family's is
        "80861229": ["i82550"],
    }
    assert [a["nic"] for a in absent] == ["rtl8139", "ne2k_isa"]
    assert "10ec:8139" in absent[0]["reason"] and "no PCI option ROM" in absent[1]["reason"]


def test_the_cache_key_follows_patch_contents_and_options(tmp_path: Path) -> None:
    source = open_source(make_repo(tmp_path / "repo"))
    patch = tmp_path / "a.patch"
    patch.write_text("one")
    first = BuildRequest(source, (Patch.read(patch),), ("slam",))
    patch.write_text("two")
    assert BuildRequest(source, (Patch.read(patch),), ("slam",)).key() != first.key()
    assert BuildRequest(source, first.patches, ()).key() != first.key()
    assert BuildRequest(source, first.patches, ("slam", "slam")).key() == first.key()
    header = "/* written by netboot-lab's `lab roms build` */\n"
    assert first.config_files() == {"src/config/local/general.h": header + "#define DOWNLOAD_PROTO_SLAM\n"}
    with pytest.raises(BuildError, match="unknown build option 'http3'"):
        BuildRequest(source, (), ("http3",)).config_files()


# --- sources -----------------------------------------------------------------------------------


def _archive(path: Path, tree: Path, top: str = "ipxe", commit: str | None = None) -> Path:
    with tarfile.open(
        path, "w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": commit} if commit else None
    ) as tar:
        tar.add(tree, arcname=top)
    return path


def test_an_archive_is_named_by_file_and_sha256_and_carries_git_archive_s_commit(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    commit = "0ab2277c40f1de56c736b9e7db7ee23d52509ec5"
    source = open_source(_archive(tmp_path / "ipxe-x.tar.gz", tree, commit=commit))
    assert (source.kind, source.describe, source.commit) == ("archive", "ipxe-x.tar.gz", commit)
    assert len(source.digest) == 64
    extract(source, tmp_path / "copy")
    assert (tmp_path / "copy" / "src" / "Makefile").is_file()  # the top folder ipxe/ is dropped
    plain = open_source(_archive(tmp_path / "other.tar.gz", tree, top="ipxe-1.21"))
    assert plain.commit is None


def test_a_checkout_is_named_by_git_describe_and_rev_picks_the_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    first = git(repo, "rev-parse", "HEAD")
    (repo / "src" / "drivers" / "net" / "intel.c").write_text(driver_text(["8086:100e"]))
    second = commit_all(repo, "intel: fewer IDs")
    assert open_source(repo).commit == second
    old = open_source(repo / "src", rev="v1.0")  # any folder inside the checkout
    assert (old.kind, old.commit, old.describe, old.path) == ("git", first, "v1.0", repo)


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("missing", "does not exist"),
        ("plain-folder", "not a git checkout"),
        ("bad-rev", "has no commit 'nosuch'"),
        ("rev-on-archive", "applies to a git checkout"),
        ("not-ipxe", "no src/Makefile"),
    ],
)
def test_sources_that_cannot_be_built_say_why(tmp_path: Path, what: str, message: str) -> None:
    repo = make_repo(tmp_path / "repo")
    rev = None
    if what == "missing":
        src = tmp_path / "nothing"
    elif what == "plain-folder":
        src = make_tree(tmp_path / "plain")
    elif what == "bad-rev":
        src, rev = repo, "nosuch"
    elif what == "rev-on-archive":
        src, rev = _archive(tmp_path / "a.tar.gz", repo), "v1.0"
    else:
        src = tmp_path / "other"
        src.mkdir()
        git(src, "init", "-q")
        (src / "x").write_text("x")
        commit_all(src, "x")
    with pytest.raises(TreeError, match=message):
        open_source(src, rev)


# --- builds ------------------------------------------------------------------------------------


def _snapshot(repo: Path) -> dict[str, object]:
    """What a build must not change in the user's checkout."""
    files = {str(p.relative_to(repo)): p.stat().st_mtime_ns for p in repo.rglob("*") if ".git" not in p.parts}
    return {
        "head": git(repo, "rev-parse", "HEAD"),
        "status": git(repo, "status", "--porcelain", "--ignored"),
        "worktrees": git(repo, "worktree", "list"),
        "files": files,
    }


def test_a_checkout_builds_in_a_copy_and_a_second_request_reuses_the_roms(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    before = _snapshot(repo)
    request = BuildRequest(open_source(repo), (), ("slam",), ("e1000", "e1000e", "rtl8139", "i82550"))
    result = build_romset(request, tmp_path / "out", tmp_path / "cache", QUIET)
    assert _snapshot(repo) == before
    assert result.ran_make and result.copy.is_relative_to(tmp_path / "cache" / "builds")
    tree = result.copy / "ipxe"
    assert sorted(compiled(tree)) == ["eepro100", "intel", "realtek"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "10ec8139.rom", "8086100e.rom", "808610d3.rom", "80861209.rom", "manifest.json",
    ]  # fmt: skip
    rom = (tmp_path / "out" / "8086100e.rom").read_text()
    assert "#define DOWNLOAD_PROTO_SLAM" in rom  # the option went through config/local/general.h
    assert f"version {request.source.commit}" in rom  # GITVERSION given to make
    manifest = read_manifest(tmp_path / "out")
    assert manifest is not None
    assert manifest.source["commit"] == request.source.commit and manifest.options == ("slam",)
    assert manifest.rom_for("8086:1209") is not None and manifest.rom_for("8086:1209").nics == ("i82550",)  # type: ignore[union-attr]
    assert verify_manifest(tmp_path / "out") == []

    again = build_romset(request, tmp_path / "out2", tmp_path / "cache", QUIET)
    assert not again.ran_make
    assert compiled(tree) == compiled(result.copy / "ipxe")  # nothing compiled the second time
    assert (tmp_path / "out2" / "8086100e.rom").read_bytes() == (
        tmp_path / "out" / "8086100e.rom"
    ).read_bytes()


def test_a_patched_build_is_seeded_from_the_unpatched_one_and_compiles_only_what_the_patch_touches(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    source = open_source(repo)
    nics = ("e1000", "rtl8139", "eepro100")
    base = build_romset(
        BuildRequest(source, (), ("slam",), nics), tmp_path / "base", tmp_path / "cache", QUIET
    )
    patch = tmp_path / "realtek.patch"
    patch.write_text(
        "--- a/src/drivers/net/realtek.c\n+++ b/src/drivers/net/realtek.c\n@@ -1,2 +1,3 @@\n"
        " /* fake driver */\n PCI_ROM ( 0x10ec, 0x8139 ),\n+/* fixed */\n"
    )
    fixed = build_romset(
        BuildRequest(source, (Patch.read(patch),), ("slam",), nics),
        tmp_path / "fixed",
        tmp_path / "cache",
        QUIET,
    )
    assert fixed.seeded_from == base.copy.name
    assert compiled(fixed.copy / "ipxe") == [*compiled(base.copy / "ipxe"), "realtek"]
    assert "/* fixed */" in (tmp_path / "fixed" / "10ec8139.rom").read_text()
    assert "/* fixed */" not in (tmp_path / "base" / "10ec8139.rom").read_text()
    manifest = read_manifest(tmp_path / "fixed")
    assert manifest is not None and manifest.label() == "v1.0 + realtek.patch (with slam)"
    assert manifest.patches[0]["sha256"] == Patch.read(patch).sha256


def test_a_seeded_build_of_another_commit_relinks_its_roms_with_its_own_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    first = build_romset(
        BuildRequest(open_source(repo), (), (), ("e1000",)), tmp_path / "a", tmp_path / "c", QUIET
    )
    (repo / "README").write_text("no source of the ROM changes\n")
    second = commit_all(repo, "README only")
    later = build_romset(
        BuildRequest(open_source(repo), (), (), ("e1000",)), tmp_path / "b", tmp_path / "c", QUIET
    )
    assert later.seeded_from == first.copy.name
    assert compiled(later.copy / "ipxe") == compiled(first.copy / "ipxe")  # no driver compiled again
    assert (
        f"version {second}" in (tmp_path / "b" / "8086100e.rom").read_text()
    )  # but the ROM is this commit's


def test_a_patch_that_does_not_apply_names_the_patch_and_its_log(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    patch = tmp_path / "stale.patch"
    patch.write_text(
        "--- a/src/drivers/net/realtek.c\n+++ b/src/drivers/net/realtek.c\n@@ -1,1 +1,1 @@\n-nope\n+yes\n"
    )
    request = BuildRequest(open_source(repo), (Patch.read(patch),), (), ("rtl8139",))
    with pytest.raises(BuildError) as info:
        build_romset(request, tmp_path / "out", tmp_path / "cache", QUIET)
    text = str(info.value)
    assert f"patch {patch} does not apply" in text
    log = Path(text.rsplit("full log: ", 1)[1].strip())
    assert log.is_file() and "FAILED" in log.read_text()
    assert not (tmp_path / "out").exists()


def test_a_make_failure_names_the_log_and_the_error_and_the_fixed_commit_builds(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    driver = repo / "src" / "drivers" / "net" / "realtek.c"
    driver.write_text(driver_text(["10ec:8139"], "#error broken\n"))
    commit_all(repo, "break realtek")
    with pytest.raises(BuildError) as info:
        build_romset(
            BuildRequest(open_source(repo), (), (), ("rtl8139",)), tmp_path / "out", tmp_path / "c", QUIET
        )
    text = str(info.value)
    assert "make failed" in text and "realtek.c:1: error: this driver does not compile" in text
    assert Path(text.rsplit("full log: ", 1)[1].strip()).name == "make.log"
    driver.write_text(driver_text(["10ec:8139"]))
    commit_all(repo, "fix realtek")
    result = build_romset(
        BuildRequest(open_source(repo), (), (), ("rtl8139",)), tmp_path / "out", tmp_path / "c", QUIET
    )
    assert compiled(result.copy / "ipxe") == ["realtek"]


def test_the_out_folder_must_be_new_or_one_this_tool_wrote(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(BuildError, match="holds files but no manifest.json"):
        build_romset(BuildRequest(open_source(repo), (), (), ("e1000",)), out, tmp_path / "cache", QUIET)
    assert (out / "mine.txt").read_text() == "keep me"


def test_missing_build_tools_name_the_apt_get_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import roms.ipxe_build as ipxe_build

    monkeypatch.setattr(ipxe_build, "missing_build_packages", lambda need_patch=False: ["liblzma-dev"])
    repo = make_repo(tmp_path / "repo")
    with pytest.raises(
        BuildError,
        match=r"needs liblzma-dev; run: sudo apt-get update && sudo apt-get install -y liblzma-dev",
    ):
        build_romset(
            BuildRequest(open_source(repo), (), (), ("e1000",)), tmp_path / "o", tmp_path / "c", QUIET
        )


def test_the_cache_honours_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    repo = make_repo(tmp_path / "repo")
    result = build_romset(BuildRequest(open_source(repo), (), (), ("e1000",)), tmp_path / "out", None, QUIET)
    assert result.copy.parent == tmp_path / "xdg" / "netboot-lab" / "ipxe" / "builds"


# --- manifest ----------------------------------------------------------------------------------


def test_a_changed_rom_or_a_broken_manifest_is_reported(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    out = tmp_path / "out"
    build_romset(BuildRequest(open_source(repo), (), (), ("e1000",)), out, tmp_path / "cache", QUIET)
    with (out / "8086100e.rom").open("a") as rom:
        rom.write("tampered")
    assert verify_manifest(out) == [
        "8086100e.rom differs from the manifest's sha256 (changed after the build)"
    ]
    assert read_manifest(tmp_path) is None
    (out / "manifest.json").write_text(json.dumps({"format": 1}))
    with pytest.raises(ManifestError, match="rebuild it with `lab roms build`"):
        read_manifest(out)


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_build_then_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path / "repo")
    out = tmp_path / "out"
    argv = ["roms", "build", str(repo), "--rev", "v1.0", "--with", "slam", "--nics", "e1000,pcnet"]
    assert build_cli.main([*argv, "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    captured = capsys.readouterr()
    assert f"{out / '8086100e.rom'}\t8086:100e\tintel\te1000" in captured.out
    assert "no ROM for pcnet: the tree's drivers list none of 1022:2000" in captured.err
    assert "objects compiled" in captured.err  # make's progress, condensed
    assert build_cli.main(["roms", "show", str(out)]) == 0
    assert "v1.0 (with slam)" in capsys.readouterr().out
    assert build_cli.main(["roms", "build", str(tmp_path / "nowhere"), "--out", str(out)]) == 1
    assert "does not exist" in capsys.readouterr().err
    (repo / "README").write_text("edited, not committed\n")
    argv = ["roms", "build", str(repo), "--nics", "e1000", "--cache", str(tmp_path / "cache")]
    assert build_cli.main([*argv, "--out", str(tmp_path / "out2")]) == 0
    assert "has uncommitted changes; building the commit v1.0 without them" in capsys.readouterr().err


def test_progress_lines_carry_elapsed_seconds(tmp_path: Path) -> None:
    stream = io.StringIO()
    repo = make_repo(tmp_path / "repo")
    request = BuildRequest(open_source(repo), (), (), ("e1000",))
    build_romset(request, tmp_path / "o", tmp_path / "c", timed_progress(stream))
    lines = stream.getvalue().splitlines()
    assert all(re.match(r"roms build \[ *\d+\.\d s\] ", line) for line in lines), lines
    text = "\n".join(lines)
    assert "extracted v1.0" in text and "the tree offers 6 PCI ROMs" in text and "make 1 ROMs" in text
