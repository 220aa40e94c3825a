"""What silent (spoofable) requesters cost a session, and that they delay no real client.

Issue 20, measured on real sockets (tests/bench/test_bench_robustness.py): 30 silent
``tftm://`` RRQs drew 2,535 OACKs over 90 s (atftpd: 39), 500 silent MTFTP RRQs 4,414
DATA (atftpd: 6), and 30 silent requesters delayed a real client to 29.7 s (0.2 s
alone).  Here the session core runs in virtual time (tests/tftm_sim.py) with
iPXE-faithful clients, so the bounds are exact.
"""

from __future__ import annotations

import random
import struct

from netboot.tftp.mcast_pool import GroupPort
from netboot.tftp.multicast import MulticastSession
from tests.tftm_sim import SimClient, TftmSim

PAYLOAD = random.Random(20).randbytes(512 * 1024)
#: The OACKs atftpd 0.8 sent to 30 silent requesters over 50 s (tests/bench/test_bench_robustness.py).
ATFTPD_OACKS_FOR_30 = 39


def test_thirty_silent_requesters_draw_one_oack_each_and_the_session_ends() -> None:
    sim = TftmSim(PAYLOAD, [], silent=[0.001 * i for i in range(30)], until_session_ends=True)
    sim.run(limit=120.0)
    oacks = [data for _, data in sim.to_silent if data[:2] == b"\0\6"]
    assert len(oacks) == len(sim.to_silent) == 30 <= ATFTPD_OACKS_FOR_30
    assert sim.session_end is not None and sim.session_end < 2.0, "no session left running for 90 s"


def test_a_real_client_is_not_delayed_by_thirty_silent_requesters() -> None:
    alone = TftmSim(PAYLOAD, [SimClient(0.5)])
    alone.run()
    crowded = TftmSim(PAYLOAD, [SimClient(0.5)], silent=[0.001 * i for i in range(30)])
    crowded.run()
    for sim in (alone, crowded):
        core = sim.clients[0].core
        assert core is not None and core.ok and core.image() == PAYLOAD
    took = [sim.clients[0].core.finished_at - 0.5 for sim in (alone, crowded)]  # type: ignore[union-attr, operator]
    assert took[1] - took[0] < 1.0, took
    assert len(crowded.to_silent) <= 30 + 1


def test_silent_requesters_that_join_a_running_stream_cost_one_probe_round() -> None:
    """Late silent joiners are listeners; when the master is done they are asked once, all at
    once; then the session waits silently for them, as for a stalled guest, and tells them."""
    sim = TftmSim(PAYLOAD, [SimClient(0.0)], silent=[0.1 + 0.001 * i for i in range(30)],
                  until_session_ends=True)
    sim.run(limit=60.0)
    assert sim.clients[0].core is not None and sim.clients[0].core.ok
    assert sim.session_end is not None
    finished = sim.clients[0].core.finished_at
    assert finished is not None
    probes_over = finished + 2.0
    assert all(t < probes_over for t, data in sim.to_silent if data[:2] == b"\0\6"), "one round, not one each"
    errors = [t for t, data in sim.to_silent if data[:2] == b"\0\5"]
    assert len(errors) == 30 and min(errors) > probes_over + 14.0, "then silence, then one ERROR each"
    assert len(sim.to_silent) <= 30 * 7, "join OACK, keep-alives, one probe round and an ERROR each"


MTFTP_GROUP = GroupPort("239.255.1.1", 3001)


def test_five_hundred_silent_mtftp_requests_draw_a_handful_of_datagrams() -> None:
    data = PAYLOAD
    core = MulticastSession(lambda o, n: data[o : o + n], len(data), 512, MTFTP_GROUP, 0.0, mtftp=True)
    requesters = [(f"192.0.2.{10 + i % 200}", 2000 + i) for i in range(500)]
    unicast = group = 0
    now = 0.0
    for index, requester in enumerate(requesters):
        now = index * 0.001
        core.add_request(requester, [], now)
    while not core.finished and now < 60:
        for datagram, addr in core.datagrams_to_send(now):
            assert struct.unpack_from("!H", datagram)[0] == 3
            if addr == (MTFTP_GROUP.group, MTFTP_GROUP.port):
                group += 1
            else:
                unicast += 1
        deadline = core.get_timer()
        assert deadline is not None or core.finished
        now = max(now + 0.001, deadline or now)
        core.handle_timer(now)
    assert core.finished and now < 3.0
    assert unicast <= 5 and group <= 2, (unicast, group)  # atftpd: 6 and 6 (tests/bench)


def test_a_real_mtftp_client_is_not_delayed_by_five_hundred_silent_requests() -> None:
    """It asks again after 0.25 s (it heard nothing) and takes over from the silent candidate."""
    alone = TftmSim(PAYLOAD, [SimClient(0.6)], scheme="mtftp")
    alone.run()
    crowded = TftmSim(PAYLOAD, [SimClient(0.6)], silent=[0.001 * i for i in range(500)], scheme="mtftp")
    crowded.run()
    for sim in (alone, crowded):
        core = sim.clients[0].core
        assert core is not None and core.ok and core.image() == PAYLOAD
        assert "client_fallback" not in sim.names()
    took = [sim.clients[0].core.finished_at - 0.6 for sim in (alone, crowded)]  # type: ignore[union-attr, operator]
    assert took[1] - took[0] < 1.0, took
    unicast_to_silent = [data for _, data in crowded.to_silent]
    assert len(unicast_to_silent) <= 5
