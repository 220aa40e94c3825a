"""The frame ring of the lock-step fast lane: headers, payloads, wrap-around, short reads."""

from __future__ import annotations

import os
import struct

from netboot.tftp.frames import FrameRing
from netboot.tftp.sources import BytesSource


def test_frames_are_data_datagrams_of_consecutive_full_blocks() -> None:
    data = os.urandom(10 * 100 + 7)
    ring = FrameRing(BytesSource(data), 100, chunk=4 * 104)
    assert len(ring.frames) == 4
    assert ring.load(3) == 4
    for index, frame in enumerate(ring.frames):
        block = 3 + index
        assert struct.unpack_from("!HH", frame) == (3, block)
        assert bytes(frame[4:]) == data[(block - 1) * 100 : block * 100]
    assert ring.load(9) == 2  # blocks 9 and 10; block 11 is the short last one
    assert ring.first == 9 and ring.loaded == 2
    assert ring.load(11) == 0


def test_block_numbers_wrap_past_65535_inside_one_load() -> None:
    blksize = 8
    data = bytes(blksize * 65540)
    ring = FrameRing(BytesSource(data), blksize, chunk=6 * (blksize + 4))
    assert ring.load(65534) == 6
    assert [struct.unpack_from("!H", f, 2)[0] for f in ring.frames] == [65534, 65535, 0, 1, 2, 3]


def test_a_short_read_leaves_only_the_complete_frames() -> None:
    source = BytesSource(b"a" * 1000)
    ring = FrameRing(source, 100, chunk=1000)
    source._data = b"a" * 250  # the file shrank after the transfer started (size stays 1000)
    assert ring.load(1) == 2 and ring.loaded == 2
    assert ring.load(3) == 0 and ring.loaded == 0


def test_a_small_file_gets_a_small_ring() -> None:
    ring = FrameRing(BytesSource(b"q" * 1030), 512)
    assert len(ring.frames) == 2
