"""The upload (WRQ) machine: ACK pacing, duplicates, windows, timeouts."""

from __future__ import annotations

import struct

from netboot.tftp.options import OptionPolicy, negotiate
from netboot.tftp.sources import BytesSink
from netboot.tftp.write_transfer import WriteTransfer
from tests.tftp.core_helpers import PEER, STRANGER


def data(block: int, payload: bytes) -> bytes:
    return struct.pack("!HH", 3, block & 0xFFFF) + payload


def make(options: tuple[tuple[str, str], ...] = (), **kw: object) -> tuple[WriteTransfer, BytesSink]:
    sink = BytesSink()
    negotiation = negotiate(options, None, OptionPolicy(), is_read=False)
    return WriteTransfer(PEER, sink, negotiation, now=0.0, **kw), sink  # type: ignore[arg-type]


def test_upload_acks_each_block_and_commits_after_the_short_one() -> None:
    core, sink = make()
    assert core.datagrams_to_send(0.0) == [(b"\0\4\0\0", PEER)]
    core.receive_datagram(data(1, b"a" * 512), PEER, 0.0)
    assert core.datagrams_to_send(0.0) == [(b"\0\4\0\1", PEER)]
    assert not sink.committed
    core.receive_datagram(data(2, b"b"), PEER, 0.0)
    assert core.datagrams_to_send(0.0) == [(b"\0\4\0\2", PEER)]
    assert core.succeeded and sink.committed and sink.data == b"a" * 512 + b"b"


def test_duplicate_data_is_re_acked_but_stored_once() -> None:
    core, sink = make()
    core.receive_datagram(data(1, b"a" * 512), PEER, 0.0)
    core.datagrams_to_send(0.0)
    core.receive_datagram(data(1, b"a" * 512), PEER, 0.0)
    assert core.datagrams_to_send(0.0) == [(b"\0\4\0\1", PEER)]
    assert sink.data == b"a" * 512


def test_oack_replaces_ack_zero_when_options_were_asked() -> None:
    core, _ = make((("blksize", "32"), ("tsize", "40")))
    assert core.datagrams_to_send(0.0) == [(b"\0\6blksize\x0032\0tsize\x0040\0", PEER)]


def test_windowed_upload_acks_every_window() -> None:
    core, sink = make((("windowsize", "2"), ("blksize", "32")))
    core.datagrams_to_send(0.0)
    core.receive_datagram(data(1, b"1" * 32), PEER, 0.0)
    assert core.datagrams_to_send(0.0) == []
    core.receive_datagram(data(2, b"2" * 32), PEER, 0.0)
    assert core.datagrams_to_send(0.0) == [(b"\0\4\0\2", PEER)]
    core.receive_datagram(data(4, b"4" * 32), PEER, 0.0)  # block 3 lost
    assert core.datagrams_to_send(0.0) == [(b"\0\4\0\2", PEER)]
    core.receive_datagram(data(3, b"3"), PEER, 0.0)
    assert core.succeeded and sink.data == b"1" * 32 + b"2" * 32 + b"3"


def test_foreign_tid_gets_error_5() -> None:
    core, _ = make()
    core.datagrams_to_send(0.0)
    core.receive_datagram(data(1, b"x"), STRANGER, 0.0)
    ((datagram, addr),) = core.datagrams_to_send(0.0)
    assert addr == STRANGER and datagram[:4] == b"\0\5\0\5" and not core.finished


def test_timeout_resends_the_last_ack_then_aborts_the_sink() -> None:
    core, sink = make(timeout=1.0, max_retries=2)
    core.datagrams_to_send(0.0)
    core.handle_timer(1.0)
    assert core.datagrams_to_send(1.0) == [(b"\0\4\0\0", PEER)]
    core.handle_timer(2.0)
    core.datagrams_to_send(2.0)
    core.handle_timer(3.0)
    assert core.finished and not core.succeeded and sink.aborted


def test_oversized_data_is_refused() -> None:
    core, sink = make()
    core.receive_datagram(data(1, b"x" * 513), PEER, 0.0)
    assert core.finished and sink.aborted
    assert core.datagrams_to_send(0.0)[-1][0][:2] == b"\0\5"


def test_upload_limit_answers_disk_full() -> None:
    core, sink = make(max_bytes=600)
    core.receive_datagram(data(1, b"x" * 512), PEER, 0.0)
    core.receive_datagram(data(2, b"x" * 512), PEER, 0.0)
    assert core.finished and sink.aborted
    assert core.datagrams_to_send(0.0)[-1][0][:4] == b"\0\5\0\3"
