"""SLAM's variable-length "Int": the top 3 bits of the first byte give the total length.

Why exactness matters: iPXE compares the header bytes of every packet with the
ones it cached, so one transaction must always encode the same value the same
way.  We always emit the minimal encoding (byte-identical to iPXE's
``slam_put_value`` and mini-slamd's ``slam_encode``) and decode as strictly as
iPXE's ``slam_pull_value``: a length of 0 is the NUL terminator, not a value, and
a value may not run past the buffer.
"""

from __future__ import annotations

#: Longest Int the 3-bit length field can describe (53 value bits).
MAX_LENGTH = 7

#: A 32-bit iPXE (i386 BIOS) stores values in an ``unsigned long`` of 4 bytes, so it
#: rejects values longer than 4 bytes: sizes must stay below 2**29.
IPXE32_MAX_LENGTH = 4
IPXE32_LIMIT = 1 << (8 * IPXE32_MAX_LENGTH - 3)

MAX_VALUE = (1 << (8 * MAX_LENGTH - 3)) - 1

#: The single NUL byte: list terminator, and the whole disconnect message.
NUL = b"\x00"


class IntDecodeError(ValueError):
    """The bytes at this position are not a valid SLAM Int."""


def encoded_length(value: int) -> int:
    """Minimal length in bytes: iPXE's ``(fls(value) + 10) / 8``."""
    if value < 0 or value > MAX_VALUE:
        raise ValueError(f"SLAM Int out of range 0..{MAX_VALUE}: {value}")
    return (value.bit_length() + 10) // 8


def encode_int(value: int) -> bytes:
    """Minimal big-endian encoding with the length in the top 3 bits of byte 0."""
    length = encoded_length(value)
    raw = bytearray(value.to_bytes(length, "big"))
    raw[0] |= length << 5
    return bytes(raw)


def decode_int(data: bytes | memoryview, offset: int = 0, max_length: int = MAX_LENGTH) -> tuple[int, int]:
    """Decode one Int at ``offset``; return ``(value, next_offset)``.

    ``max_length`` models the client's ``unsigned long`` (4 on 32-bit iPXE).  Raises
    :class:`IntDecodeError` on an empty buffer, a NUL (length 0), an over-long value
    or a value that runs past the end of the buffer.
    """
    if offset >= len(data):
        raise IntDecodeError("expected a SLAM Int, found the end of the datagram")
    first = data[offset]
    length = first >> 5
    if length == 0:
        raise IntDecodeError(f"byte 0x{first:02x} at offset {offset} has length 0 (a NUL, not an Int)")
    if length > max_length:
        raise IntDecodeError(f"Int at offset {offset} is {length} bytes long; the limit here is {max_length}")
    end = offset + length
    if end > len(data):
        raise IntDecodeError(f"{length}-byte Int at offset {offset} runs past the end ({len(data)} bytes)")
    value = first & 0x1F
    for byte in data[offset + 1 : end]:
        value = (value << 8) | byte
    return value, end


def skip_int(data: bytes | memoryview, offset: int = 0) -> int:
    """Skip one Int of any valid length (iPXE skips the transaction id this way)."""
    return decode_int(data, offset, MAX_LENGTH)[1]
