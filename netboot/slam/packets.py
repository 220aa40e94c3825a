"""SLAM datagrams: header, data, ping (status request), NACK and disconnect.

Why one module: the server core, the iPXE-faithful client and the tests must agree
on every byte.  Server -> client datagrams are ``header [packet# data]``; client ->
server datagrams are a run-length list ``received missing received ... NUL`` or the
lone NUL that means "disconnect".  Anything else is :class:`MalformedSlam`.
"""

from __future__ import annotations

from dataclasses import dataclass

from netboot.slam.ints import NUL, IntDecodeError, decode_int, encode_int, skip_int

#: Largest UDP payload on a 1500-byte Ethernet MTU (1500 - 20 IP - 8 UDP).
MAX_DATAGRAM = 1472

#: mini-slamd's block size: 1500 - (20 + 8 + 21), 21 being the longest possible header.
DEFAULT_BLOCK_SIZE = 1451


class MalformedSlam(ValueError):
    """A datagram that is not valid SLAM; the message says what is wrong with it."""


@dataclass(frozen=True)
class Header:
    """The three Ints that start every server datagram of one transaction."""

    transaction: int
    total_bytes: int
    block_size: int

    def __post_init__(self) -> None:
        if self.block_size <= 0:
            raise ValueError("SLAM block size must be at least 1")

    @property
    def num_blocks(self) -> int:
        """No empty trailing block, unlike TFTP: ``ceil(total / block_size)``."""
        return -(-self.total_bytes // self.block_size)

    def encode(self) -> bytes:
        return encode_int(self.transaction) + encode_int(self.total_bytes) + encode_int(self.block_size)


def encode_data(header_bytes: bytes, packet: int, payload: bytes | memoryview) -> bytes:
    """A multicast DATA datagram; ``header_bytes`` is the cached ``Header.encode()``."""
    return b"".join((header_bytes, encode_int(packet), payload))


def encode_ping(header: Header) -> bytes:
    """The unicast status request: the header and nothing else (iPXE drops trailing bytes)."""
    return header.encode()


def decode_header(data: bytes | memoryview, max_length: int = 7) -> tuple[Header, int]:
    """Parse the header; return it and the offset of what follows.

    The transaction id is skipped whatever its length (as iPXE does); ``max_length``
    limits total_bytes and block_size (4 for a 32-bit client).
    """
    try:
        offset = skip_int(data, 0)
        transaction = decode_int(data, 0)[0]
        total, offset = decode_int(data, offset, max_length)
        block_size, offset = decode_int(data, offset, max_length)
    except IntDecodeError as exc:
        raise MalformedSlam(f"bad SLAM header: {exc}") from None
    if block_size == 0:
        raise MalformedSlam("bad SLAM header: block size 0")
    return Header(transaction, total, block_size), offset


@dataclass(frozen=True)
class Disconnect:
    """The lone NUL a client sends when it is done (or gives up)."""


@dataclass(frozen=True)
class Nack:
    """Missing ranges ``(first, count)`` in block order, as the sender listed them.

    Ranges are not clamped here: only the server knows the file's block count.
    A count of 0 is dropped at decode time (mini-slamd underflows on it).
    """

    ranges: tuple[tuple[int, int], ...]

    def clamped(self, num_blocks: int) -> list[tuple[int, int]]:
        """The ranges cut to ``0 .. num_blocks-1``; ranges wholly past EOF disappear."""
        out = []
        for first, count in self.ranges:
            if first >= num_blocks:
                break
            out.append((first, min(count, num_blocks - first)))
        return out


def decode_client_datagram(data: bytes | memoryview) -> Nack | Disconnect:
    """Parse a client -> server datagram: iPXE's ``first count NUL``, Etherboot's full RLE
    list (``received missing ... NUL``, first run possibly 0), or ``NUL`` = disconnect.

    The terminating NUL is required and nothing may follow it.
    """
    if len(data) == 0:
        raise MalformedSlam("empty datagram (a NACK needs at least its NUL terminator)")
    if len(data) == 1 and data[0] == 0:
        return Disconnect()
    ranges: list[tuple[int, int]] = []
    position = 0  # block number the next run starts at
    offset = 0
    receiving = True  # runs alternate: received (skip), then missing (send)
    while True:
        if offset >= len(data):
            raise MalformedSlam(f"NACK has no NUL terminator after {len(data)} bytes")
        if data[offset] == 0:
            if offset != len(data) - 1:
                raise MalformedSlam(f"{len(data) - offset - 1} bytes follow the NACK's NUL terminator")
            break
        try:
            run, offset = decode_int(data, offset)
        except IntDecodeError as exc:
            raise MalformedSlam(f"bad NACK: {exc}") from None
        if not receiving and run > 0:
            ranges.append((position, run))
        position += run
        receiving = not receiving
    return Nack(tuple(ranges))


def encode_nack_range(first: int, count: int) -> bytes:
    """iPXE's NACK: one range of ``count`` blocks from ``first`` (skip first, send count)."""
    return encode_int(first) + encode_int(count) + NUL


def encode_nack_runs(runs: list[int]) -> bytes:
    """Etherboot's NACK: the full run-length list, starting with a received run."""
    return b"".join(encode_int(run) for run in runs) + NUL


DISCONNECT = NUL
