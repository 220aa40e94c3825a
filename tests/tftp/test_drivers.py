"""The other transfer paths of pyatftpd: the event-loop driver and unconnected transfer sockets.

The default path (a thread per transfer on a connected socket) is covered by every
integration test; these make sure the alternatives serve byte-exact files too.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.tftp.clients import fetch, require, sha256
from tests.tftp.peers import raw_fetch, rrq, start_server


@pytest.mark.parametrize(
    ("label", "extra", "env"),
    [
        ("event loop driver", [], {"PYATFTPD_DRIVER": "loop"}),
        ("unconnected socket (--no-source-port-checking)", ["--no-source-port-checking"], {}),
        ("single process", ["--workers", "1"], {}),
    ],
)
def test_alternative_paths_serve_byte_exact(
    label: str, extra: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    require("curl")
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_bytes(os.urandom(300_000))
    server = start_server("pyatftpd", root, extra=extra, env=env)
    try:
        out = tmp_path / "out"
        result = fetch("curl", server.port, "f", out, blksize=1428)
        assert result.returncode == 0, f"{label}: {result.stderr}"
        assert sha256(out) == sha256(root / "f")
        data, _ = raw_fetch(server.address, "f", options=[("windowsize", "3")])
        assert data == (root / "f").read_bytes()
        # A stranger on the transfer's port gets ERROR 5 while the transfer goes on.
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger,
        ):
            client.settimeout(3)
            stranger.settimeout(3)
            client.sendto(rrq("f"), server.address)
            first, tid = client.recvfrom(2048)
            stranger.sendto(b"\0\4\0\1", tid)
            if "--no-source-port-checking" in extra:
                # Same host, other port: accepted as the client (atftpd's meaning of the flag),
                # and the next block still goes to the client.
                second, _ = client.recvfrom(2048)
            else:
                reply, source = stranger.recvfrom(2048)
                assert reply[:4] == b"\0\5\0\5" and source == tid
                client.sendto(b"\0\4\0\1", tid)
                second, _ = client.recvfrom(2048)
            assert first[:4] == b"\0\3\0\1" and second[:4] == b"\0\3\0\2"
    finally:
        server.stop()
