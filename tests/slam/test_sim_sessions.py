"""pyslamd's core with iPXE-faithful client cores in virtual time (tests/slam/sim.py)."""

from __future__ import annotations

import os

from netboot.slam.packets import DEFAULT_BLOCK_SIZE
from netboot.slam.server import Content, ServerConfig
from tests.slam.sim import Sim, SimClient

SIZE = 300 * DEFAULT_BLOCK_SIZE + 17


def _all_ok(sim: Sim, data: bytes) -> None:
    for c in sim.clients:
        assert c.core is not None
        assert c.core.outcome == "ok", f"client {c.address}: {c.core.outcome}"
        assert c.core.data() == data


def test_twenty_clients_with_five_percent_loss_all_get_the_bytes() -> None:
    data = os.urandom(SIZE)
    sim = Sim(Content(1, data), [SimClient(start=0.01 * i, loss=0.05) for i in range(20)], seed=3)
    sim.run(limit=30)
    _all_ok(sim, data)
    assert max(c.core.finished_at or 99 for c in sim.clients if c.core) < 10


def test_no_loss_200_clients_get_each_block_about_once() -> None:
    data = os.urandom(SIZE)
    sim = Sim(Content(1, data), [SimClient(start=0.001 * i) for i in range(200)])
    server = sim.run(limit=30)
    _all_ok(sim, data)
    assert server.stats.data_bytes <= 1.1 * len(data)


def test_late_joiner_finishes_from_the_running_stream() -> None:
    data = os.urandom(SIZE)
    config = ServerConfig(max_rate=300.0)  # 300 blocks/s: the pass takes about 1 s
    sim = Sim(Content(1, data), [SimClient(start=0.0), SimClient(start=0.0), SimClient(start=1.5)], config)
    sim.run(limit=30)
    _all_ok(sim, data)
    late = sim.clients[2].core
    assert late is not None and late.stats.data_received == 301


def test_killed_master_is_replaced_within_a_second() -> None:
    data = os.urandom(SIZE)
    config = ServerConfig(max_rate=150.0)  # about 2 s for the file
    # All start together, so all NACK at 1 s and the server knows each of them.
    clients = [SimClient(start=0.0, dies_at=1.5)] + [SimClient(start=0.00001 * (i + 1)) for i in range(3)]
    sim = Sim(Content(1, data), clients, config)
    sim.run(limit=40)
    for c in clients[1:]:
        assert c.core is not None and c.core.outcome == "ok" and c.core.data() == data
    dead = f"{clients[0].address[0]}:{clients[0].address[1]}"
    masters = [(t, f["client"]) for t, name, f in sim.log if name == "master"]
    assert masters[0][1] == dead
    left = [t for t, name, f in sim.log if name == "client_left" and f["client"] == dead]
    assert left and left[0] - 1.5 < 1.0
    assert any(1.5 <= t < 2.5 and who not in (dead, None) for t, who in masters)


def test_file_change_mid_transfer_restarts_everyone_on_the_new_bytes() -> None:
    old, new = os.urandom(SIZE), os.urandom(SIZE - 5000)
    config = ServerConfig(max_rate=300.0)
    sim = Sim(Content(1, old), [SimClient(start=0.01 * i) for i in range(3)], config)
    sim.changes = [(1.5, Content(2, new))]
    sim.run(limit=30)
    _all_ok(sim, new)
    assert all(c.core is not None and c.core.stats.resets == 2 for c in sim.clients)


def test_empty_file_never_wedges_and_ipxe_gives_up_at_15_seconds() -> None:
    sim = Sim(Content(1, b""), [SimClient(start=0.0), SimClient(start=0.1, complete_empty=True)])
    server = sim.run(limit=40)
    faithful, lenient = (c.core for c in sim.clients)
    assert faithful is not None and lenient is not None
    assert faithful.outcome == "timeout" and 14.5 < (faithful.finished_at or 0) < 16.5
    assert lenient.outcome == "ok" and lenient.data() == b""
    assert server.stats.data_sent == 0 and server.stats.pings_sent < 60
    assert not server.peers and server.get_timer() is None  # idle again, nothing spinning


def test_one_byte_file() -> None:
    sim = Sim(Content(1, b"Z"), [SimClient(start=0.01 * i) for i in range(3)])
    sim.run(limit=10)
    _all_ok(sim, b"Z")


