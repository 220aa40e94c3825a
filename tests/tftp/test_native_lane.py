"""The C inner loop of lock-step reads (netboot/tftp/lockstep.c) and its Python side.

The loop is driven directly over a connected datagram socket pair, so each rule of
the loop is shown on its own: what it answers, what it hands back, and why it stops.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from netboot.tftp import native_lane

BLKSIZE = 512
Parts = tuple[native_lane.NativeLane, socket.socket, bytes]


@pytest.fixture
def lane_parts(tmp_path: Path) -> Iterator[Parts]:
    lib = native_lane.library()
    if lib is None:
        pytest.fail(
            "the native lane was not built with the package: install gcc (apt-get install -y gcc), "
            "then reinstall (pip install -e .)"
        )
    data = bytes(range(256)) * 20  # 5120 bytes: blocks 1..10 full, an empty block 11
    path = tmp_path / "file"
    path.write_bytes(data)
    server, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 100_000))
    client.settimeout(1.0)
    with open(path, "rb") as handle:
        lane = native_lane.NativeLane(lib, server.fileno(), handle.fileno(), bytearray(2048))
        yield lane, client, data
    server.close()
    client.close()


def _ack(block: int) -> bytes:
    return struct.pack("!HH", 4, block & 0xFFFF)


def test_in_order_acks_get_the_next_blocks_and_another_datagram_is_handed_back(lane_parts: Parts) -> None:
    lane, client, data = lane_parts
    error = struct.pack("!HH", 5, 0) + b"bye\0"
    for packet in (_ack(1), _ack(2), error):
        client.send(packet)
    count, left = lane.run(BLKSIZE, 1, 9)
    assert (count, left) == (2, len(error))
    for block in (2, 3):
        frame = client.recv(4 + BLKSIZE)
        assert frame[:4] == struct.pack("!HH", 3, block)
        assert frame[4:] == data[(block - 1) * BLKSIZE : block * BLKSIZE]


def test_a_duplicate_ack_is_handed_back_unanswered(lane_parts: Parts) -> None:
    lane, client, _data = lane_parts
    client.send(_ack(4))  # the newest block sent is 5: ACK 4 is a duplicate
    assert lane.run(BLKSIZE, 5, 9) == (0, 4)
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(600)


def test_the_last_full_block_bound_and_the_tick(lane_parts: Parts) -> None:
    lane, client, _data = lane_parts
    client.send(_ack(9))
    assert lane.run(BLKSIZE, 9, 9) == (0, 4), "block 10 and the end are the Python core's"
    assert lane.run(BLKSIZE, 9, 9) == (0, -errno.EAGAIN), "SO_RCVTIMEO: the driver's tick"


def test_block_numbers_roll_over_on_the_wire(lane_parts: Parts, tmp_path: Path) -> None:
    lane, client, _data = lane_parts
    os.truncate(tmp_path / "file", 65540 * BLKSIZE)  # sparse: long enough for block 65538
    client.send(_ack(65536 + 1))  # absolute block 65537 is 1 on the wire
    count, _left = lane.run(BLKSIZE, 65537, 65538)
    assert count == 1
    assert client.recv(600)[:4] == struct.pack("!HH", 3, 2), "block 65538 goes out as 2"


def test_a_file_that_shrank_stops_the_loop_with_the_ack_kept(lane_parts: Parts, tmp_path: Path) -> None:
    lane, client, _data = lane_parts
    (tmp_path / "file").write_bytes(b"x" * 1000)  # truncated under the transfer
    client.send(_ack(3))
    count, left = lane.run(BLKSIZE, 3, 9)
    assert (count, left) == (0, native_lane.SHORT_READ)


def test_a_stop_request_ends_the_loop(lane_parts: Parts) -> None:
    lane, client, _data = lane_parts
    lane.stop_flag.value = 1
    client.send(_ack(1))
    assert lane.run(BLKSIZE, 1, 9) == (0, native_lane.STOPPED)


def test_python_lane_when_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYATFTPD_NATIVE", "0")
    assert not native_lane.enabled()
    monkeypatch.setenv("PYATFTPD_NATIVE", "1")
    assert native_lane.enabled()
