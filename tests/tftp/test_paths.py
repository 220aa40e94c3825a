"""Only files inside the served root can be reached, whatever the name or symlinks say."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netboot.tftp.packets import ErrorCode
from netboot.tftp.paths import PathRefused, resolve


@pytest.fixture
def root(tmp_path: Path) -> Path:
    served = tmp_path / "root"
    (served / "sub").mkdir(parents=True)
    (served / "boot.img").write_bytes(b"img")
    (served / "sub" / "f").write_bytes(b"f")
    (tmp_path / "secret").write_bytes(b"secret")
    os.symlink(tmp_path / "secret", served / "escape")
    os.symlink(tmp_path, served / "updir")
    os.symlink("sub/f", served / "inside")
    return served


@pytest.mark.parametrize("name", ["boot.img", "/boot.img", "./boot.img", "sub//f", "inside"])
def test_names_inside_the_root_resolve(root: Path, name: str) -> None:
    assert Path(resolve(str(root), name)).read_bytes() in (b"img", b"f")


def test_a_name_starting_with_the_root_path_is_accepted(root: Path) -> None:
    assert resolve(str(root), f"{root}/boot.img") == str(root / "boot.img")


@pytest.mark.parametrize(
    "name", ["../secret", "sub/../../secret", "/../secret", "..", "sub/..", "a/../boot.img"]
)
def test_dotdot_is_refused(root: Path, name: str) -> None:
    with pytest.raises(PathRefused) as info:
        resolve(str(root), name)
    assert info.value.code == ErrorCode.ACCESS_VIOLATION


@pytest.mark.parametrize("name", ["escape", "updir/secret", "/updir/secret"])
def test_symlinks_leaving_the_root_are_refused(root: Path, name: str) -> None:
    with pytest.raises(PathRefused) as info:
        resolve(str(root), name)
    assert info.value.code == ErrorCode.ACCESS_VIOLATION


def test_absolute_path_outside_is_taken_relative_to_the_root(root: Path, tmp_path: Path) -> None:
    with pytest.raises(PathRefused) as info:
        resolve(str(root), str(tmp_path / "secret"))
    assert info.value.code == ErrorCode.FILE_NOT_FOUND


@pytest.mark.parametrize("name", ["missing", "sub", "/"])
def test_missing_files_and_directories_are_not_found(root: Path, name: str) -> None:
    with pytest.raises(PathRefused) as info:
        resolve(str(root), name)
    assert info.value.code == ErrorCode.FILE_NOT_FOUND


def test_upload_targets_stay_inside(root: Path) -> None:
    assert resolve(str(root), "sub/new", must_exist=False) == str(root / "sub" / "new")
    with pytest.raises(PathRefused):
        resolve(str(root), "updir/new", must_exist=False)
    with pytest.raises(PathRefused):
        resolve(str(root), "escape", must_exist=False)
