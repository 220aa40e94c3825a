"""The unicast read state machine, driven without sockets or clocks."""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

import pytest

from netboot.tftp.options import OptionPolicy, negotiate
from netboot.tftp.read_transfer import ReadTransfer
from netboot.tftp.sources import BytesSource
from tests.tftp.core_helpers import PEER, STRANGER, ack, download, events, make_read


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 1024, 5000])
def test_download_is_byte_exact_at_default_blksize(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    core = make_read(data)
    assert download(core) == data
    assert core.succeeded


def test_exact_multiple_ends_with_an_empty_data() -> None:
    core = make_read(b"x" * 1024)
    sent = []
    for block in range(1, 4):
        ((datagram, _),) = core.datagrams_to_send(0.0)
        sent.append(datagram)
        core.receive_datagram(ack(block), PEER, 0.0)
    assert [len(d) - 4 for d in sent] == [512, 512, 0]
    assert struct.unpack_from("!HH", sent[-1]) == (3, 3)
    assert core.finished and core.succeeded


def test_block_numbers_roll_over_to_zero_after_65535() -> None:
    data = bytes(8) * 65537  # 65537 blocks of 8 bytes, then the empty final block
    core = make_read(data, (("blksize", "8"),))
    assert download(core) == data
    assert core.last_block == 65538


def test_rollover_sends_block_zero_after_65535() -> None:
    core = make_read(bytes(8) * 70000, (("blksize", "8"),))
    core.datagrams_to_send(0.0)
    core.receive_datagram(ack(0), PEER, 0.0)
    for block in range(1, 65536):
        core.datagrams_to_send(0.0)
        core.receive_datagram(ack(block), PEER, 0.0)
    ((datagram, _),) = core.datagrams_to_send(0.0)
    assert struct.unpack_from("!HH", datagram) == (3, 0)
    core.receive_datagram(ack(0), PEER, 0.0)
    ((datagram, _),) = core.datagrams_to_send(0.0)
    assert struct.unpack_from("!HH", datagram) == (3, 1)


def test_oack_lists_only_requested_options_and_waits_for_ack_zero() -> None:
    core = make_read(b"a" * 3000, (("BlkSize", "1024"), ("tsize", "0"), ("foo", "bar")))
    ((datagram, _),) = core.datagrams_to_send(0.0)
    assert datagram == b"\0\6BlkSize\x001024\0tsize\x003000\0"
    core.receive_datagram(ack(0), PEER, 0.0)
    ((datagram, _),) = core.datagrams_to_send(0.0)
    assert struct.unpack_from("!HH", datagram) == (3, 1) and len(datagram) == 1028


def test_duplicate_ack_never_doubles_the_stream() -> None:
    core = make_read(b"z" * 5000)
    core.datagrams_to_send(0.0)
    core.receive_datagram(ack(1), PEER, 0.0)
    assert len(core.datagrams_to_send(0.0)) == 1  # block 2
    for _ in range(5):
        core.receive_datagram(ack(1), PEER, 0.1)
        assert core.datagrams_to_send(0.1) == []
    core.receive_datagram(ack(2), PEER, 0.2)
    ((datagram, _),) = core.datagrams_to_send(0.2)
    assert struct.unpack_from("!HH", datagram) == (3, 3)


def test_retransmits_on_timeout_only_then_gives_up_with_an_event() -> None:
    core = make_read(b"q" * 2000, timeout=2.0, max_retries=3)
    core.datagrams_to_send(0.0)
    core.receive_datagram(ack(1), PEER, 0.0)
    first = core.datagrams_to_send(0.0)
    assert core.get_timer() == 2.0
    core.handle_timer(1.9)
    assert core.datagrams_to_send(1.9) == []
    for attempt in range(1, 4):
        now = 2.0 * attempt
        core.handle_timer(now)
        assert core.datagrams_to_send(now) == first
    core.handle_timer(8.0)
    out = core.datagrams_to_send(8.0)
    assert out[0][0][:4] == b"\0\5\0\0"  # the client hears why
    assert core.finished and not core.succeeded and core.get_timer() is None
    names = [e.name for e in events(core)]
    assert names.count("retransmit") == 3 and names[-1] == "done"


def test_default_retransmission_backs_off_from_one_second_and_restarts_on_progress() -> None:
    """A lost DATA costs 1 s, not atftpd's 5 s; a silent client still gets 1, 2, 4, 5, 5 s."""
    core = make_read(b"q" * 2000, timeout=5.0, first_retry=1.0)
    core.datagrams_to_send(0.0)
    core.receive_datagram(ack(1), PEER, 0.0)
    first = core.datagrams_to_send(0.0)
    due = []
    for _ in range(4):
        deadline = core.get_timer()
        assert deadline is not None
        due.append(deadline)
        core.handle_timer(deadline)
        assert core.datagrams_to_send(deadline) == first
    assert due == [1.0, 3.0, 7.0, 12.0]
    core.receive_datagram(ack(2), PEER, 12.5)
    core.datagrams_to_send(12.5)
    assert core.get_timer() == 13.5  # progress: back to the first interval


def test_a_client_timeout_option_wins_over_the_backoff() -> None:
    core = make_read(b"q" * 2000, (("timeout", "3"),), timeout=5.0, first_retry=1.0)
    core.receive_datagram(ack(0), PEER, 0.0)
    assert core.get_timer() == 3.0
    core.handle_timer(3.0)
    assert core.get_timer() == 6.0


def test_nothing_is_retransmitted_to_a_peer_that_never_answered() -> None:
    """A spoofable RRQ draws its first DATA once, then nothing, not even an ERROR (issue 20)."""
    core = make_read(b"q" * 2000, timeout=5.0, first_retry=1.0)
    ((first, _),) = core.datagrams_to_send(0.0)
    assert first[:4] == b"\0\3\0\1" and core.first_datagram == first
    sent = []
    now = 0.0
    while not core.finished and now < 60:
        deadline = core.get_timer()
        assert deadline is not None
        now = deadline
        core.handle_timer(now)
        sent += core.datagrams_to_send(now)
    assert sent == [] and core.finished and not core.succeeded and now == 5.0
    done = [e for e in events(core) if e.name == "done"][0]
    assert "never answered" in str(done.fields["reason"])


def test_the_first_ack_proves_the_peer_and_arms_retransmission() -> None:
    core = make_read(b"q" * 2000, (("blksize", "512"),), timeout=5.0, first_retry=1.0)
    core.datagrams_to_send(0.0)
    assert not core.proven
    core.receive_datagram(ack(0), PEER, 0.3)
    assert core.proven
    (data1,) = core.datagrams_to_send(0.3)
    assert core.get_timer() == 1.3
    core.handle_timer(1.3)
    assert core.datagrams_to_send(1.3) == [data1]


def test_client_timeout_option_sets_the_retransmission_interval() -> None:
    core = make_read(b"q" * 2000, (("timeout", "1"),), timeout=5.0)
    assert core.get_timer() == 1.0


def test_foreign_tid_gets_error_5_and_the_transfer_goes_on() -> None:
    core = make_read(b"k" * 1500)
    core.datagrams_to_send(0.0)
    core.receive_datagram(ack(1), STRANGER, 0.0)
    out = core.datagrams_to_send(0.0)
    assert out == [(out[0][0], STRANGER)] and out[0][0][:4] == b"\0\5\0\5"
    assert not core.finished
    core.receive_datagram(ack(1), PEER, 0.0)
    ((datagram, _),) = core.datagrams_to_send(0.0)
    assert struct.unpack_from("!HH", datagram) == (3, 2)


def test_no_source_port_checking_accepts_another_port_of_the_same_host() -> None:
    core = make_read(b"k" * 100, check_port=False)
    core.datagrams_to_send(0.0)
    core.receive_datagram(ack(1), (PEER[0], 9999), 0.0)
    assert core.finished and core.succeeded


def test_error_from_the_client_ends_the_transfer() -> None:
    core = make_read(b"k" * 1500)
    core.datagrams_to_send(0.0)
    core.receive_datagram(b"\0\5\0\0disk full\0", PEER, 0.0)
    assert core.finished and not core.succeeded
    done = [e for e in events(core) if e.name == "done"][0]
    assert "disk full" in done.fields["reason"]


def test_windowsize_sends_a_window_and_restarts_after_a_partial_ack() -> None:
    core = make_read(b"w" * 512 * 10, (("windowsize", "4"),))
    core.datagrams_to_send(0.0)  # OACK
    core.receive_datagram(ack(0), PEER, 0.0)
    window = core.datagrams_to_send(0.0)
    assert [struct.unpack_from("!H", d, 2)[0] for d, _ in window] == [1, 2, 3, 4]
    core.receive_datagram(ack(2), PEER, 0.0)  # blocks 3 and 4 were lost
    window = core.datagrams_to_send(0.0)
    assert [struct.unpack_from("!H", d, 2)[0] for d, _ in window] == [3, 4, 5, 6]


def test_windowed_download_is_byte_exact() -> None:
    data = bytes(range(251)) * 100
    core = make_read(data, (("windowsize", "16"), ("blksize", "100")))
    assert download(core) == data


def test_trace_reports_data_and_ack_events() -> None:
    core: ReadTransfer = make_read(b"t" * 600, trace=True)
    download(core)
    names = [e.name for e in events(core)]
    assert names.count("data") == 2 and names.count("ack") == 2 and names[-1] == "done"
    done = [e for e in events(core)] or None
    assert done is None  # the queue was drained above


def test_done_event_carries_bytes_and_seconds() -> None:
    core = make_read(b"s" * 1000, now=10.0)
    core.datagrams_to_send(10.0)
    core.receive_datagram(ack(1), PEER, 10.5)
    core.datagrams_to_send(10.5)
    core.receive_datagram(ack(2), PEER, 11.25)
    done = [e for e in events(core) if e.name == "done"][0]
    assert done.fields["bytes"] == 1000 and done.fields["seconds"] == 1.25 and done.fields["ok"] is True


def test_fast_lane_matches_the_general_path_and_declines_the_rest() -> None:
    data = bytes(range(256)) * 9  # 2304 bytes: blocks of 512, the last one short
    core = make_read(data)
    ((first, _),) = core.datagrams_to_send(0.0)
    received = [first[4:]]
    block = 1
    while (reply := core.reply_to_ack(ack(block), 4, 1.0)) is not None:
        assert core.reply_to_ack(ack(block), 4, 1.0) is None  # a duplicate is never answered
        assert struct.unpack_from("!HH", reply) == (3, block + 1)
        received.append(bytes(reply[4:]))  # a frame is only valid until the next call
        block += 1
    # The lane sends full blocks only: the short last block comes from the general path.
    assert block == core.last_block - 1
    assert core.get_timer() == 1.0 + 5.0
    assert core.reply_to_ack(ack(block) + b"x", 5, 1.5) is None  # not an ACK: declined
    core.receive_datagram(ack(block), PEER, 1.5)
    ((last, _),) = core.datagrams_to_send(1.5)
    assert struct.unpack_from("!HH", last) == (3, core.last_block)
    received.append(last[4:])
    assert core.reply_to_ack(ack(core.last_block), 4, 2.0) is None  # the final ACK goes the general way
    core.receive_datagram(ack(core.last_block), PEER, 2.0)
    assert core.finished and core.succeeded and b"".join(received) == data


def test_fast_lane_rolls_over_and_refills_its_frames() -> None:
    data = os.urandom(8 * 70_000 + 3)  # blksize 8: block numbers wrap past 65535
    core = make_read(data, (("blksize", "8"),))
    core.datagrams_to_send(0.0)
    received = []
    block = 0
    while (reply := core.reply_to_ack(ack(block), 4, 1.0)) is not None:
        assert struct.unpack_from("!HH", reply) == (3, (block + 1) & 0xFFFF)
        received.append(bytes(reply[4:]))
        block += 1
    assert block == core.last_block - 1 == 70_000
    assert b"".join(received) == data[: 8 * 70_000]


class ShrunkSource(BytesSource):
    """A file that lost its tail after the transfer started (size is the old one)."""

    def __init__(self, data: bytes, real: int) -> None:
        super().__init__(data)
        self._real = real

    def read(self, offset: int, length: int) -> bytes:
        return super().read(offset, max(0, min(length, self._real - offset)))

    def read_into(self, offset: int, buffers: Sequence[memoryview]) -> int:
        return min(super().read_into(offset, buffers), max(0, self._real - offset))


def test_fast_lane_hands_a_shrunk_file_back_to_the_general_path() -> None:
    data = b"z" * 5000
    negotiation = negotiate((), len(data), OptionPolicy())
    core = ReadTransfer(PEER, ShrunkSource(data, 1100), negotiation, now=0.0)
    core.datagrams_to_send(0.0)
    reply = core.reply_to_ack(ack(1), 4, 0.0)
    assert reply is not None and bytes(reply[4:]) == b"z" * 512  # block 2 is still there
    assert core.reply_to_ack(ack(2), 4, 0.0) is None  # block 3 is not: no stale frame is sent
    core.receive_datagram(ack(2), PEER, 0.0)
    ((short, _),) = core.datagrams_to_send(0.0)
    assert short == b"\0\3\0\3" + b"z" * 76  # what is really there, as before the lane existed


def test_fast_lane_is_off_with_windows_and_trace() -> None:
    windowed = make_read(b"x" * 4000, (("windowsize", "2"),))
    windowed.datagrams_to_send(0.0)
    assert windowed.reply_to_ack(ack(0), 4, 0.0) is None
    traced = make_read(b"x" * 4000, trace=True)
    traced.datagrams_to_send(0.0)
    assert traced.reply_to_ack(ack(1), 4, 0.0) is None
