"""What an admin sees when pyatftpd starts and stops: pidfile, clients in mid-transfer, permissions."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tftp.peers import TftpError, raw_fetch, rrq, start_server


def _wait_gone(path: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return not path.exists()


@pytest.mark.parametrize("workers", ["1", "3"])
def test_the_pidfile_is_removed_at_sigterm(tmp_path: Path, workers: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    pidfile = tmp_path / "pyatftpd.pid"
    server = start_server("pyatftpd", root, extra=["--workers", workers, "--pidfile", str(pidfile)])
    assert int(pidfile.read_text()) == server.proc.pid
    os.kill(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(10) == 0
    assert _wait_gone(pidfile), "the pidfile outlived the server"


@pytest.mark.parametrize("workers", ["1", "3"])
def test_signals_during_the_final_cleanup_print_no_traceback(tmp_path: Path, workers: str) -> None:
    """A supervisor forwards SIGTERM and ``kill`` of the group sends another: the second one
    lands after asyncio's loop (and its wake-up fd) is gone, and once printed an EBADF traceback."""
    root = tmp_path / "root"
    root.mkdir()
    log = tmp_path / "server.log"
    (root / "f").write_bytes(b"x" * 600)
    server = start_server("pyatftpd", root, extra=["--workers", workers], log=log)
    assert raw_fetch(("127.0.0.1", server.port), "f")[0] == b"x" * 600  # serving: its handlers are set
    deadline = time.monotonic() + 10
    while server.proc.poll() is None and time.monotonic() < deadline:
        os.kill(server.proc.pid, signal.SIGTERM)
        time.sleep(0.002)
    assert server.proc.wait(10) == 0
    assert "Traceback" not in log.read_text(errors="replace")


def _first_data(sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
    data, peer = sock.recvfrom(70000)
    assert data[:2] == b"\0\3", data[:40]
    return data, peer


def _error_after_stop(sock: socket.socket, proc_pid: int) -> bytes:
    os.kill(proc_pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        data, _ = sock.recvfrom(70000)
        if data[:2] == b"\0\5":
            return data
    raise AssertionError("no ERROR after the stop")


@pytest.mark.parametrize("native", ["1", "0"])
def test_a_client_in_mid_download_gets_error_0_when_the_server_stops(tmp_path: Path, native: str) -> None:
    (tmp_path / "big").write_bytes(os.urandom(2 << 20))
    server = start_server("pyatftpd", tmp_path, extra=["--workers", "1"], env={"PYATFTPD_NATIVE": native})
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3)
            sock.sendto(rrq("big"), server.address)
            data, peer = _first_data(sock)
            sock.sendto(b"\0\4" + data[2:4], peer)  # ACK 1: the transfer is under way
            _first_data(sock)
            error = _error_after_stop(sock, server.proc.pid)
        assert error[2:4] == b"\0\0" and b"shutting down" in error
        assert server.proc.wait(10) == 0
    finally:
        server.stop()


def test_an_upload_in_progress_gets_error_0_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    server = start_server("pyatftpd", tmp_path, extra=["--workers", "1", "--allow-upload"])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3)
            sock.sendto(b"\0\2" + rrq("up.bin")[2:], server.address)
            ack, peer = sock.recvfrom(100)
            assert ack == b"\0\4\0\0"
            sock.sendto(struct.pack("!HH", 3, 1) + b"u" * 512, peer)
            assert sock.recvfrom(100)[0] == b"\0\4\0\1"
            error = _error_after_stop(sock, server.proc.pid)
        assert error[2:4] == b"\0\0"
        assert server.proc.wait(10) == 0
    finally:
        server.stop()
    assert [p.name for p in tmp_path.iterdir()] == [], "the partial upload was left behind"


@pytest.fixture
def unreadable_root() -> Iterator[Path]:
    """A served folder nobody cannot read (root's, 0700) inside one nobody can reach."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start the server as root and drop to nobody (CI runs as root)")
    base = Path(tempfile.mkdtemp(prefix="pyatftpd-perm-test-", dir="/tmp"))
    base.chmod(0o755)
    root = base / "root"
    root.mkdir()
    (root / "boot.img").write_bytes(b"secret")
    root.chmod(0o700)
    try:
        yield root
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_an_unreadable_root_is_reported_as_permission_denied(unreadable_root: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    server = start_server(
        "pyatftpd", unreadable_root, extra=["--workers", "1", "--user", "nobody.nogroup"], log=log
    )
    try:
        with pytest.raises(TftpError) as refused:
            raw_fetch(server.address, "boot.img")
    finally:
        server.stop()
    assert refused.value.code == 2 and "permission denied" in refused.value.message
    text = log.read_text()
    assert "cannot read the served directory" in text and "permission denied" in text
    assert "not found" not in text.replace("__probe_missing__", "")
