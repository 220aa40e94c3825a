"""The TCG guest model of the SLAM simulator (tests/slam/guest.py) does what its docstring says."""

from __future__ import annotations

import pytest

from tests.slam.guest import Guest, Pauses


def test_a_running_guest_takes_frames_in_order_at_its_per_frame_cost() -> None:
    guest: Guest[int] = Guest(per_frame=0.001)
    for frame in range(3):
        assert guest.arrive(frame, 0.0)
    taken = []
    while guest.done_at is not None:
        at = guest.done_at
        taken.append((guest.take(at), round(at, 6)))
    assert taken == [(0, 0.001), (1, 0.002), (2, 0.003)]


def test_a_descheduled_guest_drops_what_its_ring_cannot_hold() -> None:
    pauses = Pauses(run_mean=1e-9, pause_mean=10.0, seed=1)  # paused almost at once, for long
    start, end = pauses.paused_at(0.5) or (0.0, 0.0)
    assert start < 0.5 < end
    guest: Guest[int] = Guest(ring=8, pauses=pauses)
    accepted = [guest.arrive(n, 0.5) for n in range(12)]
    assert accepted == [True] * 8 + [False] * 4 and guest.dropped == 4
    assert guest.done_at is not None and guest.done_at >= end  # nothing is taken before it runs


def test_a_back_pressure_nic_queues_on_the_host_instead() -> None:
    pauses = Pauses(run_mean=1e-9, pause_mean=10.0, seed=1)
    guest: Guest[int] = Guest(ring=8, backlog=100, pauses=pauses)
    assert all(guest.arrive(n, 0.5) for n in range(108))
    assert not guest.arrive(108, 0.5) and guest.dropped == 1


def test_what_the_driver_pulled_before_a_pause_stays_pulled() -> None:
    """While it runs, iPXE moves ring frames to its own queue: a pause then finds the ring
    empty, and the ring's 8 slots come on top of the frames already pulled."""
    pauses = Pauses(run_mean=0.1, pause_mean=0.1, seed=3)
    spans = (pauses.paused_at(t / 1000) for t in range(1, 5000))
    start = next(span for span in spans if span is not None)[0]
    guest: Guest[int] = Guest(ring=8, memory=64, per_frame=1.0, pauses=pauses)
    before = start - 0.0005
    assert pauses.paused_at(before) is None
    assert all(guest.arrive(n, before) for n in range(20))  # running: the ring is drained at once
    accepted = [guest.arrive(100 + n, start + 1e-6) for n in range(12)]
    assert accepted == [True] * 8 + [False] * 4


@pytest.mark.parametrize("seed", [1, 2])
def test_pauses_are_reproducible_and_take_their_share(seed: int) -> None:
    a, b = Pauses(seed=seed), Pauses(seed=seed)
    times = [i * 0.0013 for i in range(4000)]
    assert [a.paused_at(t) for t in times] == [b.paused_at(t) for t in times]
    paused = sum(1 for t in times if a.paused_at(t) is not None) / len(times)
    assert 0.35 < paused < 0.65  # 10 ms runs, 10 ms pauses: about half the time
    assert a.advance(0.0, 0.05) >= 0.05 + 0.02  # 50 ms of work spans pauses too
