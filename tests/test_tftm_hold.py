"""RFC 2090 sessions held for a wave of clients (``--mcast-min-clients``/``--mcast-max-wait``).

Virtual time (tests/tftm_sim.py): the session core with iPXE-faithful ``tftm://`` clients.
"""

from __future__ import annotations

import random

from netboot.tftp.mcast_hold import NEW_WAVE_AFTER, Hold
from tests.test_multicast_core import OPTS, A, B, C, ack, parse, session
from tests.tftm_sim import SimClient, TftmSim

PAYLOAD = random.Random(2090).randbytes(2 * 1024 * 1024)  # 1465 blocks of 1432 bytes


def run(starts: list[float], hold: Hold) -> TftmSim:
    sim = TftmSim(PAYLOAD, [SimClient(start) for start in starts], hold=hold)
    sim.run()
    for index, client in enumerate(sim.clients):
        assert client.core is not None, f"client {index} never started"
        assert client.core.ok, f"client {index}: {client.core.error}"
        assert client.core.image() == PAYLOAD, f"client {index} holds other bytes"
    return sim


def test_a_held_session_sends_the_file_once_to_clients_that_ask_seconds_apart() -> None:
    starts = [0.0, 3.0, 7.0, 11.0]  # TCG VMs of one train reach their payload this far apart
    unheld = run(starts, Hold())
    held = run(starts, Hold(min_clients=4, max_wait=25.0))
    assert unheld.group_bytes / len(PAYLOAD) > 1.8
    assert held.group_bytes / len(PAYLOAD) <= 1.05
    assert len(held.sessions) == 1
    (end,) = [fields for _, name, fields in held.log if name == "gather_end"]
    assert end["reason"] == "min_clients" and end["clients"] == 4 and 10.9 <= float(end["seconds"]) <= 11.1


def test_a_hold_longer_than_ipxes_give_up_loses_no_client() -> None:
    sim = run([0.0, 2.0], Hold(min_clients=4, max_wait=25.0))  # 25 s > iPXE's 15.75 s
    (end,) = [fields for _, name, fields in sim.log if name == "gather_end"]
    assert end["reason"] == "max_wait" and end["clients"] == 2
    finished = [c.core.finished_at for c in sim.clients if c.core is not None]
    assert len(finished) == 2 and all(t is not None and t > 25 for t in finished)
    assert sim.group_bytes / len(PAYLOAD) <= 1.05


def test_a_straggler_is_served_at_once_and_a_new_node_or_a_later_wave_is_held() -> None:
    """A node of the last session asking again soon (it reopened, it rebooted) is a straggler;
    a node the last session never served, or one back after ``NEW_WAVE_AFTER``, starts a wave."""
    first = "192.0.2.10"
    straggler, new_node, next_wave = 8.0, 15.0, 15.0 + 12.0 + NEW_WAVE_AFTER + 5.0
    clients = [
        SimClient(0.0, ip=first),
        SimClient(0.5),
        SimClient(straggler, ip=first),
        SimClient(new_node),  # a new rack's first node, while the last session ended < 16 s ago
        SimClient(next_wave, ip=first),
    ]
    sim = TftmSim(PAYLOAD, clients, hold=Hold(min_clients=2, max_wait=10.0))
    sim.run()
    assert all(c.core is not None and c.core.ok and c.core.image() == PAYLOAD for c in sim.clients)
    finished = [c.core.finished_at for c in sim.clients if c.core is not None]
    assert finished[2] is not None and finished[2] - straggler < 3.0, "the straggler waited"
    assert finished[3] is not None and finished[3] - new_node >= 10.0, "the new node was not held"
    assert finished[4] is not None and finished[4] - next_wave >= 10.0, "the next wave was not held"
    assert sim.names().count("gather_start") == 3


def test_held_clients_wait_as_non_masters_then_the_first_becomes_master() -> None:
    core = session()
    core.hold = Hold(min_clients=3, max_wait=20.0)
    core.hold_until = 20.0
    core.add_request(A, OPTS, 0.0)
    core.add_request(B, OPTS, 1.0)
    out = parse(core.datagrams_to_send(1.0))
    assert [(kind, options[b"multicast"], addr) for kind, options, addr in out] == [  # type: ignore[index]
        ("OACK", b"239.255.0.0,1758,0", A),
        ("OACK", b"239.255.0.0,1758,0", B),
    ]
    core.receive_datagram(ack(0), A, 1.1)  # a non-master's stray ACK starts nothing
    assert core.master is None and core.datagrams_to_send(1.1) == []
    core.add_request(C, OPTS, 2.0)
    out = parse(core.datagrams_to_send(2.0))
    assert ("OACK", {b"blksize": b"100", b"tsize": b"1000", b"multicast": b"239.255.0.0,1758,1"}, A) in out
    assert core.master is not None and core.master.addr == A
    core.receive_datagram(ack(0), A, 2.1)
    assert parse(core.datagrams_to_send(2.1)) == [("DATA", 1, ("239.255.0.0", 1758))]


def test_mtftp_sessions_are_never_held() -> None:
    data = bytes(1000)
    from netboot.tftp.multicast import MulticastSession
    from tests.test_multicast_core import GROUP

    core = MulticastSession(
        lambda o, n: data[o : o + n], 1000, 512, GROUP, 0.0, mtftp=True, hold=Hold(min_clients=4, max_wait=30)
    )
    core.add_request(A, [], 0.0)
    assert core.hold is None and core.master is not None
    assert ("DATA", 1, ("239.255.0.0", 1758)) in parse(core.datagrams_to_send(0.0))


def test_bad_hold_settings_are_refused() -> None:
    for bad in ({"min_clients": 0}, {"max_wait": -1.0}):
        try:
            Hold(**bad)  # type: ignore[arg-type]
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")
