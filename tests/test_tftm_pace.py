"""RFC 2090 pace: the lead rotates, and what listeners lost sets the gap between blocks.

Virtual time (tests/tftm_sim.py) with iPXE-faithful ``tftm://`` clients whose guests the
host does not always schedule (``stalls``) and whose NIC rings hold 32 frames, as the
lab's TCG guests behave (docs/multicast.md, "Pace").
"""

from __future__ import annotations

import random

import pytest

from netboot.tftp.mcast_hold import Hold
from netboot.tftp.mcast_pace import LOSS_TARGET, MAX_GAP, PaceControl
from netboot.tftp.multicast import Tuning
from tests.tftm_sim import SimClient, TftmSim

PAYLOAD = random.Random(2091).randbytes(2 * 1024 * 1024)  # 1465 blocks of 1432 bytes
A, B = ("192.0.2.10", 2001), ("192.0.2.11", 2101)


def stalls(phase_ms: int) -> tuple[tuple[float, float], ...]:
    """Not scheduled for 60 ms of every 150 ms, each guest at its own phase."""
    return tuple((t / 1000, (t + 60) / 1000) for t in range(phase_ms, 60_000, 150))


def train(pace_blocks: int, scheduled_always: bool = False) -> TftmSim:
    clients = [
        SimClient(i * 0.5, options={"ring": 32, "frame_cost": 0.0002,
                                    "stalls": () if scheduled_always else stalls(37 * i)})
        for i in range(4)
    ]  # fmt: skip
    hold = Hold(min_clients=4, max_wait=25.0)
    sim = TftmSim(PAYLOAD, clients, hold=hold, tuning=Tuning(pace_blocks=pace_blocks))
    sim.run(limit=300)
    for index, client in enumerate(sim.clients):
        assert client.core is not None, f"client {index} never started"
        assert client.core.ok, f"client {index}: {client.core.error}"
        assert client.core.image() == PAYLOAD, f"client {index} holds other bytes"
    return sim


def paces(sim: TftmSim) -> list[dict[str, object]]:
    return [fields for _, name, fields in sim.log if name == "mcast_pace"]


def test_listeners_that_lose_frames_slow_the_stream_until_the_group_carries_the_file_about_once() -> None:
    unpaced = train(pace_blocks=0)
    paced = train(pace_blocks=Tuning.pace_blocks)
    assert unpaced.group_bytes / len(PAYLOAD) > 1.15, "the scenario must overflow a listener"
    assert paced.group_bytes / len(PAYLOAD) <= 1.1
    reports = paces(paced)
    assert reports and max(float(str(r["gap_ms"])) for r in reports) > 0, "no loss ever widened the gap"
    assert any(int(str(r["lost"])) > 0 for r in reports)
    assert not paces(unpaced)


def test_listeners_that_keep_up_leave_the_stream_as_fast_as_the_master_acks() -> None:
    unpaced = train(pace_blocks=0, scheduled_always=True)
    paced = train(pace_blocks=Tuning.pace_blocks, scheduled_always=True)
    reports = paces(paced)
    assert len(reports) >= 8, "the lead did not rotate"
    assert all(r["lost"] == 0 and r["gap_ms"] == 0.0 for r in reports), reports
    assert paced.group_bytes == unpaced.group_bytes == len(PAYLOAD) // 1432 * 1432 + len(PAYLOAD) % 1432
    # the turns cost one offer round trip each: a few percent, never a slower stream
    assert paced.end <= unpaced.end * 1.05, (paced.end, unpaced.end)


def control(gap: float = 0.0) -> PaceControl:
    pace = PaceControl(blocks=4, gap=gap)
    pace.start(0.0, packets=0, members=[A, B])
    return pace


def test_a_leader_that_lost_blocks_widens_the_gap_by_half_or_from_the_spacing_it_heard() -> None:
    pace = control()
    pace.follow(B, head=100)  # B listened to 100 blocks in 0.2 s, then leads
    for block in range(60, 101):
        assert pace.advance(block, 0.2, packets=100 + block - 60) is None  # catching up
    report = pace.advance(101, 0.21, packets=141)
    assert report is not None and report.lost == 41 and report.heard == 100
    assert pace.gap == pytest.approx(1.5 * report.spacing)
    wide = control(gap=0.004)
    wide.follow(B, head=100)
    for block in range(96, 101):
        wide.advance(block, 0.5, packets=100)
    assert wide.advance(101, 0.5, packets=105) is not None and wide.gap == pytest.approx(0.006)
    widest = control(gap=MAX_GAP)
    widest.follow(B, head=100)
    for block in range(50, 101):
        widest.advance(block, 2.0, packets=100)
    widest.advance(101, 2.0, packets=151)
    assert widest.gap == MAX_GAP


def test_a_leader_that_lost_nothing_narrows_the_gap_down_to_none() -> None:
    pace = control(gap=0.001)
    pace.follow(B, head=100)
    assert pace.advance(101, 0.3, packets=100) is not None  # no catch-up: it lost nothing
    assert pace.gap == pytest.approx(0.001 / 1.1)
    tiny = control(gap=0.0002)
    tiny.follow(B, head=100)
    tiny.advance(101, 0.3, packets=100)
    assert tiny.gap == 0.0
    # a loss below the target is no loss
    small = control(gap=0.001)
    small.follow(B, head=1000)
    lost = int(LOSS_TARGET * 1000)
    for block in range(1000 - lost + 1, 1001):
        small.advance(block, 1.0, packets=1000)
    small.advance(1001, 1.0, packets=1000 + lost)
    assert small.gap < 0.001


def test_a_leader_the_election_chose_is_not_judged_by_its_catch_up() -> None:
    """A promoted late joiner's catch-up is the start it never heard, not a listener's loss."""
    pace = control(gap=0.001)
    pace.follow(("192.0.2.99", 9), head=500)  # not there when the stream began
    assert pace.advance(1, 1.0, packets=600) is None and pace.advance(501, 1.0, packets=600) is None
    pace.follow(B, head=0)  # the lead changed for another reason
    assert pace.advance(1, 1.0, packets=600) is None and pace.gap == 0.001


def test_a_late_joiner_leading_for_what_it_lacks_keeps_the_lead_and_the_last_turn_stays() -> None:
    """Three held clients start the stream; a fourth joins halfway and is promoted when the
    pass ends, and then leads far more than a turn while the others wait silently (done)."""
    clients = [SimClient(start) for start in (0.0, 0.1, 0.2, 0.6)]
    sim = TftmSim(PAYLOAD, clients, hold=Hold(min_clients=3, max_wait=10.0), tuning=Tuning(pace_blocks=32))
    sim.run(limit=120)
    assert all(c.core is not None and c.core.ok and c.core.image() == PAYLOAD for c in sim.clients)
    masters = [f for _, name, f in sim.log if name == "mcast_master"]
    late = f"192.0.2.13:{2301}"
    assert masters[-1]["client"] == late, masters[-1]
    turns = [m for m in masters if m["reason"] == "turn"]
    assert turns, "the three starters took turns"
    assert all(m["client"] != late for m in turns), "a late joiner takes no turn"
    last = max(t for t, name, f in sim.log if name == "mcast_master" and f["reason"] == "turn")
    skipped = [f for t, name, f in sim.log if name == "mcast_skip" and t > last]
    offered = [f for f in skipped if "promotion within" in str(f["reason"])]
    assert not offered, "a turn was offered to a silent client"
