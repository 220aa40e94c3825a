"""Drive the sans-I/O TFTP cores from tests without sockets or clocks."""

from __future__ import annotations

import struct

from netboot.tftp.events import CoreEvent
from netboot.tftp.options import OptionPolicy, negotiate
from netboot.tftp.read_transfer import ReadTransfer
from netboot.tftp.sources import BytesSource

PEER = ("192.0.2.9", 3000)
STRANGER = ("192.0.2.66", 4000)


def ack(block: int) -> bytes:
    return struct.pack("!HH", 4, block & 0xFFFF)


def make_read(
    data: bytes, options: tuple[tuple[str, str], ...] = (), now: float = 0.0, **kw: object
) -> ReadTransfer:
    negotiation = negotiate(options, len(data), OptionPolicy())
    return ReadTransfer(PEER, BytesSource(data), negotiation, now=now, **kw)  # type: ignore[arg-type]


def events(core: ReadTransfer) -> list[CoreEvent]:
    out = []
    while (event := core.next_event()) is not None:
        out.append(event)
    return out


def download(core: ReadTransfer, now: float = 0.0) -> bytes:
    """A perfect lock-step client: ACK every DATA (and the OACK with ACK 0)."""
    received: dict[int, bytes] = {}
    order: list[int] = []
    absolute = 0
    for _ in range(10_000_000):
        out = core.datagrams_to_send(now)
        if core.finished:
            break
        assert out, "the transfer stalled without a timer firing"
        last_block = None
        for data, addr in out:
            assert addr == PEER
            opcode = struct.unpack_from("!H", data)[0]
            if opcode == 6:
                last_block = 0
                continue
            assert opcode == 3, data[:4]
            block = struct.unpack_from("!H", data, 2)[0]
            if block == (absolute + 1) & 0xFFFF:
                absolute += 1
                received[absolute] = data[4:]
                order.append(absolute)
            last_block = block
        assert last_block is not None
        core.receive_datagram(ack(last_block), PEER, now)
    return b"".join(received[n] for n in order)
