"""No slow listener left behind (issue 18), in virtual time (tests/tftm_sim.py).

Seen in the lab: pcnet (TCG) was promoted to master, did not answer within 1 s twice,
was dropped as "stopped acknowledging the group stream", and iPXE printed ``Connection
timed out``.  A guest that is not scheduled for a second or two must get the rest when
it runs again; one the server gives up on must get an ERROR it can act on.
"""

from __future__ import annotations

import random

import pytest

from tests.tftm_sim import SimClient, TftmSim

PAYLOAD = random.Random(7).randbytes(1 << 20)


def pass_end(scheme: str) -> float:
    alone = TftmSim(PAYLOAD, [SimClient(0.0)], scheme=scheme)
    alone.run()
    core = alone.clients[0].core
    assert core is not None and core.finished_at is not None
    return core.finished_at


@pytest.mark.parametrize("scheme", ["tftm", "mtftp"])
@pytest.mark.parametrize("stall", [1.5, 2.5, 5.0])
def test_a_listener_not_scheduled_when_its_turn_comes_gets_the_rest(scheme: str, stall: float) -> None:
    end = pass_end(scheme)
    stalled = SimClient(0.6, options={"stalls": ((end - 0.05, end - 0.05 + stall),)})
    sim = TftmSim(PAYLOAD, [SimClient(0.0), SimClient(0.3), stalled], scheme=scheme, until_session_ends=True)
    sim.run(limit=120.0)
    for client in sim.clients:
        assert client.core is not None and client.core.ok, client.core.error if client.core else None
        assert client.core.image() == PAYLOAD
    assert "mcast_client_back" in sim.names()
    assert stalled.core is not None and stalled.core.finished_at is not None
    assert stalled.core.finished_at < end + stall + 2.0


@pytest.mark.parametrize("scheme", ["tftm", "mtftp"])
def test_a_master_not_scheduled_mid_pass_is_skipped_then_served(scheme: str) -> None:
    end = pass_end(scheme)
    master = SimClient(0.0, options={"stalls": ((end / 3, end / 3 + 3.0),)})
    sim = TftmSim(PAYLOAD, [master, SimClient(0.1)], scheme=scheme, until_session_ends=True)
    sim.run(limit=120.0)
    for client in sim.clients:
        assert client.core is not None and client.core.ok, client.core.error if client.core else None
        assert client.core.image() == PAYLOAD


@pytest.mark.parametrize("scheme", ["tftm", "mtftp"])
def test_a_client_given_up_hears_an_error_not_silence(scheme: str) -> None:
    end = pass_end(scheme)
    gone = SimClient(0.6, options={"stalls": ((end - 0.05, end + 30.0),)})  # longer than iPXE waits
    sim = TftmSim(PAYLOAD, [SimClient(0.0), gone], scheme=scheme, until_session_ends=True)
    sim.run(limit=120.0)
    assert gone.core is not None and not gone.core.ok
    assert gone.core.error is not None and "pyatftpd gave up on this transfer" in gone.core.error
    gave_up = [f for _, name, f in sim.log if name == "mcast_client_gone" and f.get("error_sent")]
    assert gave_up
