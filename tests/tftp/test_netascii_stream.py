"""Netascii reads are converted as they are read: bounded memory, no size up front (issue 20)."""

from __future__ import annotations

import os
import struct
import tracemalloc
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from netboot.tftp.netascii import NetasciiSource, to_netascii
from netboot.tftp.options import OptionPolicy, negotiate
from netboot.tftp.read_transfer import ReadTransfer
from tests.tftp.core_helpers import PEER, ack, download
from tests.tftp.fake_services import FakeServices, read_request


def _source(tmp_path: Path, data: bytes, chunk: int) -> NetasciiSource:
    path = tmp_path / "text"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    return NetasciiSource(fd, len(data), chunk=chunk)


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=3000).map(lambda b: b.replace(b"a", b"\n").replace(b"b", b"\r")),
    chunk=st.integers(1, 64),
    reads=st.lists(st.tuples(st.integers(0, 7000), st.integers(0, 600)), max_size=20),
)
def test_any_read_equals_the_whole_conversion(data: bytes, chunk: int, reads: list[tuple[int, int]]) -> None:
    import tempfile

    wire = to_netascii(data)
    with tempfile.TemporaryDirectory() as scratch:
        source = _source(Path(scratch), data, chunk)
        try:
            for offset, length in reads:  # forwards, backwards, past the end
                assert source.read(offset, length) == wire[offset : offset + length]
            assert source.size is None
        finally:
            source.close()


def test_a_transfer_of_unknown_size_ends_at_its_first_short_block(tmp_path: Path) -> None:
    text = b"line\n" * 300 + b"end\r"  # 1500 + 4 bytes -> 1804 on the wire
    source = _source(tmp_path, text, chunk=100)
    negotiation = negotiate((("tsize", "0"), ("blksize", "512")), source.size, OptionPolicy())
    assert ("tsize", "0") not in negotiation.acknowledged and negotiation.tsize is None
    core = ReadTransfer(PEER, source, negotiation, now=0.0)
    assert download(core) == to_netascii(text)
    assert core.succeeded and core.last_block == 4


def test_an_exact_multiple_ends_with_an_empty_block(tmp_path: Path) -> None:
    text = b"\n" * 256  # 512 bytes on the wire
    core = ReadTransfer(PEER, _source(tmp_path, text, chunk=64), negotiate((), None, OptionPolicy()), now=0.0)
    sizes = []
    for block in (1, 2):
        ((datagram, _),) = core.datagrams_to_send(0.0)
        sizes.append(len(datagram) - 4)
        core.receive_datagram(ack(block), PEER, 0.0)
    assert sizes == [512, 0] and core.succeeded


def test_a_retransmission_reads_the_same_bytes_again(tmp_path: Path) -> None:
    text = bytes(range(256)) * 40
    source = _source(tmp_path, text, chunk=100)
    core = ReadTransfer(PEER, source, negotiate((), None, OptionPolicy()), now=0.0)
    core.datagrams_to_send(0.0)
    core.receive_datagram(ack(1), PEER, 0.0)
    (second,) = core.datagrams_to_send(0.0)
    core.handle_timer(10.0)
    (again,) = core.datagrams_to_send(10.0)
    assert again == second and struct.unpack_from("!HH", again[0]) == (3, 2)
    assert again[0][4:] == to_netascii(text)[512:1024]


def test_a_netascii_request_for_a_big_file_allocates_a_bounded_amount(tmp_path: Path) -> None:
    """32 MB of newlines used to be converted whole (64 MB and a Python call per line)."""
    big = tmp_path / "newlines.txt"
    with open(big, "wb") as handle:
        for _ in range(32):
            handle.write(b"\n" * (1 << 20))
    services = FakeServices(str(tmp_path))
    tracemalloc.start()
    try:
        options = (("tsize", "0"), ("blksize", "512"))
        services.handle(read_request("newlines.txt", mode="netascii", options=options))
        (core,) = services.cores
        assert isinstance(core, ReadTransfer)
        ((oack, _),) = core.datagrams_to_send(0.0)
        core.receive_datagram(ack(0), PEER, 0.0)
        ((data, _),) = core.datagrams_to_send(0.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert oack == b"\0\6blksize\x00512\0"  # no tsize: the wire size is not known up front
    assert data == b"\0\3\0\1" + b"\r\n" * 256
    assert peak < 1 << 20, f"{peak} bytes allocated to start a netascii read of 32 MB"
    services.close_all()


def test_a_repeated_request_starts_no_second_transfer(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_bytes(b"hello\n" * 1000)
    services = FakeServices(str(tmp_path))
    for _ in range(3):
        services.handle(read_request("t.txt", mode="netascii"))
    assert len(services.cores) == 1
    assert [e["event"] for e in services.emitted].count("rrq_repeated") == 2
    assert services.slots_used == 1
    services.close_all()
    assert services.slots_used == 0
    services.handle(read_request("t.txt", mode="netascii"))  # after the end: a new transfer
    assert len(services.cores) == 2
    services.close_all()
