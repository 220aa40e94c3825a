"""Property tests: no datagram raises out of a core or stops a transfer in progress.

Garbage comes from a foreign address (must get ERROR 5 at most) or from the peer
itself (anything that is not a well-formed ACK or ERROR must be dropped).  After
every piece of garbage the honest client continues, and the file must still
arrive byte for byte.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netboot.tftp.options import OptionPolicy, negotiate
from netboot.tftp.packets import Ack, Error, MalformedPacket, decode
from netboot.tftp.sources import BytesSink
from netboot.tftp.write_transfer import WriteTransfer
from tests.tftp.core_helpers import PEER, STRANGER, ack, make_read

datagrams = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda op, rest: struct.pack("!H", op) + rest, st.integers(0, 8), st.binary(max_size=40)),
)


def _harmless_from_peer(data: bytes) -> bool:
    try:
        packet = decode(data)
    except MalformedPacket:
        return True
    return not isinstance(packet, (Ack, Error))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    size=st.integers(0, 3000),
    blksize=st.sampled_from([24, 100, 512]),
    window=st.sampled_from([1, 3]),
    garbage=st.lists(st.tuples(datagrams, st.booleans(), st.integers(0, 30)), max_size=25),
)
def test_read_transfer_survives_arbitrary_datagrams(
    size: int, blksize: int, window: int, garbage: list[tuple[bytes, bool, int]]
) -> None:
    data = bytes((i * 7) & 0xFF for i in range(size))
    options = (("blksize", str(blksize)), ("windowsize", str(window)))
    core = make_read(data, options)
    pending = sorted(garbage, key=lambda g: g[2])
    received = bytearray()
    expected = 1
    now = 0.0
    step = 0
    while not core.finished:
        step += 1
        assert step < 10_000, "transfer stalled"
        out = core.datagrams_to_send(now)
        last_block = None
        for datagram, addr in out:
            if addr == STRANGER:
                assert datagram[:4] == b"\0\5\0\5"
                continue
            opcode, block = struct.unpack_from("!HH", datagram + b"\0\0")
            if opcode == 6:
                last_block = 0
            elif opcode == 3:
                if block == expected & 0xFFFF:
                    received += datagram[4:]
                    expected += 1
                last_block = (expected - 1) & 0xFFFF
        while pending and pending[0][2] <= step:
            junk, from_peer, _ = pending.pop(0)
            if from_peer and not _harmless_from_peer(junk):
                continue
            core.receive_datagram(junk, PEER if from_peer else STRANGER, now)
            assert not core.finished
        if last_block is None:  # nothing new: let the timer resend
            now += 10
            core.handle_timer(now)
            continue
        core.receive_datagram(ack(last_block), PEER, now)
    assert core.succeeded
    assert bytes(received) == data


@settings(max_examples=100, deadline=None)
@given(garbage=st.lists(st.tuples(datagrams, st.booleans()), max_size=30))
def test_write_transfer_survives_arbitrary_datagrams(garbage: list[tuple[bytes, bool]]) -> None:
    negotiation = negotiate((("blksize", "16"),), None, OptionPolicy(), is_read=False)
    sink = BytesSink()
    core = WriteTransfer(PEER, sink, negotiation, now=0.0)
    core.datagrams_to_send(0.0)
    payload = bytes(range(40))
    blocks = [payload[i : i + 16] for i in range(0, 48, 16)]
    for index, chunk in enumerate(blocks, start=1):
        for junk, from_peer in garbage[index - 1 :: 3]:
            if from_peer:
                try:
                    packet = decode(junk)
                except MalformedPacket:
                    packet = None
                if packet is not None:
                    continue  # well-formed DATA/ERROR from the peer is not garbage
            core.receive_datagram(junk, PEER if from_peer else STRANGER, 0.0)
            assert not core.finished
        core.receive_datagram(struct.pack("!HH", 3, index) + chunk, PEER, 0.0)
    assert core.succeeded and sink.committed and sink.data == payload