def test_malformed_nacks_are_dropped_and_everyone_else_is_served() -> None:
    data = os.urandom(SIZE)
    hostile = ("192.0.2.66", 6666)
    junk = [b"", b"\x20\x21", b"\xe0", b"\x20\x21\x00\x00", b"\xff" * 40, b"\x21\x61\x86"]
    sim = Sim(Content(1, data), [SimClient(start=0.01 * i) for i in range(5)])
    sim.injections = [(0.9 + 0.01 * i, junk[i % len(junk)], hostile) for i in range(120)]
    server = sim.run(limit=30)
    _all_ok(sim, data)
    assert server.stats.malformed == 120
    assert hostile not in server.peers
    assert sum(1 for _, name, _ in sim.log if name == "malformed") == 120


def test_nack_past_eof_and_count_zero_do_not_wedge() -> None:
    data = os.urandom(10 * DEFAULT_BLOCK_SIZE)
    rogue = ("192.0.2.77", 7777)
    # Etherboot-style lists: a range past EOF, a count of 0, a huge range clamped to the file.
    nacks = [bytes.fromhex("5f ff 24 00"), bytes.fromhex("22 20 00"), bytes.fromhex("20 9f ff ff ff 00")]
    sim = Sim(Content(1, data), [SimClient(start=0.0)])
    sim.injections = [(0.5 + 0.1 * i, nack, rogue) for i, nack in enumerate(nacks)]
    server = sim.run(limit=30)
    _all_ok(sim, data)
    assert server.stats.malformed == 0
    assert server.stats.data_sent <= 3 * 10 + 5


def test_deaf_client_does_not_hold_up_the_others() -> None:
    data = os.urandom(SIZE)
    clients = [SimClient(start=0.0, deaf=True)] + [SimClient(start=0.05 * (i + 1)) for i in range(3)]
    sim = Sim(Content(1, data), clients)
    sim.run(limit=40)
    for c in clients[1:]:
        assert c.core is not None and c.core.outcome == "ok" and c.core.data() == data
    deaf = clients[0].core
    assert deaf is not None and deaf.outcome == "timeout"


def test_pacing_backs_off_for_a_slow_nic() -> None:
    """A NIC that takes 800 datagrams/s (ring of 32) against a 8600/s ceiling: the rate
    must come down to about what it takes.  Without adaptation (min rate = ceiling) the
    same transfer sends the file about 7 times; adapted, at most about twice."""
    data = os.urandom(2000 * DEFAULT_BLOCK_SIZE)
    sent = {}
    for label, config in (
        ("adaptive", ServerConfig(max_rate=8600.0)),
        ("fixed", ServerConfig(max_rate=8600.0, min_rate=8600.0)),
    ):
        clients = [SimClient(start=0.0, capacity=800.0)]
        sim = Sim(Content(1, data), clients, config)
        server = sim.run(limit=120)
        _all_ok(sim, data)
        sent[label] = server.stats.data_bytes / len(data)
        if label == "adaptive":
            rates = [float(str(f["rate"])) for _, name, f in sim.log if name == "rate"]
            assert min(rates) < 1000 and max(rates[-10:]) < 2000
    assert sent["adaptive"] < 2.5 and sent["adaptive"] < sent["fixed"] / 2, sent


def test_stream_waits_for_a_master_too_busy_to_answer() -> None:
    """A master that NACKs once and then never answers a ping: the stream stops after
    ``max_unconfirmed`` datagrams instead of pouring the file into a full queue; its
    next answer opens the window again."""
    from netboot.slam.packets import encode_nack_range
    from netboot.slam.server import SlamServer

    data = os.urandom(2000 * DEFAULT_BLOCK_SIZE)
    config = ServerConfig(max_rate=8600.0, max_unconfirmed=100)
    server = SlamServer(Content(1, data), ("239.255.1.1", 10000), config)
    master = ("192.0.2.2", 5000)
    server.receive_datagram(encode_nack_range(1, 4), master, 0.0)
    now, sent, pings = 0.0, 0, 0
    while now < 0.5:
        out = server.datagrams_to_send(now)
        sent += sum(1 for _, addr in out if addr == server.group)
        pings += sum(1 for _, addr in out if addr == master)
        now = max(now + 0.001, server.get_timer() or now + 0.001)
    assert 100 <= sent <= 100 + config.burst, sent  # 0.5 s at half the ceiling would be ~2150
    assert pings >= 2  # it keeps asking
    server.receive_datagram(encode_nack_range(sent, 4), master, now)  # answers the last ping
    later = server.datagrams_to_send(now + 0.01)
    assert any(addr == server.group for _, addr in later)
