"""TFTP packet codec (RFC 1350, RFC 2347 OACK).  Pure functions over bytes.

Why a separate module: the server core, the iPXE-faithful clients and the tests all
speak the same wire format, and malformed input must be classified once, here, into
a :class:`MalformedPacket` carrying the TFTP error code to answer with.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum


class Opcode(IntEnum):
    RRQ = 1
    WRQ = 2
    DATA = 3
    ACK = 4
    ERROR = 5
    OACK = 6


class ErrorCode(IntEnum):
    NOT_DEFINED = 0
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3
    ILLEGAL_OPERATION = 4
    UNKNOWN_TID = 5
    FILE_EXISTS = 6
    NO_SUCH_USER = 7
    OPTION_REFUSED = 8  # RFC 2347


#: RFC 2347: a request packet is at most 512 octets.
MAX_REQUEST_SIZE = 512


class MalformedPacket(ValueError):
    """A datagram that is not valid TFTP.  ``code`` is the ERROR to answer with."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.ILLEGAL_OPERATION) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Request:
    """RRQ or WRQ.  ``options`` keeps the client's order and original spelling."""

    opcode: Opcode
    filename: str
    mode: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def is_read(self) -> bool:
        return self.opcode == Opcode.RRQ


@dataclass(frozen=True)
class Data:
    block: int
    payload: bytes


@dataclass(frozen=True)
class Ack:
    block: int


@dataclass(frozen=True)
class Error:
    code: int
    message: str


@dataclass(frozen=True)
class OAck:
    options: tuple[tuple[str, str], ...] = field(default=())


Packet = Request | Data | Ack | Error | OAck

MODES = ("octet", "netascii", "mail")


def _split_raw(body: bytes, what: str) -> list[bytes]:
    if not body.endswith(b"\0"):
        raise MalformedPacket(f"{what}: missing NUL terminator")
    return body[:-1].split(b"\0")


def _ascii(parts: list[bytes], what: str) -> list[str]:
    try:
        return [p.decode("ascii") for p in parts]
    except UnicodeDecodeError:
        raise MalformedPacket(f"{what}: non-ASCII bytes in a string field") from None


def _split_strings(body: bytes, what: str) -> list[str]:
    return _ascii(_split_raw(body, what), what)


def filename_from_wire(raw: bytes) -> str:
    """A file name as the client sent it: UTF-8, any other byte kept (``surrogateescape``).

    Why not ASCII only: atftpd passes the bytes to ``open()`` as they are, so a name in
    UTF-8 (or in Latin-1) is served by it, and a drop-in must serve it too.  With
    ``surrogateescape`` the ``os`` functions turn the name back into the same bytes.
    """
    return raw.decode("utf-8", "surrogateescape")


def filename_to_wire(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def decode(data: bytes) -> Packet:
    """Decode one datagram; raise :class:`MalformedPacket` for anything invalid."""
    if len(data) < 2:
        raise MalformedPacket(f"datagram of {len(data)} bytes is shorter than an opcode")
    (raw_opcode,) = struct.unpack_from("!H", data)
    try:
        opcode = Opcode(raw_opcode)
    except ValueError:
        raise MalformedPacket(f"unknown opcode {raw_opcode}") from None
    body = data[2:]
    if opcode in (Opcode.RRQ, Opcode.WRQ):
        return _decode_request(opcode, data)
    if opcode == Opcode.DATA:
        if len(body) < 2:
            raise MalformedPacket("DATA shorter than 4 bytes")
        (block,) = struct.unpack_from("!H", body)
        return Data(block, bytes(body[2:]))
    if opcode == Opcode.ACK:
        if len(body) != 2:
            raise MalformedPacket(f"ACK of {len(data)} bytes (must be 4)")
        (block,) = struct.unpack_from("!H", body)
        return Ack(block)
    if opcode == Opcode.ERROR:
        # CVE-2019-11365: atftpd overflowed its stack on an ERROR shorter than 4 bytes.
        if len(body) < 2:
            raise MalformedPacket("ERROR shorter than 4 bytes")
        (code,) = struct.unpack_from("!H", body)
        text = body[2:]
        if text.endswith(b"\0"):
            text = text[:-1]
        return Error(code, text.split(b"\0", 1)[0].decode("ascii", "replace"))
    # OACK
    strings = _split_strings(body, "OACK") if body else []
    if len(strings) % 2:
        raise MalformedPacket("OACK has an option without a value")
    return OAck(tuple(zip(strings[0::2], strings[1::2], strict=True)))


def _decode_request(opcode: Opcode, data: bytes) -> Request:
    if len(data) > MAX_REQUEST_SIZE:
        raise MalformedPacket(f"request of {len(data)} bytes exceeds {MAX_REQUEST_SIZE} (RFC 2347)")
    parts = _split_raw(data[2:], opcode.name)
    if len(parts) < 2:
        raise MalformedPacket(f"{opcode.name} lacks a mode field")
    filename = filename_from_wire(parts[0])
    mode, *rest = _ascii(parts[1:], opcode.name)
    if not filename:
        raise MalformedPacket(f"{opcode.name} with an empty file name")
    if mode.lower() not in MODES:
        raise MalformedPacket(f"unknown transfer mode {mode!r}")
    if len(rest) % 2:
        raise MalformedPacket(f"option {rest[-1]!r} has no value", ErrorCode.OPTION_REFUSED)
    options = tuple(zip(rest[0::2], rest[1::2], strict=True))
    return Request(opcode, filename, mode.lower(), options)


def _cstrings(*items: str) -> bytes:
    # backslashreplace: an ERROR text may quote a non-ASCII file name; it must still encode.
    return b"".join(item.encode("ascii", "backslashreplace") + b"\0" for item in items)


def encode(packet: Packet) -> bytes:
    if isinstance(packet, Request):
        flat = [s for pair in packet.options for s in pair]
        name = filename_to_wire(packet.filename) + b"\0"
        return struct.pack("!H", packet.opcode) + name + _cstrings(packet.mode, *flat)
    if isinstance(packet, Data):
        return struct.pack("!HH", Opcode.DATA, packet.block & 0xFFFF) + packet.payload
    if isinstance(packet, Ack):
        return struct.pack("!HH", Opcode.ACK, packet.block & 0xFFFF)
    if isinstance(packet, Error):
        return struct.pack("!HH", Opcode.ERROR, packet.code) + _cstrings(packet.message)
    flat = [s for pair in packet.options for s in pair]
    return struct.pack("!H", Opcode.OACK) + _cstrings(*flat)


def encode_data(block: int, payload: bytes) -> bytes:
    """Fast path for the hot loop: no dataclass allocation."""
    return struct.pack("!HH", Opcode.DATA, block & 0xFFFF) + payload


def encode_error(code: ErrorCode | int, message: str) -> bytes:
    return encode(Error(int(code), message))
