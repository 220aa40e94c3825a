"""The multicast tests' own server helper (tests/mcast_lab.py) in a namespace the test makes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lab.infra.namespace import Namespace
from tests.mcast_lab import Served, make_file, segment

pytestmark = pytest.mark.netns

#: One RRQ with the ``multicast`` option, never ACKed: atftpd keeps a session thread for it.
_OPEN_SESSION = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.settimeout(5)\n"
    "s.sendto(b'\\0\\1boot.img\\0octet\\0blksize\\x001432\\0multicast\\0\\0', ('192.0.2.1', 69))\n"
    "sys.stdout.write(s.recvfrom(2048)[0][:2].hex())\n"
)
#: A plain RRQ: the first DATA's payload, in hex.
_FIRST_BLOCK = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.settimeout(5)\n"
    "s.sendto(b'\\0\\1boot.img\\0octet\\0', ('192.0.2.1', 69))\n"
    "sys.stdout.write(s.recvfrom(2048)[0][4:].hex())\n"
)


def test_a_stopped_atftpd_frees_port_69_for_the_next_server(netns: Namespace, tmp_path: Path) -> None:
    """atftpd (``--no-fork``) outlives its nsenter at SIGTERM while a session runs: stop() waits."""
    segment(netns)
    root = tmp_path / "root"
    data = make_file(root, "boot.img", 1 << 20)
    first = Served(netns, "atftpd", root, [], tmp_path)
    try:
        opened = netns.run([sys.executable, "-c", _OPEN_SESSION]).stdout
        assert opened == "0006", "atftpd did not answer the multicast RRQ with an OACK"
    finally:
        first.stop()
    assert ":69 " not in netns.run(["ss", "-uln"]).stdout, "port 69 still bound after stop()"
    second = Served(netns, "pyatftpd", root, [], tmp_path)
    try:
        block = bytes.fromhex(netns.run([sys.executable, "-c", _FIRST_BLOCK]).stdout)
        assert second.proc.poll() is None, "the second server exited (port 69 taken?)"
    finally:
        second.stop()
    assert block == data[:512]
    assert [e["event"] for e in second.read_events() if e["event"] == "request"] == ["request"]
