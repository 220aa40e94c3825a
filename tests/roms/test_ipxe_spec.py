"""``--lab-ipxe-src NAME=SRC[@REV][,patch=...][,with=...]``: parsed, built once, reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from roms.catalog import CATALOG
from roms.ipxe_spec import SpecError, build_spec, parse_ipxe_src
from roms.manifest import read_manifest
from roms.romset import RomSet
from tests.roms.fake_ipxe import make_repo

QUIET = lambda text: None  # noqa: E731 - progress sink


def test_the_full_form_is_parsed(tmp_path: Path) -> None:
    spec = parse_ipxe_src(
        f"mine={tmp_path}/ipxe@my-branch,patch=a.patch,patch=b.patch,with=slam,nics=e1000+pcnet"
    )
    assert (spec.name, spec.src, spec.rev) == ("mine", tmp_path / "ipxe", "my-branch")
    assert spec.patches == (Path("a.patch"), Path("b.patch")) and spec.options == ("slam",)
    assert spec.nics == ("e1000", "pcnet")


def test_an_existing_path_with_an_at_sign_is_not_split(tmp_path: Path) -> None:
    archive = tmp_path / "ipxe@2.0.tar.xz"
    archive.write_bytes(b"")
    assert parse_ipxe_src(f"x={archive}").src == archive and parse_ipxe_src(f"x={archive}").rev is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/src/ipxe", "is not NAME=SRC"),
        ("a b=/src", "must be letters"),
        ("x=/src,with=http3", "unknown option with=http3"),
        ("x=/src,colour=red", "unknown key 'colour'"),
        ("x=/src,patch", "is not KEY=VALUE"),
    ],
)
def test_malformed_specs_show_the_form(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_ipxe_src(text)


def test_a_spec_builds_a_set_the_lab_takes_and_the_same_spec_reuses_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    spec = parse_ipxe_src(f"fixed={repo}@v1.0,with=slam,nics=e1000")
    first = build_spec(spec, tmp_path / "cache", QUIET)
    assert first.out.parent == tmp_path / "cache" / "sets" and first.out.name.startswith("fixed-")
    assert RomSet.parse(f"fixed={first.out}").has_rom(CATALOG["e1000"])
    manifest = read_manifest(first.out)
    assert manifest is not None and manifest.label() == "v1.0 (with slam)"
    again = build_spec(spec, tmp_path / "cache", QUIET)
    assert not again.ran_make and again.out == first.out
