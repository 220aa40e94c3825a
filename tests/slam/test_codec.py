"""The SLAM Int codec and packets, against worked examples.

The format is documented where it is coded: netboot/slam/ints.py and packets.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netboot.slam.ints import (
    IPXE32_MAX_LENGTH,
    MAX_VALUE,
    IntDecodeError,
    decode_int,
    encode_int,
)
from netboot.slam.packets import (
    Disconnect,
    Header,
    MalformedSlam,
    Nack,
    decode_client_datagram,
    decode_header,
    encode_data,
    encode_nack_range,
    encode_nack_runs,
    encode_ping,
)

WORKED_INTS = [
    (0, "20"),
    (1, "21"),
    (31, "3f"),
    (32, "40 20"),
    (255, "40 ff"),
    (1451, "45 ab"),
    (8191, "5f ff"),
    (8192, "60 20 00"),
    (100000, "61 86 a0"),
    (2**29 - 1, "9f ff ff ff"),
    (2**29, "a0 20 00 00 00"),
    (1700000000, "a0 65 53 f1 00"),
]


@pytest.mark.parametrize(("value", "hexbytes"), WORKED_INTS)
def test_worked_int_examples(value: int, hexbytes: str) -> None:
    assert encode_int(value) == bytes.fromhex(hexbytes)
    assert decode_int(bytes.fromhex(hexbytes)) == (value, len(bytes.fromhex(hexbytes)))


def _reference_mini_slamd_encode(value: int) -> bytes:
    """mini-slamd's rule, re-derived: significant bytes, packed if the top 3 bits are free."""
    n = max(1, (value.bit_length() + 7) // 8)
    raw = value.to_bytes(n, "big")
    if raw[0] & 0xE0 == 0:
        return bytes([raw[0] | (n << 5)]) + raw[1:]
    return bytes([(n + 1) << 5]) + raw


@given(st.integers(min_value=0, max_value=MAX_VALUE))
def test_round_trip_is_minimal_and_matches_mini_slamd(value: int) -> None:
    encoded = encode_int(value)
    assert decode_int(encoded) == (value, len(encoded))
    if value < 2**48:
        assert encoded == _reference_mini_slamd_encode(value)
    # minimal: one byte shorter cannot hold the value
    assert len(encoded) == 1 or value >= 1 << (8 * (len(encoded) - 1) - 3)


@given(st.lists(st.integers(min_value=0, max_value=MAX_VALUE), max_size=20))
def test_concatenated_ints_decode_in_sequence(values: list[int]) -> None:
    blob = b"".join(encode_int(v) for v in values)
    offset = 0
    for value in values:
        got, offset = decode_int(blob, offset)
        assert got == value
    assert offset == len(blob)


@given(st.binary(min_size=0, max_size=12))
def test_decoder_never_reads_past_the_buffer(blob: bytes) -> None:
    try:
        value, end = decode_int(blob)
    except IntDecodeError:
        return
    assert end == blob[0] >> 5 <= len(blob)
    assert value < 1 << (8 * end - 3)


def test_decoder_rejects_nul_truncation_and_long_values() -> None:
    with pytest.raises(IntDecodeError, match="length 0"):
        decode_int(b"\x00")
    with pytest.raises(IntDecodeError, match="end of the datagram"):
        decode_int(b"")
    with pytest.raises(IntDecodeError, match="runs past the end"):
        decode_int(bytes.fromhex("61 86"))
    with pytest.raises(IntDecodeError, match="limit here is 4"):
        decode_int(bytes.fromhex("a0 20 00 00 00"), max_length=IPXE32_MAX_LENGTH)
    assert decode_int(bytes.fromhex("9f ff ff ff"), max_length=IPXE32_MAX_LENGTH)[0] == 2**29 - 1


def test_worked_packets_1461_byte_file() -> None:
    header = Header(1700000000, 1461, 1451)
    assert header.num_blocks == 2
    assert encode_ping(header) == bytes.fromhex("a0 65 53 f1 00 45 b5 45 ab")
    assert encode_data(header.encode(), 1, b"0123456789") == bytes.fromhex(
        "a0 65 53 f1 00 45 b5 45 ab 21 30 31 32 33 34 35 36 37 38 39"
    )
    block0 = encode_data(header.encode(), 0, b"x" * 1451)
    assert block0[:10] == bytes.fromhex("a0 65 53 f1 00 45 b5 45 ab 20") and len(block0) == 1461
    parsed, offset = decode_header(block0)
    assert parsed == header and offset == 9


def test_worked_packets_100000_byte_file() -> None:
    header = Header(1700000000, 100000, 1451)
    assert header.encode() == bytes.fromhex("a0 65 53 f1 00 61 86 a0 45 ab")
    assert header.num_blocks == 69
    assert encode_int(68) == bytes.fromhex("40 44")
    assert 100000 - 68 * 1451 == 1332
    assert encode_nack_range(4, 4) == bytes.fromhex("24 24 00")
    assert encode_nack_range(1000, 4) == bytes.fromhex("43 e8 24 00")


def test_worked_nacks_decode() -> None:
    assert decode_client_datagram(bytes.fromhex("20 21 00")) == Nack(((0, 1),))
    assert decode_client_datagram(bytes.fromhex("21 21 00")) == Nack(((1, 1),))
    assert decode_client_datagram(bytes.fromhex("43 e8 24 00")) == Nack(((1000, 4),))
    assert decode_client_datagram(b"\x00") == Disconnect()
    # Etherboot: received 0-9, missing 10-19, received 20-68
    etherboot = encode_nack_runs([10, 10, 49])
    assert etherboot == bytes.fromhex("2a 2a 40 31 00")
    assert decode_client_datagram(etherboot) == Nack(((10, 10),))
    # Etherboot with block 0 missing starts with a received run of 0
    assert decode_client_datagram(encode_nack_runs([0, 3, 5, 2])) == Nack(((0, 3), (8, 2)))


def test_nack_count_zero_ignored_and_clamped() -> None:
    assert decode_client_datagram(bytes.fromhex("25 20 00")) == Nack(())
    nack = decode_client_datagram(encode_nack_runs([0, 2, 1, 100, 50, 7]))
    assert nack.clamped(10) == [(0, 2), (3, 7)]
    assert Nack(((68, 4),)).clamped(69) == [(68, 1)]
    assert Nack(((69, 4),)).clamped(69) == []
    assert Nack(((0, 1),)).clamped(0) == []


@pytest.mark.parametrize(
    ("hexbytes", "why"),
    [
        ("", "empty"),
        ("20 21", "no NUL"),
        ("20 61 86", "runs past"),
        ("20 21 00 00", "follow the NACK"),
        ("21 21 00 ff", "follow the NACK"),
        ("e0", "runs past"),
    ],
)
def test_malformed_nacks_raise_clear_errors(hexbytes: str, why: str) -> None:
    with pytest.raises(MalformedSlam, match=why):
        decode_client_datagram(bytes.fromhex(hexbytes))


@given(st.binary(max_size=40))
def test_client_datagram_decoder_total(blob: bytes) -> None:
    try:
        decode_client_datagram(blob)
    except MalformedSlam:
        pass


def test_header_rejects_block_size_zero() -> None:
    with pytest.raises(MalformedSlam, match="block size 0"):
        decode_header(bytes.fromhex("21 21 20"))
    with pytest.raises(MalformedSlam, match="limit here is 4"):
        decode_header(bytes.fromhex("21 a0 20 00 00 00 45 ab"), max_length=4)
