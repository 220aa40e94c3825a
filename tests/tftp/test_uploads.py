"""Uploads (WRQ) honour the target's permissions, check every write and take a size limit.

Each case that atftpd handles safely runs against both servers, both as ``nobody``
(Debian's default user), so a difference is a difference in the servers.  Where
atftpd loses data (a failed upload leaves the old file truncated) only pyatftpd's
stricter behaviour is asserted; docs/pyatftpd.md, "Uploads", has the decisions.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netboot.tftp.events import CoreEvent
from netboot.tftp.options import Negotiation
from netboot.tftp.upload import FileSink, NetasciiDecoder
from netboot.tftp.write_transfer import WriteTransfer
from tests.smallfs import small_tmpfs
from tests.tftp.peers import RunningServer, TftpError, atftpd_problem, raw_upload, start_server

AS_NOBODY = ["--user", "nobody", "--group", "nogroup"]
NOBODY = pwd.getpwnam("nobody").pw_uid


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A folder ``nobody`` can reach (pytest's tmp_path lies under a 0700 folder)."""
    if os.geteuid() != 0:
        pytest.skip("the servers drop privileges to nobody only when started as root (CI runs as root)")
    base = Path(tempfile.mkdtemp(prefix="pyatftpd-upload-test-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _start(name: str, root: Path, *extra: str) -> RunningServer:
    if name == "atftpd" and (problem := atftpd_problem()):
        pytest.skip(problem)
    flags = [*AS_NOBODY, *extra]
    if name == "pyatftpd":
        flags += ["--allow-upload", "--workers", "1"]
    return start_server(name, root, extra=flags)


def _served_root(public_dir: Path) -> Path:
    root = public_dir / "root"
    root.mkdir()
    root.chmod(0o777)  # nobody may create files here
    return root


def _eventually(check: object, timeout: float = 3.0) -> bool:
    """atftpd ACKs the last block before it closes the file: give it a moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return True
        time.sleep(0.02)
    return bool(callable(check) and check())


@pytest.mark.parametrize("name", ["pyatftpd", "atftpd"])
def test_a_read_only_file_is_refused_and_left_unchanged(public_dir: Path, name: str) -> None:
    root = _served_root(public_dir)
    target = root / "ro.cfg"
    target.write_bytes(b"keep me\n")
    target.chmod(0o444)
    server = _start(name, root)
    try:
        with pytest.raises(TftpError) as refused:
            raw_upload(server.address, "ro.cfg", b"x" * 1000)
    finally:
        server.stop()
    assert refused.value.code == 2
    info = target.stat()
    assert target.read_bytes() == b"keep me\n" and (info.st_mode & 0o777, info.st_uid) == (0o444, 0)


@pytest.mark.parametrize("name", ["pyatftpd", "atftpd"])
def test_an_upload_keeps_the_owner_and_mode_of_the_file_it_replaces(public_dir: Path, name: str) -> None:
    root = _served_root(public_dir)
    target = root / "rw.cfg"
    target.write_bytes(b"old\n" * 1000)
    target.chmod(0o666)  # root's, writable by nobody
    inode = target.stat().st_ino
    new = os.urandom(3000)
    server = _start(name, root)
    try:
        raw_upload(server.address, "rw.cfg", new)
        assert _eventually(lambda: target.read_bytes() == new)
    finally:
        server.stop()
    info = target.stat()
    assert (info.st_mode & 0o777, info.st_uid, info.st_ino) == (0o666, 0, inode)
    assert not [p.name for p in root.iterdir() if p.name != "rw.cfg"], "a temporary file was left"


@pytest.mark.parametrize("name", ["pyatftpd", "atftpd"])
def test_a_new_file_belongs_to_the_server_user_with_mode_0644(public_dir: Path, name: str) -> None:
    root = _served_root(public_dir)
    data = os.urandom(2000)
    server = _start(name, root)
    try:
        raw_upload(server.address, "new.bin", data)
        assert _eventually(lambda: (root / "new.bin").exists() and (root / "new.bin").read_bytes() == data)
    finally:
        server.stop()
    info = (root / "new.bin").stat()
    assert (info.st_mode & 0o777, info.st_uid) == (0o644, NOBODY)


def test_a_read_only_file_is_refused_even_by_a_server_running_as_root(tmp_path: Path) -> None:
    """atftpd as root overwrites a 0444 file (root ignores the mode); pyatftpd refuses."""
    (tmp_path / "ro.cfg").write_bytes(b"keep me\n")
    (tmp_path / "ro.cfg").chmod(0o444)
    server = start_server("pyatftpd", tmp_path, extra=["--allow-upload", "--workers", "1"])
    try:
        with pytest.raises(TftpError) as refused:
            raw_upload(server.address, "ro.cfg", b"x" * 100)
    finally:
        server.stop()
    assert refused.value.code == 2 and "read-only" in refused.value.message
    assert (tmp_path / "ro.cfg").read_bytes() == b"keep me\n"


@pytest.mark.parametrize("name", ["pyatftpd", "atftpd"])
def test_a_netascii_upload_into_a_full_disk_is_an_error_not_a_success(public_dir: Path, name: str) -> None:
    text = b"a line of text\n" * 200_000  # 3 MB locally, 3.2 MB on the wire
    with small_tmpfs(public_dir / "small", 1024) as small:
        small.chmod(0o777)
        server = _start(name, small)
        try:
            with pytest.raises(TftpError) as failed:
                raw_upload(server.address, "big.txt", text.replace(b"\n", b"\r\n"), mode="netascii",
                           blksize=1428, timeout=5)
        finally:
            server.stop()
        assert failed.value.code == 3
        if name == "pyatftpd":  # atftpd leaves the 1 MB it could write
            assert not list(small.iterdir()), "a partial upload was left behind"


def test_a_failed_upload_leaves_the_old_file_whole(public_dir: Path) -> None:
    """atftpd truncates the old file first and leaves whatever it could write; pyatftpd keeps it."""
    with small_tmpfs(public_dir / "small", 1024) as small:
        small.chmod(0o777)
        old = os.urandom(300_000)
        (small / "image").write_bytes(old)
        (small / "image").chmod(0o666)
        server = _start("pyatftpd", small)
        try:
            with pytest.raises(TftpError) as failed:
                raw_upload(server.address, "image", os.urandom(900_000), blksize=1428, timeout=5)
        finally:
            server.stop()
        assert failed.value.code == 3
        assert (small / "image").read_bytes() == old
        assert [p.name for p in small.iterdir()] == ["image"]


def test_max_upload_size_refuses_a_larger_upload_with_error_3(tmp_path: Path) -> None:
    server = start_server(
        "pyatftpd", tmp_path, extra=["--allow-upload", "--workers", "1", "--upload-limit", "4K"]
    )
    try:
        raw_upload(server.address, "small.bin", b"s" * 4096)
        with pytest.raises(TftpError) as refused:
            raw_upload(server.address, "big.bin", b"b" * 5000)
    finally:
        server.stop()
    assert refused.value.code == 3 and "4096" in refused.value.message
    assert (tmp_path / "small.bin").read_bytes() == b"s" * 4096
    assert not (tmp_path / "big.bin").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".upload-")]


def test_netascii_is_converted_per_block_and_across_block_edges() -> None:
    decoder = NetasciiDecoder()
    wire = [b"one\r", b"\ntwo\r", b"\0three\r", b"\r\n", b"end\r"]
    out = b"".join(decoder.feed(piece) for piece in wire) + decoder.finish()
    assert out == b"one\ntwo\rthree\r\nend\r"


def test_a_netascii_upload_is_written_as_it_arrives(tmp_path: Path) -> None:
    """Bounded memory: each block is on disk before the next one arrives."""
    sink = FileSink(str(tmp_path / "log.txt"), netascii=True)
    block = b"x" * 510 + b"\r\n"
    for index in range(1, 101):
        sink.write(block)
        assert sink.bytes_stored == index * 511
        assert sum(p.stat().st_size for p in tmp_path.iterdir()) == index * 511
    sink.commit()
    assert (tmp_path / "log.txt").read_bytes() == (b"x" * 510 + b"\n") * 100


class _FailingCommit:
    def write(self, data: bytes) -> None:
        pass

    def commit(self) -> None:
        raise OSError(28, "No space left on device")

    def abort(self) -> None:
        pass


def test_a_commit_that_fails_is_answered_with_error_3_never_with_the_last_ack() -> None:
    peer = ("192.0.2.9", 1234)
    core = WriteTransfer(peer, _FailingCommit(), Negotiation(), now=0.0)
    core.datagrams_to_send(0.0)  # ACK 0
    core.receive_datagram(b"\0\3\0\1" + b"short", peer, 0.1)
    sent = [data for data, _ in core.datagrams_to_send(0.1)]
    assert sent and all(data[:2] == b"\0\5" for data in sent), sent
    assert sent[0][2:4] == b"\0\3"
    events: list[CoreEvent] = []
    while (event := core.next_event()) is not None:
        events.append(event)
    assert events[-1].name == "done" and events[-1].fields["ok"] is False
