"""Netascii conversion and the packet codec's handling of hostile bytes."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netboot.tftp.netascii import from_netascii, to_netascii
from netboot.tftp.packets import (
    Ack,
    Error,
    ErrorCode,
    MalformedPacket,
    OAck,
    Opcode,
    Packet,
    Request,
    decode,
    encode,
)


def test_to_netascii_matches_atftpd_on_the_wire() -> None:
    # The bytes atftpd 0.8 sends for this file (captured from Debian's atftpd).
    assert to_netascii(b"line1\nline2\r\nbare\rcr\n") == b"line1\r\nline2\r\0\r\nbare\r\0cr\r\n"


@given(st.binary())
def test_netascii_round_trips(data: bytes) -> None:
    assert from_netascii(to_netascii(data)) == data


@pytest.mark.parametrize(
    ("datagram", "code"),
    [
        (b"", ErrorCode.ILLEGAL_OPERATION),
        (b"\0", ErrorCode.ILLEGAL_OPERATION),
        (b"\0\x09abc", ErrorCode.ILLEGAL_OPERATION),  # unknown opcode
        (b"\0\1file", ErrorCode.ILLEGAL_OPERATION),  # missing NUL
        (b"\0\1file\0", ErrorCode.ILLEGAL_OPERATION),  # no mode
        (b"\0\1file\0octet", ErrorCode.ILLEGAL_OPERATION),  # mode without NUL
        (b"\0\1file\0binary\0", ErrorCode.ILLEGAL_OPERATION),  # bad mode
        (b"\0\1\0octet\0", ErrorCode.ILLEGAL_OPERATION),  # empty file name
        (b"\0\1file\0octet\0blksize\0", ErrorCode.OPTION_REFUSED),  # option without value
        (b"\0\5\0", ErrorCode.ILLEGAL_OPERATION),  # CVE-2019-11365: ERROR shorter than 4 bytes
        (b"\0\4\0", ErrorCode.ILLEGAL_OPERATION),  # truncated ACK
        (b"\0\3\0", ErrorCode.ILLEGAL_OPERATION),  # truncated DATA
        (b"\0\1" + b"a" * 600 + b"\0octet\0", ErrorCode.ILLEGAL_OPERATION),  # request > 512 bytes
        (b"\0\1f\0oct\xe9t\0", ErrorCode.ILLEGAL_OPERATION),  # non-ASCII mode
        (b"\0\1f\0octet\0blk\xffsize\0512\0", ErrorCode.ILLEGAL_OPERATION),  # non-ASCII option
    ],
)
def test_malformed_datagrams_are_classified(datagram: bytes, code: ErrorCode) -> None:
    with pytest.raises(MalformedPacket) as info:
        decode(datagram)
    assert info.value.code == code


@pytest.mark.parametrize(
    "packet",
    [
        Request(Opcode.RRQ, "boot.img", "octet", (("blksize", "1428"),)),
        Request(Opcode.RRQ, "café/ブート.img", "octet"),
        Request(Opcode.RRQ, "caf\udce9.bin", "octet"),  # Latin-1 byte 0xe9, kept as it came
        Ack(65535),
        Error(1, "file not found"),
        OAck((("tsize", "42"),)),
    ],
)
def test_encode_decode_round_trip(packet: Packet) -> None:
    assert decode(encode(packet)) == packet


@given(st.binary(max_size=700))
def test_decode_raises_only_malformed_packet(datagram: bytes) -> None:
    try:
        decode(datagram)
    except MalformedPacket:
        pass


def test_a_file_name_keeps_its_bytes_whatever_they_are() -> None:
    """atftpd opens the name's bytes as they are (UTF-8 or not); so do we (surrogateescape)."""
    for raw in ("café.bin".encode(), b"caf\xe9.bin", b"\xff\xfe"):
        request = decode(b"\0\1" + raw + b"\0octet\0")
        assert isinstance(request, Request)
        assert os.fsencode(request.filename) == raw
        assert encode(request) == b"\0\1" + raw + b"\0octet\0"


def test_an_error_quoting_a_non_ascii_name_still_encodes() -> None:
    assert encode(Error(1, "cannot open 'café'")) == b"\0\5\0\1cannot open 'caf\\xe9'\0"
