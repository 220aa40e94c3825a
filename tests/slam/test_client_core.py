"""The iPXE-faithful client core against slam.c's behaviour.

That behaviour is restated in docs/pyslamd.md, "The iPXE-faithful SLAM client".
"""

from __future__ import annotations

from netboot.clients.slam_client import SlamClient
from netboot.slam.packets import Header, decode_client_datagram, encode_data, encode_ping

SERVER = ("192.0.2.1", 10000)


def _run_timers(client: SlamClient, until: float) -> list[tuple[float, bytes]]:
    sent = []
    now = 0.0
    while client.outcome is None:
        deadline = client.get_timer()
        assert deadline is not None
        if deadline > until:
            break
        now = deadline
        client.handle_timer(now)
        sent += [(now, data) for data, _ in client.datagrams_to_send(now)]
    return sent


def test_lone_client_nacks_at_1_3_7_seconds_and_gives_up_at_15() -> None:
    client = SlamClient(SERVER, now=0.0)
    assert client.datagrams_to_send(0.0) == []  # nothing before the slave timer fires
    sent = _run_timers(client, until=30.0)
    times = [round(t, 2) for t, _ in sent]
    assert times == [1.0, 3.0, 7.0, 15.0]
    assert client.first_nack_at is not None and round(client.first_nack_at, 2) == 1.0  # the bench's origin
    assert [data for _, data in sent[:3]] == [bytes.fromhex("20 21 00")] * 3
    assert sent[3][1] == b"\x00"  # disconnect, because a NACK was sent
    assert client.outcome == "timeout"


def _file_client(
    total: int = 10 * 100, bs: int = 100, variant: str = "ipxe"
) -> tuple[SlamClient, Header, bytes]:
    data = bytes(range(256)) * (total // 256 + 1)
    data = data[:total]
    client = SlamClient(SERVER, now=0.0, variant=variant)
    return client, Header(77, total, bs), data


def _block(header: Header, data: bytes, n: int) -> bytes:
    bs = header.block_size
    return encode_data(header.encode(), n, data[n * bs : (n + 1) * bs])


def test_nack_names_at_most_four_blocks_from_the_first_gap() -> None:
    client, header, data = _file_client()
    for n in (0, 1, 2, 9):
        client.receive_multicast(_block(header, data, n), now=0.1)
    client.receive_datagram(encode_ping(header), SERVER, now=0.2)
    [(nack, addr)] = client.datagrams_to_send(0.2)
    assert addr == SERVER and decode_client_datagram(nack).ranges == ((3, 4),)  # type: ignore[union-attr]
    for n in (3, 4, 5, 6, 7):
        client.receive_multicast(_block(header, data, n), now=0.3)
    client.receive_datagram(encode_ping(header), SERVER, now=0.4)
    [(nack, _)] = client.datagrams_to_send(0.4)
    assert nack == bytes.fromhex("28 21 00")  # block 8 only: block 9 is held
    client.receive_multicast(_block(header, data, 8), now=0.5)
    assert client.outcome == "ok" and client.data() == data
    assert client.datagrams_to_send(0.5) == [(b"\x00", SERVER)]


def test_etherboot_variant_sends_the_full_run_length_list() -> None:
    client, header, data = _file_client(variant="etherboot")
    for n in (0, 1, 5, 6, 7):
        client.receive_multicast(_block(header, data, n), now=0.1)
    client.receive_datagram(encode_ping(header), SERVER, now=0.2)
    [(nack, _)] = client.datagrams_to_send(0.2)
    assert decode_client_datagram(nack).ranges == ((2, 3), (8, 2))  # type: ignore[union-attr]


def test_changed_header_resets_progress_and_bad_pings_are_ignored() -> None:
    client, header, data = _file_client()
    for n in range(5):
        client.receive_multicast(_block(header, data, n), now=0.1)
    client.receive_datagram(encode_ping(header) + b"x", SERVER, now=0.2)
    assert client.datagrams_to_send(0.2) == []  # trailing garbage: no NACK
    new_header = Header(78, header.total_bytes, header.block_size)
    client.receive_datagram(encode_ping(new_header), SERVER, now=0.3)
    [(nack, _)] = client.datagrams_to_send(0.3)
    assert nack == bytes.fromhex("20 24 00")  # everything is missing again
    assert client.stats.resets == 2


def test_short_and_oversize_blocks_are_discarded() -> None:
    client, header, data = _file_client()
    client.receive_multicast(encode_data(header.encode(), 0, data[:50]), now=0.1)  # short, not last
    client.receive_multicast(encode_data(header.encode(), 1, data[:101]), now=0.1)  # oversize
    client.receive_multicast(encode_data(header.encode(), 10, data[:100]), now=0.1)  # past the end
    assert client.stats.discarded == 3 and client.stats.data_received == 0


def test_master_timer_resends_and_gives_up_without_failing() -> None:
    client, header, _ = _file_client()
    client.receive_datagram(encode_ping(header), SERVER, now=0.0)
    client.datagrams_to_send(0.0)
    client.slave_timer.start_fixed(0.0, 10**9)  # isolate the master timer
    sent = _run_timers(client, until=40.0)
    gaps = [round(b - a, 2) for (a, _), (b, _) in zip([(0.0, b"")] + sent, sent, strict=False)]
    assert gaps[:3] == [0.25, 0.5, 1.0]
    assert client.outcome is None and not client.master_timer.running
