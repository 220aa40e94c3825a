"""Replies leave from the address the request was sent to (IP_PKTINFO), on a wildcard socket.

127.0.0.0/8 is all local, so a server listening on 0.0.0.0 can be asked at 127.0.0.2 and
127.0.0.3: a server replying from the wrong address would break clients that filter by
source address (iPXE does).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.tftp.peers import RunningServer, atftpd_problem, free_udp_port, rrq, server_argv


@pytest.fixture(scope="module", params=["pyatftpd", "atftpd"])
def wildcard_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    if request.param == "atftpd" and (problem := atftpd_problem()):
        pytest.skip(problem)
    root = tmp_path_factory.mktemp("pktinfo")
    (root / "f").write_bytes(b"x" * 700)
    port = free_udp_port()
    argv = server_argv(request.param, root, port)
    argv[argv.index("--bind-address") + 1] = "0.0.0.0"
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    server = RunningServer(request.param, port, root, proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _ask("127.0.0.1", port, rrq("missing")) is not None:
            break
        time.sleep(0.1)
    yield server
    server.stop()


def _ask(address: str, port: int, datagram: bytes) -> tuple[bytes, tuple[str, int]] | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1)
        sock.sendto(datagram, (address, port))
        try:
            data, source = sock.recvfrom(2048)
        except TimeoutError:
            return None
        if data[:2] == b"\0\3":
            sock.sendto(b"\0\4" + data[2:4], source)
        return data, source


@pytest.mark.parametrize("address", ["127.0.0.2", "127.0.0.3"])
def test_data_comes_from_the_address_the_request_was_sent_to(
    wildcard_server: RunningServer, address: str
) -> None:
    reply = _ask(address, wildcard_server.port, rrq("f"))
    assert reply is not None
    data, source = reply
    assert data[:4] == b"\0\3\0\1"
    assert source[0] == address and source[1] != wildcard_server.port  # a fresh TID


@pytest.mark.parametrize("address", ["127.0.0.2", "127.0.0.3"])
def test_errors_come_from_the_address_the_request_was_sent_to(
    wildcard_server: RunningServer, address: str
) -> None:
    reply = _ask(address, wildcard_server.port, rrq("missing"))
    assert reply is not None
    data, source = reply
    assert data[:4] == b"\0\5\0\1" and source[0] == address
