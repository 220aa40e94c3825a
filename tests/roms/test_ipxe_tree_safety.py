"""An archive is extracted the same safe way whether or not Python has tarfile's filters.

Debian 12's python3 (3.11.2) predates ``extract(filter="data")``: CI ran there and every
build failed with a TypeError.  Both paths must accept a real tree and refuse an escape.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from roms.ipxe_tree import TreeError, extract, open_source
from tests.roms.fake_ipxe import make_tree


@pytest.fixture(params=["filters", "no-filters"])
def python_filters(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "no-filters":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile filters; the no-filters twin covers it")
    return str(request.param)


def _add(tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    data = b"x" if kind == tarfile.REGTYPE else b""
    info.size = len(data)
    info.mode = 0o4755
    tar.addfile(info, io.BytesIO(data))


def _archive(path: Path, tree: Path, extra: tuple[str, bytes, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree, arcname="ipxe")
        if extra:
            _add(tar, *extra)
    return path


def test_a_tree_extracts_with_its_top_folder_dropped(tmp_path: Path, python_filters: str) -> None:
    source = open_source(_archive(tmp_path / "ipxe.tar.gz", make_tree(tmp_path / "t")))
    extract(source, tmp_path / "copy")
    assert (tmp_path / "copy" / "src" / "Makefile").read_text().strip()


@pytest.mark.parametrize(
    "member",
    [
        ("ipxe/../../escaped", tarfile.REGTYPE, ""),
        ("ipxe/src/up", tarfile.SYMTYPE, "../../../etc"),
        ("ipxe/src/abs", tarfile.SYMTYPE, "/etc/passwd"),
        ("ipxe/src/fifo", tarfile.FIFOTYPE, ""),
    ],
    ids=["dotdot", "symlink-out", "symlink-absolute", "fifo"],
)
def test_a_member_that_escapes_the_copy_is_refused(
    tmp_path: Path, python_filters: str, member: tuple[str, bytes, str]
) -> None:
    source = open_source(_archive(tmp_path / "ipxe.tar.gz", make_tree(tmp_path / "t"), member))
    with pytest.raises(TreeError, match=member[0].removeprefix("ipxe/").lstrip("./")):
        extract(source, tmp_path / "copy")
    assert not (tmp_path / "escaped").exists()


def test_set_uid_bits_are_dropped(tmp_path: Path, python_filters: str) -> None:
    extra = ("ipxe/src/tool", tarfile.REGTYPE, "")
    source = open_source(_archive(tmp_path / "ipxe.tar.gz", make_tree(tmp_path / "t"), extra))
    extract(source, tmp_path / "copy")
    assert not (tmp_path / "copy" / "src" / "tool").stat().st_mode & 0o6000
